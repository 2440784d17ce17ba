#pragma once

#include "outbox/config/relay_config.hpp"

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace outbox::ctl {

/// A service `verify` cannot reach (PostgreSQL, Kafka) or a table it cannot read; the command exits 1.
class verify_failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// One outbox table to check, with the column that says when a row was written.
struct verify_table {
  config::table_source source;
  std::string time_column = "created_at";
};

/// What to compare: the outbox rows written in [since, until) against the `event_id` headers in their topics.
struct verify_options {
  std::string dsn;
  std::string brokers;
  std::vector<std::pair<std::string, std::string>> kafka_properties;  ///< ssl.*, sasl.* for a secured cluster
  std::vector<verify_table> tables;
  std::string topic_template = "{aggregate_type}";
  std::int64_t since_ms = 0;
  std::int64_t until_ms = 0;
  /// Kafka records are read from `since - margin` on (the relay's clock may trail the database's).
  std::chrono::milliseconds margin{5 * 60 * 1000};
  /// Memory for the comparison (16 bytes per row and per record); above it the check runs in several passes.
  std::uint64_t memory_budget = 256ULL << 20U;
  std::size_t max_listed = 100;  ///< missing and duplicated ids listed per topic
};

/// The outcome for one topic.
struct topic_report {
  std::string topic;
  std::uint64_t rows = 0;               ///< outbox rows in the window routed to this topic
  std::uint64_t found = 0;              ///< of those, seen in the topic
  std::uint64_t missing = 0;            ///< rows of tables without delete_after_publish never seen in the topic: a gap
  std::uint64_t duplicated = 0;         ///< extra copies of those rows' events in the topic
  std::uint64_t waiting = 0;            ///< rows of delete_after_publish tables not yet in Kafka: a backlog, not a gap
  std::int64_t oldest_waiting_ms = -1;  ///< when the oldest of them was written (Unix ms), -1 if none
  std::uint64_t records_read = 0;       ///< Kafka records read for the comparison
  std::vector<std::string> missing_ids;
  std::vector<std::string> duplicated_ids;
  std::vector<std::string> waiting_ids;
};

/// The outcome of a whole check.
struct verify_report {
  std::vector<topic_report> topics;
  std::uint64_t rows = 0;
  std::uint64_t missing = 0;
  std::uint64_t duplicated = 0;
  std::uint64_t waiting = 0;
  int passes = 1;
  std::int64_t since_ms = 0;
  std::int64_t until_ms = 0;

  /// True when every row of a table without delete_after_publish is in its topic.
  [[nodiscard]] bool complete() const noexcept { return missing == 0; }
};

/// Compares the outbox rows of the window with the topics they route to (the relay's own routing), reading both
/// sides as streams: memory stays within `memory_budget` for any number of rows. Throws verify_failure when
/// PostgreSQL or Kafka cannot be reached or a table cannot be read.
verify_report verify(const verify_options& o);

/// The options `outboxctl verify --config relay.yaml` runs with: the relay's DSN, brokers, properties, tables and
/// topic template.
verify_options options_from_relay_config(const config::relay_config& c);

}  // namespace outbox::ctl
