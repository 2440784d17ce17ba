#include "topic_setup.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/base/record_format.hpp"
#include "outbox/base/text.hpp"

#include <algorithm>

namespace outbox::consumer::detail {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds k_admin_timeout{15000};
constexpr std::string_view k_component = "consumer";

/// A duration as people read it: `9d`, `26h`, `90s`.
std::string readable(milliseconds d) { return record_format::delay_name(d); }

std::optional<std::int64_t> number(const std::map<std::string, std::string>& config, const std::string& key) {
  const auto it = config.find(key);
  return it == config.end() ? std::nullopt : parse_int64(it->second);
}

}  // namespace

milliseconds tier_retention(milliseconds configured, milliseconds delay) { return std::max(configured, delay * 10); }

std::optional<milliseconds> kafka_horizon(const std::map<std::string, std::string>& config) {
  const auto policy = config.find("cleanup.policy");
  if (policy != config.end() && policy->second.find("delete") == std::string::npos) return std::nullopt;
  const auto retention = number(config, "retention.ms");
  if (!retention || *retention < 0) return std::nullopt;
  return milliseconds(*retention + std::max<std::int64_t>(number(config, "segment.ms").value_or(0), 0));
}

std::optional<std::string> retention_problem(const std::string& topic, const std::map<std::string, std::string>& config,
                                             milliseconds offsets_retention, milliseconds dedupe_retention,
                                             milliseconds replay_window) {
  const auto horizon = kafka_horizon(config);
  if (horizon && offsets_retention >= *horizon) return std::nullopt;  // offsets outlive every record
  const std::string offsets = "the brokers' offsets.retention.minutes is " + readable(offsets_retention) +
                              ": once the group's committed offsets expire it starts again from the earliest record";
  if (!horizon) {
    return "topic " + topic + " keeps records forever (retention.ms -1 or compaction) and " + offsets +
           ", which no dedupe.retention covers; set a retention.ms on the topic, or dedupe.retention_check: warn";
  }
  const milliseconds needed = *horizon + replay_window;
  if (dedupe_retention >= needed) return std::nullopt;
  return "dedupe.retention " + readable(dedupe_retention) + " is shorter than what Kafka can redeliver from topic " +
         topic + " (retention.ms " + readable(milliseconds(number(config, "retention.ms").value_or(0))) +
         " + segment.ms " + readable(milliseconds(number(config, "segment.ms").value_or(0))) + " = " +
         readable(*horizon) + ", since " + offsets + ") plus dlq.replay_window " + readable(replay_window) + " = " +
         readable(needed) + "; raise dedupe.retention to at least " + readable(needed) +
         ", lower the topic's retention.ms or segment.ms, or set dedupe.retention_check: warn";
}

std::optional<std::string> derived_topic_problem(const kafka::topic_info& existing,
                                                 const std::map<std::string, std::string>& config,
                                                 const kafka::topic_info& source, int wanted_replication,
                                                 milliseconds wanted_retention) {
  const int floor = std::max(source.replication_factor, wanted_replication);
  if (existing.replication_factor < floor) {
    return "topic " + existing.name + " has replication factor " + std::to_string(existing.replication_factor) +
           ", less than " + std::to_string(floor) + " (source topic " + source.name + " has " +
           std::to_string(source.replication_factor) +
           "); it holds the only copy of the records in it: reassign its "
           "replicas, or delete it so that the consumer creates it";
  }
  const auto retention = number(config, "retention.ms");
  if (retention && *retention >= 0 && *retention < wanted_retention.count()) {
    return "topic " + existing.name + " keeps records for retention.ms " + readable(milliseconds(*retention)) +
           ", less than the " + readable(wanted_retention) +
           " it needs (it holds the only copy of the records in it); raise its retention.ms";
  }
  return std::nullopt;
}

topic_setup::topic_setup(rd_kafka_t* admin, const topic_plan& plan, setup_settings settings)
    : m_admin(admin), m_plan(plan), m_settings(settings) {}

void topic_setup::prepare(const std::vector<kafka::topic_info>& cluster) {
  for (const auto& s : m_plan.sources()) {
    if (m_ready.contains(s)) continue;
    if (!m_settings.prepare) {
      m_ready.insert(s);
      continue;
    }
    const auto it = std::find_if(cluster.begin(), cluster.end(), [&](const auto& t) { return t.name == s; });
    if (it == cluster.end()) {
      log::warn(k_component,
                "a source topic does not exist yet: its retry, replay and dead-letter topics are made "
                "once it does",
                {{"topic", s}});
      continue;
    }
    prepare_source(*it);
    m_ready.insert(s);
  }
}

void topic_setup::prepare_source(const kafka::topic_info& source) {
  if (m_settings.check != retention_check::off && m_settings.dedupe_retention.count() > 0) {
    const auto config = kafka::describe_topic_config(m_admin, source.name, k_admin_timeout);
    if (auto problem = retention_problem(source.name, config, offsets_retention(), m_settings.dedupe_retention,
                                         m_settings.replay_window)) {
      if (m_settings.check == retention_check::refuse) throw outbox_error("config", *problem);
      log::warn(k_component, *problem);
    }
  }
  for (const auto d : m_plan.delays()) {
    ensure(m_plan.tier_topic(source.name, d), source, tier_retention(m_settings.tier_retention, d));
  }
  ensure(m_plan.replay_topic(source.name), source, m_settings.tier_retention);
  ensure(m_plan.dlq_topic(source.name), source, m_settings.dlq_retention);
}

void topic_setup::ensure(const std::string& name, const kafka::topic_info& source, milliseconds retention) {
  if (m_ensured.contains(name)) return;
  auto existing = kafka::describe_topic(m_admin, name, k_admin_timeout);
  if (!existing) {
    kafka::topic_spec spec{
        name, source.partitions, m_settings.replication_factor, {{"retention.ms", std::to_string(retention.count())}}};
    const auto results = kafka::create_topics(m_admin, {spec}, k_admin_timeout);
    for (const auto& r : results) {
      if (r.error == RD_KAFKA_RESP_ERR_NO_ERROR) {
        log::info(k_component, "created topic",
                  {{"topic", name},
                   {"partitions", source.partitions},
                   {"replication_factor", m_settings.replication_factor},
                   {"retention_ms", static_cast<long long>(retention.count())}});
        m_ensured.insert(name);
        return;
      }
      if (r.error != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        throw outbox_error("config", "cannot create topic " + name + " (for " + source.name +
                                         "): " + (r.message.empty() ? rd_kafka_err2str(r.error) : r.message) +
                                         "; create it yourself with " + std::to_string(source.partitions) +
                                         " partitions, or grant the consumer CreateTopics");
      }
    }
    existing = kafka::describe_topic(m_admin, name, k_admin_timeout);  // created meanwhile by another instance
    if (!existing)
      throw outbox_error("kafka", "topic " + name + " was created but is not visible yet", retry_class::retryable);
  }
  const auto config = kafka::describe_topic_config(m_admin, name, k_admin_timeout);
  if (auto problem = derived_topic_problem(*existing, config, source, m_settings.replication_factor, retention)) {
    throw outbox_error("config", *problem);
  }
  if (existing->partitions < source.partitions) {
    log::warn(k_component,
              "a retry, replay or dead-letter topic has fewer partitions than its source: fewer "
              "instances share its records",
              {{"topic", name}, {"partitions", existing->partitions}, {"source_partitions", source.partitions}});
  }
  m_ensured.insert(name);
}

milliseconds topic_setup::offsets_retention() {
  if (m_offsets_retention) return *m_offsets_retention;
  const auto topics = kafka::list_topics(m_admin, k_admin_timeout, &m_broker_id);
  static_cast<void>(topics);
  const auto config = kafka::describe_broker_config(m_admin, m_broker_id, k_admin_timeout);
  const auto minutes = number(config, "offsets.retention.minutes").value_or(7 * 24 * 60);
  m_offsets_retention = milliseconds(minutes * 60'000);
  return *m_offsets_retention;
}

}  // namespace outbox::consumer::detail
