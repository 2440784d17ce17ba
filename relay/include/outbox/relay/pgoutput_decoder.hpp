#pragma once

#include "outbox/relay/lsn.hpp"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

namespace outbox::relay {

/// One column of a published relation, as the Relation message describes it.
struct column {
  std::string name;
  std::uint32_t type_oid;
  std::int32_t type_modifier;
  bool part_of_key;

  bool operator==(const column&) const = default;
};

/// A published table: its OID, schema ("pg_catalog" where pgoutput sends ""), name and columns.
struct relation {
  std::uint32_t oid;
  std::string schema;
  std::string name;
  char replica_identity;
  std::vector<column> columns;
};

/// One column value of a row: a view into the message it came in (valid until the next decode).
struct tuple_value {
  enum class kind : char { null = 'n', unchanged_toast = 'u', text = 't', binary = 'b' };
  kind k;
  std::string_view data;

  bool operator==(const tuple_value&) const = default;
};

/// Begin ('B') of a transaction.
struct begin_msg {
  lsn_t final_lsn;
  std::int64_t commit_time_us;
  std::uint32_t xid;
};

/// Commit ('C') of the transaction begun last.
struct commit_msg {
  std::uint8_t flags;
  lsn_t commit_lsn;
  lsn_t end_lsn;
  std::int64_t commit_time_us;
};

/// Relation ('R'); columns_changed: a relation with this OID was cached before and its columns differ.
struct relation_msg {
  std::shared_ptr<const relation> rel;
  bool columns_changed;
};

/// Insert ('I'): the new row, one value per column of `rel` (views valid until the next decode).
struct insert_msg {
  std::shared_ptr<const relation> rel;
  std::span<const tuple_value> values;
};

/// Logical decoding message ('M'), from pg_logical_emit_message; prefix and content are views valid until the
/// next decode.
struct logical_message {
  bool transactional;
  lsn_t lsn;
  std::string_view prefix;
  std::string_view content;
};

/// A well-formed message the relay does not act on: 'Y' type, 'O' origin, 'U' update, 'D' delete, 'T' truncate.
struct ignored_msg {
  char tag;
};

/// What one pgoutput message means.
using pg_event = std::variant<begin_msg, commit_msg, relation_msg, insert_msg, logical_message, ignored_msg>;

/// Decodes pgoutput (proto_version 1) messages without copying column values; owns the relation cache keyed by OID.
class pgoutput_decoder {
 public:
  /// Decodes one XLogData payload. Throws outbox_error("decode") naming `wal_start` on an unknown tag, a
  /// truncated or overlong message, an Insert for an uncached relation or with the wrong column count.
  pg_event decode(std::string_view payload, lsn_t wal_start);

  /// The cached relation with this OID, or nullptr.
  [[nodiscard]] std::shared_ptr<const relation> find(std::uint32_t oid) const;

 private:
  std::unordered_map<std::uint32_t, std::shared_ptr<const relation>> m_relations;
  std::vector<tuple_value> m_values;  ///< the last Insert's row, reused
};

}  // namespace outbox::relay
