#pragma once

// exactly_once: where the relay stands, recorded in Kafka in the same transaction as the records it covers.

#include "outbox/config/relay_config.hpp"
#include "outbox/relay/lsn.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace outbox::relay {

/// A PostgreSQL transaction larger than a Kafka transaction's bounds, committed in part: its first `rows` changes
/// (inserts and messages, in stream order) are in Kafka.
struct partial_transaction {
  lsn_t final_lsn = 0;  ///< its commit LSN, as its Begin message says
  std::uint64_t rows = 0;
  bool operator==(const partial_transaction&) const = default;
};

/// One checkpoint record (key: the slot): every PostgreSQL transaction that ends at or before `end_lsn` is in
/// Kafka, and so is `partial` when set; replication restarts at `end_lsn`.
struct checkpoint {
  std::string slot;
  std::string system_id;
  int timeline = 0;
  lsn_t end_lsn = 0;
  std::optional<partial_transaction> partial;
  std::string written_at;  ///< RFC 3339, for people
  bool operator==(const checkpoint&) const = default;
};

/// The record's value: a small JSON object.
std::string encode_checkpoint(const checkpoint& c);
/// Reads a value encode_checkpoint() wrote; nullopt with `error` saying what is wrong.
std::optional<checkpoint> decode_checkpoint(std::string_view json, std::string& error);

/// `sink.transactional_id`, or `outbox-relay.<database>.<slot>` from the DSN's dbname (or user) and the slot.
std::string transactional_id_of(const config::relay_config& c);

/// Creates the checkpoint topic when it is missing (compacted, one partition); then reads it to its end as a
/// read_committed consumer and returns the last checkpoint of `slot`. Blocking. Throws outbox_error("kafka"):
/// retryable when the cluster does not answer, fatal when the topic cannot be used (not compacted, refused).
std::optional<checkpoint> read_checkpoint(const config::sink_config& sink, const std::string& slot,
                                          std::chrono::milliseconds timeout);

}  // namespace outbox::relay
