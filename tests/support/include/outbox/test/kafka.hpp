#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace outbox::test {

/// One consumed Kafka record, copied out of librdkafka.
struct consumed_record {
  std::string topic;
  int partition = 0;
  long long offset = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;  ///< nullopt for a tombstone
  std::vector<std::pair<std::string, std::string>> headers;

  /// The first header called `name`, if any.
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const;
};

/// Creates a topic with `partitions` partitions and topic `configs` (e.g. max.message.bytes); waits until it exists.
void kafka_create_topic(const std::string& topic, int partitions = 3,
                        const std::vector<std::pair<std::string, std::string>>& configs = {});

/// Sets `topic`'s dynamic configs to `configs` (Kafka's AlterConfigs: configs not named return to their defaults).
void kafka_alter_topic_config(const std::string& topic, const std::vector<std::pair<std::string, std::string>>& configs);

/// Deletes the records of `topic`'s `partition` below `before_offset` (Kafka's DeleteRecords).
void kafka_delete_records(const std::string& topic, int partition, long long before_offset);

/// Reads `topic` from the beginning until `count` records arrived or `timeout` passed.
std::vector<consumed_record> kafka_consume(const std::string& topic, std::size_t count,
                                           std::chrono::milliseconds timeout);

/// Reads `topic` from the beginning until `done(records so far)` is true or `timeout` passed.
std::vector<consumed_record> kafka_consume_until(const std::string& topic,
                                                 const std::function<bool(const std::vector<consumed_record>&)>& done,
                                                 std::chrono::milliseconds timeout);

/// The number of records in `topic` (sum of high watermarks; the topic is never compacted here); 0 while
/// the topic does not exist yet.
long long kafka_record_count(const std::string& topic);

}  // namespace outbox::test
