#pragma once

#include "dlq_record.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace outbox::ctl {

/// librdkafka properties from `--property` and `--kafka-config` (security settings, timeouts), applied after
/// outboxctl's own defaults; secret values are never printed.
using kafka_properties = std::vector<std::pair<std::string, std::string>>;

/// A Kafka failure the operator has to act on (unreachable brokers, a missing topic); exit code 1.
class kafka_failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A `--property` or `--kafka-config` setting librdkafka refuses (named, never its secret value); exit code 2.
class bad_property : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// How long one metadata or watermark request may take before the command gives up.
inline constexpr std::chrono::milliseconds k_request_timeout{10'000};

/// Reads a topic with a plain assign()-based consumer: no group membership, no commits.
class topic_reader {
 public:
  /// Connects and fetches the topic's partitions; throws kafka_failure when the brokers do not answer
  /// within k_request_timeout or the topic does not exist.
  topic_reader(const std::string& brokers, const kafka_properties& properties, std::string topic);
  ~topic_reader();
  topic_reader(const topic_reader&) = delete;
  topic_reader& operator=(const topic_reader&) = delete;

  [[nodiscard]] const std::vector<int>& partitions() const { return m_partitions; }

  /// Every record from the start of each partition up to the high watermark taken when that partition's
  /// read starts, partition by partition, in offset order; never waits for newer records. `visit` returns
  /// false to stop early. Returns the number of records in the topic at the time of reading.
  std::int64_t read_all(const std::function<bool(dlq_record&&)>& visit);

  /// The record at `partition`/`offset`, or nullopt when there is none (deleted, compacted, not yet written).
  std::optional<dlq_record> read_one(int partition, std::int64_t offset);

  /// The number of partitions of `topic`, or nullopt when it does not exist (never creates it).
  std::optional<int> partition_count(const std::string& topic);

 private:
  struct state;
  std::unique_ptr<state> m_state;
  std::string m_brokers;
  std::string m_topic;
  std::vector<int> m_partitions;
};

/// An idempotent, acks=all producer that remembers which deliveries failed.
class replay_producer {
 public:
  replay_producer(const std::string& brokers, const kafka_properties& properties);
  ~replay_producer();
  replay_producer(const replay_producer&) = delete;
  replay_producer& operator=(const replay_producer&) = delete;

  /// Queues one record; `label` names it in a failure. `partition` nullopt lets the partitioner choose.
  void send(const std::string& topic, std::optional<int> partition, const dlq_record& r,
            const std::vector<header>& headers, std::string label);

  /// Waits for every queued delivery (up to `timeout`); returns one line per record that was not delivered.
  std::vector<std::string> finish(std::chrono::milliseconds timeout);

 private:
  struct state;
  std::unique_ptr<state> m_state;
};

}  // namespace outbox::ctl
