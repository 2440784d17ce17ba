#pragma once

#include "outbox/config/relay_config.hpp"
#include "outbox/relay/lsn.hpp"
#include "outbox/relay/pgoutput_decoder.hpp"
#include "outbox/relay/topic_template.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <regex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace outbox::relay {

/// One Kafka header as views.
struct header_view {
  std::string_view name;
  std::string_view value;
};

/// A Kafka record to produce, as views into the router's buffers and the decoded message: valid until the router's
/// next call (the publisher copies it). A null value is a tombstone.
struct record_view {
  std::string_view topic;
  std::string_view key;
  std::optional<std::string_view> value;
  std::span<const header_view> headers;

  /// Bytes the record carries: key + value + every header name and value.
  [[nodiscard]] std::size_t byte_size() const noexcept;
};

/// An owned Kafka record (dead letters, tests).
struct kafka_record {
  std::string topic;
  std::string key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::string>> headers;

  static kafka_record of(const record_view& r);
  [[nodiscard]] std::size_t byte_size() const noexcept;
  bool operator==(const kafka_record&) const = default;
};

/// What the transaction around a row tells the record (Begin's final_lsn, xid, commit time).
struct tx_context {
  lsn_t commit_lsn = 0;
  std::uint32_t xid = 0;
  std::int64_t commit_time_ms = 0;
};

/// Why a row or envelope cannot be published; `sink.on_invalid_record` halts on it or dead-letters it.
struct invalid_record {
  std::string reason;   ///< stable code, the `reason` label of outbox_relay_invalid_records_total
  std::string column;   ///< the column or envelope field at fault; empty when none
  std::string message;  ///< for people: where it came from (table, LSN, xid, event id), what is wrong, the fix
};

/// What the router made of one row or message.
struct routed {
  enum class outcome : std::uint8_t {
    record,   ///< publish `record`
    skip,     ///< nothing to publish (another prefix, a heartbeat)
    invalid,  ///< a bad row or envelope: `invalid` says why
    stop,     ///< the stream cannot go on safely (an unknown relation, a renamed table or column): `stop_reason`
  };
  outcome what = outcome::skip;
  std::size_t source = 0;   ///< index into source.tables; tables.size() is the logical-message source
  std::string_view row_id;  ///< the row's id (the event_id header) when it has a usable one
  const record_view* record = nullptr;
  invalid_record invalid;
  std::string stop_reason;
};

/// Turns an outbox row or a logical-message envelope into a Kafka record (SPEC §3), checking everything a bad row
/// could break: illegal or disallowed topic, NULL, empty or oversized id, invalid UTF-8, a reserved header name,
/// JSON that is not an object, a bytea that is not hex. It never throws on data: bad input is an invalid record.
///
/// Decisions where SPEC §3 is silent:
/// - A logical message's `{schema}` is "" and `{table}` its prefix; its `outbox_table` header is `message:<prefix>`.
/// - Header values and an envelope's payload keep their exact bytes: a JSON string is decoded, anything else is
///   its JSON text as written (numbers are never re-serialized). An envelope payload that is a JSON string keeps
///   its quotes, as a jsonb string would.
/// - A relation is matched by name the first time it is seen and by OID afterwards: a table renamed while the relay
///   streams, or a mapped column that disappears, stops the stream (outcome::stop) rather than guessing.
/// The router keeps per-relation state and reusable buffers: one per stream, not thread-safe.
class router {
 public:
  /// Throws outbox_error("config") on a bad topic template or a table listed twice.
  explicit router(const config::relay_config& c);

  /// A Relation message: empty, or why the stream must stop (a configured table renamed, a mapped column gone).
  [[nodiscard]] std::optional<std::string> on_relation(const relation& rel);

  /// One inserted row of `rel`; views in the result are valid until the next call.
  routed route_insert(const relation& rel, std::span<const tuple_value> values, const tx_context& tx);
  /// One logical message; outcome::skip when its prefix is not the configured one.
  routed route_message(const logical_message& msg, const tx_context& tx);

  /// The index of the configured table `schema.table`, or nullopt.
  [[nodiscard]] std::optional<std::size_t> table_index(std::string_view schema, std::string_view table) const;
  [[nodiscard]] std::size_t table_count() const noexcept { return m_tables.size(); }
  /// Whether a record may go to `topic` (sink.allowed_topics).
  [[nodiscard]] bool topic_allowed(std::string_view topic);

 private:
  enum class field : std::uint8_t { id, aggregate_type, aggregate_id, event_type, payload, headers };
  static constexpr std::size_t field_count = 6;
  static constexpr std::size_t no_column = static_cast<std::size_t>(-1);

  /// A relation's mapped columns, resolved once per Relation message.
  struct resolved_relation {
    std::size_t table = no_column;  ///< into m_tables; no_column: not an outbox table
    std::string name;               ///< schema.name when first matched, to notice a rename
    std::array<std::size_t, field_count> index{};
    std::array<std::uint32_t, field_count> type_oid{};
    std::string outbox_table;  ///< the `outbox_table` header value
    std::string stop;          ///< why its rows cannot be routed (renamed, a mapped column gone); empty when they can
  };

  struct event_fields;

  routed build(event_fields& ev, std::size_t source, std::string_view schema, std::string_view table,
               std::string_view outbox_table);
  routed build_record(event_fields& ev, std::size_t source, std::string_view schema, std::string_view table,
                      std::string_view outbox_table);
  routed invalid(std::string reason, std::string column, std::string message);
  std::string_view keep(std::string s);
  /// A JSON string value (with its quotes) decoded: a view of its body when it has no escape, else kept.
  std::string_view string_value(std::string_view raw);
  void set_tx(const tx_context& tx);

  std::vector<config::table_source> m_tables;
  topic_template m_template;
  std::optional<std::string> m_message_prefix;
  std::string m_message_outbox_table;
  std::vector<std::string> m_allowed_names;
  std::vector<std::regex> m_allowed_patterns;
  std::unordered_map<std::string, bool> m_allowed_cache;
  std::unordered_map<std::uint32_t, resolved_relation> m_relations;

  // Reused buffers behind the record views.
  record_view m_record;
  std::vector<header_view> m_headers;
  std::string m_topic;
  std::string m_payload;
  std::deque<std::string> m_kept;  ///< decoded strings; views into them stay valid (deque never moves them)
  std::size_t m_kept_used = 0;
  tx_context m_tx{};
  bool m_tx_set = false;
  std::string m_lsn_text;
  std::string m_xid_text;
  std::string m_ts_text;
};

/// The most bytes an id (the `event_id` header) may have.
inline constexpr std::size_t k_max_event_id_bytes = 1024;

}  // namespace outbox::relay
