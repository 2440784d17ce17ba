#include "outbox/kafka/admin.hpp"

#include "outbox/base/error.hpp"
#include "outbox/kafka/errors.hpp"

namespace outbox::kafka {
namespace {

int ms(std::chrono::milliseconds d) { return static_cast<int>(d.count()); }

admin_options_ptr options(rd_kafka_t* rk, rd_kafka_admin_op_t op, std::chrono::milliseconds timeout) {
  admin_options_ptr o(rd_kafka_AdminOptions_new(rk, op));
  char err[256];
  rd_kafka_AdminOptions_set_request_timeout(o.get(), ms(timeout), err, sizeof err);
  return o;
}

/// Waits for an admin call's result event: a retryable outbox_error when none comes, a classified one when the
/// request as a whole failed.
event_ptr wait_for(rd_kafka_queue_t* q, std::chrono::milliseconds timeout, const std::string& what) {
  event_ptr ev(rd_kafka_queue_poll(q, ms(timeout) + 1000));
  if (!ev) throw outbox_error("kafka", what + ": no answer from the Kafka cluster in time", retry_class::retryable);
  if (const auto e = rd_kafka_event_error(ev.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw outbox_error("kafka", what + ": " + rd_kafka_event_error_string(ev.get()), classify(e));
  }
  return ev;
}

}  // namespace

std::vector<topic_result> create_topics(rd_kafka_t* rk, const std::vector<topic_spec>& topics,
                                        std::chrono::milliseconds timeout) {
  std::vector<topic_result> out;
  if (topics.empty()) return out;
  std::vector<rd_kafka_NewTopic_t*> news;
  news.reserve(topics.size());
  char err[512];
  auto destroy_news = [&] { rd_kafka_NewTopic_destroy_array(news.data(), news.size()); };
  for (const auto& t : topics) {
    rd_kafka_NewTopic_t* nt =
        rd_kafka_NewTopic_new(t.name.c_str(), t.partitions, t.replication_factor, err, sizeof err);
    if (nt == nullptr) {
      destroy_news();
      throw outbox_error("kafka", "cannot describe topic " + t.name + " for creation: " + err);
    }
    news.push_back(nt);
    for (const auto& [k, v] : t.configs) {
      if (const auto e = rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        destroy_news();
        throw outbox_error("kafka", "topic " + t.name + " config " + k + "=" + v + ": " + rd_kafka_err2str(e));
      }
    }
  }
  queue_ptr q(rd_kafka_queue_new(rk));
  const auto opts = options(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout);
  rd_kafka_CreateTopics(rk, news.data(), news.size(), opts.get(), q.get());
  destroy_news();
  const event_ptr ev = wait_for(q.get(), timeout, "creating topics");
  std::size_t n = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &n);
  for (std::size_t i = 0; i < n; ++i) {
    const char* msg = rd_kafka_topic_result_error_string(results[i]);
    out.push_back(
        {rd_kafka_topic_result_name(results[i]), rd_kafka_topic_result_error(results[i]), msg != nullptr ? msg : ""});
  }
  return out;
}

std::optional<topic_info> describe_topic(rd_kafka_t* rk, const std::string& topic, std::chrono::milliseconds timeout) {
  const topic_ptr handle(rd_kafka_topic_new(rk, topic.c_str(), nullptr));
  const rd_kafka_metadata_t* md = nullptr;
  const auto e = rd_kafka_metadata(rk, 0, handle.get(), &md, ms(timeout));
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw outbox_error("kafka", "metadata of topic " + topic + ": " + rd_kafka_err2str(e), retry_class::retryable);
  }
  const metadata_ptr owned(md);
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& t = md->topics[i];
    if (topic != t.topic) continue;
    if (t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || t.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
      return std::nullopt;
    }
    if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw outbox_error("kafka", "metadata of topic " + topic + ": " + rd_kafka_err2str(t.err), classify(t.err));
    }
    topic_info info{topic, t.partition_cnt, t.partition_cnt > 0 ? t.partitions[0].replica_cnt : 0};
    return info;
  }
  return std::nullopt;
}

namespace {

std::map<std::string, std::string> describe_config(rd_kafka_t* rk, rd_kafka_ResourceType_t type,
                                                   const std::string& name, const std::string& what,
                                                   std::chrono::milliseconds timeout) {
  rd_kafka_ConfigResource_t* res = rd_kafka_ConfigResource_new(type, name.c_str());
  queue_ptr q(rd_kafka_queue_new(rk));
  const auto opts = options(rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout);
  rd_kafka_DescribeConfigs(rk, &res, 1, opts.get(), q.get());
  rd_kafka_ConfigResource_destroy(res);
  const event_ptr ev = wait_for(q.get(), timeout, "describing " + what);
  std::size_t n = 0;
  const rd_kafka_ConfigResource_t** resources =
      rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev.get()), &n);
  std::map<std::string, std::string> out;
  for (std::size_t i = 0; i < n; ++i) {
    if (const auto e = rd_kafka_ConfigResource_error(resources[i]); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* why = rd_kafka_ConfigResource_error_string(resources[i]);
      throw outbox_error("kafka", "describing " + what + ": " + (why != nullptr ? why : rd_kafka_err2str(e)),
                         classify(e));
    }
    std::size_t count = 0;
    const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(resources[i], &count);
    for (std::size_t j = 0; j < count; ++j) {
      const char* value = rd_kafka_ConfigEntry_value(entries[j]);
      out.emplace(rd_kafka_ConfigEntry_name(entries[j]), value != nullptr ? value : "");
    }
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> describe_topic_config(rd_kafka_t* rk, const std::string& topic,
                                                         std::chrono::milliseconds timeout) {
  return describe_config(rk, RD_KAFKA_RESOURCE_TOPIC, topic, "topic " + topic, timeout);
}

std::map<std::string, std::string> describe_broker_config(rd_kafka_t* rk, int broker_id,
                                                          std::chrono::milliseconds timeout) {
  return describe_config(rk, RD_KAFKA_RESOURCE_BROKER, std::to_string(broker_id), "broker " + std::to_string(broker_id),
                         timeout);
}

std::vector<topic_info> list_topics(rd_kafka_t* rk, std::chrono::milliseconds timeout, int* broker_id) {
  const rd_kafka_metadata_t* md = nullptr;
  const auto e = rd_kafka_metadata(rk, 1, nullptr, &md, ms(timeout));
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw outbox_error("kafka", std::string("listing topics: ") + rd_kafka_err2str(e), retry_class::retryable);
  }
  const metadata_ptr owned(md);
  if (broker_id != nullptr) *broker_id = md->broker_cnt > 0 ? md->brokers[0].id : -1;
  std::vector<topic_info> out;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& t = md->topics[i];
    if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR || std::string_view(t.topic).starts_with("__")) continue;
    out.push_back({t.topic, t.partition_cnt, t.partition_cnt > 0 ? t.partitions[0].replica_cnt : 0});
  }
  return out;
}

}  // namespace outbox::kafka
