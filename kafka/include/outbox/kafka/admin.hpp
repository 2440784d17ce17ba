#pragma once

#include "outbox/kafka/handles.hpp"

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace outbox::kafka {

/// A topic to create: -1 partitions or replication factor means the broker's default.
struct topic_spec {
  std::string name;
  int partitions = -1;
  int replication_factor = -1;
  std::vector<std::pair<std::string, std::string>> configs;  ///< e.g. cleanup.policy=compact
};

/// What the broker said about one topic of a create_topics call.
struct topic_result {
  std::string name;
  rd_kafka_resp_err_t error = RD_KAFKA_RESP_ERR_NO_ERROR;  ///< TOPIC_ALREADY_EXISTS is not a failure for callers
  std::string message;
};

/// Creates topics; one result per topic. Throws a retryable outbox_error("kafka") when the cluster does not
/// answer within `timeout`.
std::vector<topic_result> create_topics(rd_kafka_t* rk, const std::vector<topic_spec>& topics,
                                        std::chrono::milliseconds timeout);

/// A topic as the cluster's metadata describes it.
struct topic_info {
  std::string name;
  int partitions = 0;
  int replication_factor = 0;  ///< of partition 0
};

/// The topic's metadata; nullopt when it does not exist. Throws a retryable outbox_error("kafka") when the
/// cluster does not answer.
std::optional<topic_info> describe_topic(rd_kafka_t* rk, const std::string& topic, std::chrono::milliseconds timeout);

/// Every topic the cluster's metadata lists (internal ones such as `__consumer_offsets` left out), and the id of
/// one broker in `broker_id`. Throws a retryable outbox_error("kafka") when the cluster does not answer.
std::vector<topic_info> list_topics(rd_kafka_t* rk, std::chrono::milliseconds timeout, int* broker_id = nullptr);

/// A broker's effective configuration (DescribeConfigs), e.g. `offsets.retention.minutes`. Throws as
/// describe_topic_config does.
std::map<std::string, std::string> describe_broker_config(rd_kafka_t* rk, int broker_id,
                                                          std::chrono::milliseconds timeout);

/// The topic's effective configuration (DescribeConfigs), every entry including defaults. Throws
/// outbox_error("kafka"): retryable when the cluster does not answer, fatal when it refuses (e.g. not
/// authorized, unknown topic).
std::map<std::string, std::string> describe_topic_config(rd_kafka_t* rk, const std::string& topic,
                                                         std::chrono::milliseconds timeout);

}  // namespace outbox::kafka
