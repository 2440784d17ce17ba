#pragma once

#include "outbox/consumer/consumer.hpp"
#include "outbox/kafka/admin.hpp"
#include "topic_plan.hpp"

#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace outbox::consumer::detail {

/// What topic_setup needs from the options.
struct setup_settings {
  bool prepare = true;          ///< create or verify derived topics (false: trust they exist)
  int replication_factor = -1;  ///< of created topics; -1 = the cluster's default
  std::chrono::milliseconds tier_retention{};
  std::chrono::milliseconds dlq_retention{};
  retention_check check = retention_check::refuse;
  std::chrono::milliseconds dedupe_retention{0};  ///< 0: no dedupe, nothing to check
  std::chrono::milliseconds replay_window{};
};

/// The `retention.ms` a created tier topic gets: at least 10 times its delay.
std::chrono::milliseconds tier_retention(std::chrono::milliseconds configured, std::chrono::milliseconds delay);

/// How long Kafka may hand out a record of a topic with `config` (DescribeConfigs): retention.ms plus
/// segment.ms (deletion takes whole segments, and a segment rolls after segment.ms), or nullopt when forever
/// (retention.ms -1, or compaction without delete).
std::optional<std::chrono::milliseconds> kafka_horizon(const std::map<std::string, std::string>& config);

/// What is wrong with `dedupe_retention` for `topic`, or nullopt: when offsets can expire (after
/// `offsets_retention`) before Kafka deletes a record, an idle group starts again from the earliest record, so
/// every record still in the topic comes again; the dedupe retention must then cover the topic's horizon plus
/// the replay window. The text names every number and what to change.
std::optional<std::string> retention_problem(const std::string& topic, const std::map<std::string, std::string>& config,
                                             std::chrono::milliseconds offsets_retention,
                                             std::chrono::milliseconds dedupe_retention,
                                             std::chrono::milliseconds replay_window);

/// What is wrong with an existing tier, replay or dead-letter topic, or nullopt: fewer replicas than its source
/// (or than asked for), or a retention shorter than it needs (it holds the only copy).
std::optional<std::string> derived_topic_problem(const kafka::topic_info& existing,
                                                 const std::map<std::string, std::string>& config,
                                                 const kafka::topic_info& source, int wanted_replication,
                                                 std::chrono::milliseconds wanted_retention);

/// Start-up and refresh work on the cluster: for each source, create its tiers, replay and dead-letter topics
/// (partitions of the source, the configured replication and retention) or verify the existing ones, and check
/// the dedupe retention against what Kafka can redeliver.
class topic_setup {
 public:
  /// `admin` is a client handle for admin requests (the side producer's); it and `plan` must outlive this.
  topic_setup(rd_kafka_t* admin, const topic_plan& plan, setup_settings settings);

  /// Prepares every source of `plan` that is not ready and exists in `cluster`. Throws outbox_error: "config"
  /// when a check refuses, retryable "kafka" when the cluster does not answer.
  void prepare(const std::vector<kafka::topic_info>& cluster);
  /// Sources whose derived topics exist (subscribe to their tiers and replay topic).
  [[nodiscard]] const std::set<std::string>& ready() const noexcept { return m_ready; }

 private:
  void prepare_source(const kafka::topic_info& source);
  void ensure(const std::string& name, const kafka::topic_info& source, std::chrono::milliseconds retention);
  std::chrono::milliseconds offsets_retention();

  rd_kafka_t* m_admin;
  const topic_plan& m_plan;
  setup_settings m_settings;
  std::set<std::string> m_ready;
  std::set<std::string> m_ensured;
  std::optional<std::chrono::milliseconds> m_offsets_retention;
  int m_broker_id = -1;
};

}  // namespace outbox::consumer::detail
