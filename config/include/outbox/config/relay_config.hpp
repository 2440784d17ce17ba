#pragma once

#include "outbox/base/log.hpp"
#include "outbox/config/schema.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::config {

/// Where each outbox field is read from in a table row.
struct column_map {
  std::string id;
  std::string aggregate_type;
  std::string aggregate_id;
  std::string event_type;
  std::string payload;
  std::string headers;
};

/// One outbox table tailed by the relay.
struct table_source {
  std::string schema;  ///< `public` when the configured name has no schema
  std::string table;
  column_map columns;
  bool delete_after_publish = false;

  /// `schema.table`, as used in the `outbox_table` header and metrics.
  [[nodiscard]] std::string qualified_name() const { return schema + "." + table; }
};

/// Events sent with `pg_logical_emit_message(true, prefix, json)`.
struct logical_messages_source {
  std::string prefix;
};

/// What the relay does with the rows already in the tables when it creates its slot.
enum class backfill_mode { all, none };

/// The `source:` section: the PostgreSQL side.
struct source_config {
  std::string dsn;
  std::string slot;
  std::string publication;
  std::vector<table_source> tables;
  std::optional<logical_messages_source> logical_messages;
  std::chrono::milliseconds heartbeat_interval{};  ///< zero disables heartbeats
  backfill_mode initial_backfill = backfill_mode::all;
  std::string state_schema;  ///< the relay's state table, `schema.table`
  std::string state_table;
  std::chrono::milliseconds connect_timeout{};    ///< every connection to PostgreSQL
  std::chrono::milliseconds tcp_user_timeout{};   ///< every connection; zero leaves the system default
  std::chrono::milliseconds statement_timeout{};  ///< side connections (state, slot statistics, deletes)
  std::chrono::milliseconds lock_timeout{};       ///< side connections
  std::chrono::milliseconds stream_timeout{};     ///< silence on the stream that means reconnect; zero: the server's
                                                  ///< wal_sender_timeout
  bool leader_lock = true;                         ///< hold the leader lock on the replication connection
  std::chrono::milliseconds wal_sender_timeout{};  ///< set on the replication connection; zero: the server's

  /// `schema.table` of the state table.
  [[nodiscard]] std::string state_table_name() const { return state_schema + "." + state_table; }
};

enum class delivery_mode { at_least_once, exactly_once };
std::string_view to_string(delivery_mode d) noexcept;

/// What the relay does with a record it cannot publish (bad row, illegal or disallowed topic, too large, ...).
enum class invalid_record_policy { halt, dead_letter };

/// The `sink:` section: the Kafka side.
struct sink_config {
  std::string brokers;
  std::string topic_template;
  delivery_mode delivery = delivery_mode::at_least_once;
  std::string checkpoint_topic;
  std::string transactional_id;  ///< exactly_once; empty: derived from the DSN's database and the slot
  std::int64_t transaction_max_records = 0;
  std::uint64_t transaction_max_bytes = 0;
  std::chrono::milliseconds transaction_max_time{};
  std::chrono::milliseconds transaction_timeout{};
  std::map<std::string, std::string> properties;  ///< passed to librdkafka after the relay's safety settings
  bool allow_unsafe_properties = false;
  std::vector<std::string> allowed_topics;  ///< names or `^regex`; empty: any topic
  invalid_record_policy on_invalid_record = invalid_record_policy::halt;
  std::string dead_letter_topic;
};

/// The `relay:` section: memory bounds and timing.
struct relay_limits {
  std::int64_t max_inflight_messages = 0;
  std::uint64_t max_inflight_bytes = 0;
  std::chrono::milliseconds status_interval{};
  std::chrono::milliseconds shutdown_timeout{};
  std::chrono::milliseconds stall_timeout{};  ///< WAL moving, nothing confirmed: stalled
  std::int64_t max_delete_backlog = 0;        ///< acknowledged rows waiting for delete_after_publish
};

/// The `metrics:` section.
struct metrics_config {
  std::string listen;  ///< `host:port`
};

/// The `log:` section.
struct log_config {
  outbox::log::level level = outbox::log::level::info;
  outbox::log::format format = outbox::log::format::json;
};

/// The whole `outbox-relay` config file (SPEC §4), validated.
struct relay_config {
  source_config source;
  sink_config sink;
  relay_limits relay;
  metrics_config metrics;
  log_config log;
  values tree;  ///< every key as loaded, for dump_redacted
};

/// librdkafka properties that would weaken the relay's guarantees, with why: refused in `sink.properties` unless
/// `sink.allow_unsafe_properties` is true. Empty when `key=value` is safe.
std::string unsafe_property(std::string_view key, std::string_view text);

/// The declarations behind relay_config: keys, defaults, docs and cross-key rules.
const schema& relay_schema();

/// Reads and validates an `outbox-relay` config file; throws config_error listing every problem.
relay_config load_relay_config(const std::string& path);

/// Validates config text; `file_name_for_messages` prefixes every error line.
relay_config parse_relay_config(std::string_view yaml_text, std::string_view file_name_for_messages);

/// The config as YAML with passwords and secrets replaced by `*****`, for `--check`.
std::string dump_redacted(const relay_config& c);

}  // namespace outbox::config
