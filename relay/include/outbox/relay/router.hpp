#pragma once

#include "outbox/relay/lsn.hpp"
#include "outbox/relay/pgoutput_decoder.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace outbox::relay {

/// Column names of one outbox table (SPEC §2 defaults).
struct column_map {
  std::string id = "id";
  std::string aggregate_type = "aggregate_type";
  std::string aggregate_id = "aggregate_id";
  std::string event_type = "event_type";
  std::string payload = "payload";
  std::string headers = "headers";
};

/// One configured outbox table and how its columns are named.
struct table_route {
  std::string schema;  ///< "" means public
  std::string table;
  column_map columns;
};

/// A Kafka record ready to produce; value nullopt = tombstone.
struct kafka_record {
  std::string topic;
  std::string key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::string>> headers;

  /// Bytes the record carries: key + value + every header name and value.
  [[nodiscard]] std::size_t byte_size() const noexcept;

  bool operator==(const kafka_record&) const = default;
};

/// What the transaction around a row tells the record (from Begin: final_lsn, xid, commit time).
struct tx_context {
  lsn_t commit_lsn = 0;
  std::uint32_t xid = 0;
  std::int64_t commit_time_ms = 0;
};

/// Turns an outbox row or a logical-message envelope into a Kafka record (SPEC §3).
///
/// Decisions where SPEC §3 is silent:
/// - In the topic template of a logical message `{schema}` is "" and `{table}` is the prefix;
///   its `outbox_table` header is `message:<prefix>`.
/// - A row or envelope header named `event_id`, `event_type`, `aggregate_type` or starting with
///   `outbox_` is rejected (a "decode" error), so a consumer can always trust those headers.
/// - An envelope's payload is published as its compact JSON text (a JSON string keeps its
///   quotes, as a jsonb string would); JSON null or no payload is a tombstone.
/// - `id`, `aggregate_type`, `aggregate_id` and `event_type` columns may be text, varchar,
///   bpchar, name or uuid.
/// The router caches per-relation column indexes, so it is not thread-safe: one per stream.
class router {
 public:
  /// Throws outbox_error("config") on a template with an unknown placeholder or illegal
  /// characters, or a table listed twice.
  router(std::string topic_template, std::vector<table_route> tables, std::optional<std::string> message_prefix);

  /// The route for a relation, or nullptr when it is not a configured outbox table.
  [[nodiscard]] const table_route* find_route(const relation& rel) const;

  /// Checks a configured table's relation has every mapped column with a supported type;
  /// throws outbox_error("config") naming table, column, type and the fix. No-op otherwise.
  void validate(const relation& rel) const;

  /// nullopt when not a configured table. Throws outbox_error("decode", ...) naming table,
  /// LSN and column on a bad row.
  [[nodiscard]] std::optional<kafka_record> route_insert(const relation& rel, const std::vector<tuple_value>& values,
                                                         const tx_context& tx) const;
  /// As above, but moves the payload out of `values` instead of copying it.
  [[nodiscard]] std::optional<kafka_record> route_insert(const relation& rel, std::vector<tuple_value>&& values,
                                                         const tx_context& tx) const;

  /// nullopt when the prefix is not the configured one (e.g. heartbeats "<prefix>-heartbeat");
  /// throws outbox_error("decode", ...) on a bad envelope.
  [[nodiscard]] std::optional<kafka_record> route_message(const logical_message& msg, const tx_context& tx) const;

 private:
  enum class field : std::uint8_t { id, aggregate_type, aggregate_id, event_type, payload, headers };
  static constexpr std::size_t field_count = 6;
  static constexpr std::size_t no_column = static_cast<std::size_t>(-1);

  enum class placeholder : std::uint8_t { literal, aggregate_type, event_type, schema, table };
  struct template_part {
    placeholder kind;
    std::string text;
  };

  /// A relation's mapped columns, resolved once and checked cheaply on every row.
  struct resolved_relation {
    const relation* source = nullptr;
    std::size_t route_index = no_column;  ///< into m_tables; an index, so a copied router stays valid
    std::size_t column_count = 0;
    std::array<std::size_t, field_count> index{};
    std::array<std::uint32_t, field_count> type_oid{};
  };

  struct event_fields;

  const resolved_relation& resolve(const relation& rel) const;
  [[nodiscard]] bool still_matches(const resolved_relation& r, const relation& rel) const;
  std::optional<kafka_record> route_row(const relation& rel, const std::vector<tuple_value>& values,
                                        std::vector<tuple_value>* owned, const tx_context& tx) const;
  kafka_record build(event_fields& ev, std::string_view schema, std::string_view table) const;
  std::string render_topic(std::string_view aggregate_type, std::string_view event_type, std::string_view schema,
                           std::string_view table) const;

  std::string m_topic_template;
  std::vector<template_part> m_template_parts;
  std::vector<table_route> m_tables;
  std::optional<std::string> m_message_prefix;
  mutable std::unordered_map<std::uint32_t, resolved_relation> m_resolved;
};

}  // namespace outbox::relay
