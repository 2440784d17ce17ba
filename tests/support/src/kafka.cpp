#include "outbox/test/kafka.hpp"

#include "outbox/kafka/admin.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/kafka/handles.hpp"
#include "outbox/kafka/produce.hpp"
#include "outbox/test/environment.hpp"

#include <functional>
#include <thread>
#include <stdexcept>
#include <string>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;

kafka::client_ptr make_client(rd_kafka_type_t type, kafka::conf_builder& conf) {
  // Looking at a topic must never create it with the broker's defaults (the consumer creates its own topics).
  conf.set("bootstrap.servers", require_services().kafka_brokers)
      .set("allow.auto.create.topics", "false")
      .log_lines(true);
  return conf.create(type, "a test client");
}

/// Waits up to 30 s for an admin call's answer on `queue`: "" when it succeeded, else what failed (the request's
/// error, or what `result_error` finds in the per-resource results).
std::string admin_failure(rd_kafka_queue_t* queue, const std::function<std::string(rd_kafka_event_t*)>& result_error) {
  const kafka::event_ptr ev(rd_kafka_queue_poll(queue, 30000));
  if (!ev) return "no answer within 30 s";
  if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) return rd_kafka_event_error_string(ev.get());
  return result_error(ev.get());
}

}  // namespace

std::optional<std::string> consumed_record::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

void kafka_create_topic(const std::string& topic, int partitions,
                        const std::vector<std::pair<std::string, std::string>>& configs) {
  kafka::conf_builder conf;
  auto admin = make_client(RD_KAFKA_PRODUCER, conf);
  const auto results = kafka::create_topics(admin.get(), {{topic, partitions, 1, configs}}, 30s);
  for (const auto& r : results) {
    if (r.error != RD_KAFKA_RESP_ERR_NO_ERROR && r.error != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      throw std::runtime_error("create topic " + topic + ": " + r.message);
    }
  }
}

std::vector<consumed_record> kafka_consume(const std::string& topic, std::size_t count,
                                           std::chrono::milliseconds timeout) {
  return kafka_consume_until(
      topic, [count](const std::vector<consumed_record>& r) { return r.size() >= count; }, timeout);
}

void kafka_alter_topic_config(const std::string& topic,
                              const std::vector<std::pair<std::string, std::string>>& configs) {
  kafka::conf_builder conf;
  auto admin = make_client(RD_KAFKA_PRODUCER, conf);
  rd_kafka_ConfigResource_t* res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  for (const auto& [name, value] : configs) rd_kafka_ConfigResource_set_config(res, name.c_str(), value.c_str());
  const kafka::queue_ptr queue(rd_kafka_queue_new(admin.get()));
  rd_kafka_AlterConfigs(admin.get(), &res, 1, nullptr, queue.get());
  rd_kafka_ConfigResource_destroy(res);
  const std::string failure = admin_failure(queue.get(), [](rd_kafka_event_t* ev) {
    std::string f;
    std::size_t n = 0;
    const rd_kafka_ConfigResource_t** out =
        rd_kafka_AlterConfigs_result_resources(rd_kafka_event_AlterConfigs_result(ev), &n);
    for (std::size_t i = 0; i < n; ++i) {
      if (rd_kafka_ConfigResource_error(out[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) f = rd_kafka_ConfigResource_error_string(out[i]);
    }
    return f;
  });
  if (!failure.empty()) throw std::runtime_error("alter configs of " + topic + ": " + failure);
}

void kafka_delete_records(const std::string& topic, int partition, long long before_offset) {
  kafka::conf_builder conf;
  auto admin = make_client(RD_KAFKA_PRODUCER, conf);
  kafka::partition_list_ptr offsets = kafka::make_partition_list(1);
  rd_kafka_topic_partition_list_add(offsets.get(), topic.c_str(), partition)->offset = before_offset;
  rd_kafka_DeleteRecords_t* del = rd_kafka_DeleteRecords_new(offsets.get());
  const kafka::queue_ptr queue(rd_kafka_queue_new(admin.get()));
  rd_kafka_DeleteRecords(admin.get(), &del, 1, nullptr, queue.get());
  rd_kafka_DeleteRecords_destroy(del);
  const std::string failure = admin_failure(queue.get(), [](rd_kafka_event_t* ev) {
    std::string f;
    const rd_kafka_topic_partition_list_t* res =
        rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
    for (int i = 0; res != nullptr && i < res->cnt; ++i) {
      if (res->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) f = rd_kafka_err2str(res->elems[i].err);
    }
    return f;
  });
  if (!failure.empty()) throw std::runtime_error("delete records of " + topic + ": " + failure);
}

long long kafka_record_count(const std::string& topic) {
  kafka::conf_builder conf;
  auto client = make_client(RD_KAFKA_PRODUCER, conf);
  const auto info = kafka::describe_topic(client.get(), topic, 10s);
  if (!info) return 0;  // a topic not created yet holds no records
  long long total = 0;
  for (int p = 0; p < info->partitions; ++p) {
    std::int64_t low = 0;
    std::int64_t high = 0;
    auto e = rd_kafka_query_watermark_offsets(client.get(), topic.c_str(), p, &low, &high, 10000);
    // A topic just created has no partition leader for a moment: ask again.
    for (int tries = 0; tries < 50 && (e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
                                       e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
                                       e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
         ++tries) {
      std::this_thread::sleep_for(200ms);
      e = rd_kafka_query_watermark_offsets(client.get(), topic.c_str(), p, &low, &high, 10000);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw std::runtime_error("watermarks of " + topic + ": " + rd_kafka_err2str(e));
    total += high - low;
  }
  return total;
}

std::vector<consumed_record> kafka_consume_until(const std::string& topic,
                                                 const std::function<bool(const std::vector<consumed_record>&)>& done,
                                                 std::chrono::milliseconds timeout) {
  kafka::conf_builder conf;
  conf.set("group.id", unique_name("reader"))
      .set("auto.offset.reset", "earliest")
      .set("enable.auto.commit", "false")
      .set("enable.partition.eof", "false")
      .set("topic.metadata.refresh.interval.ms", "500");
  const kafka::consumer_ptr consumer(make_client(RD_KAFKA_CONSUMER, conf).release());
  rd_kafka_poll_set_consumer(consumer.get());
  kafka::partition_list_ptr topics = kafka::make_partition_list(1);
  rd_kafka_topic_partition_list_add(topics.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(consumer.get(), topics.get());

  std::vector<consumed_record> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(out) && std::chrono::steady_clock::now() < deadline) {
    const kafka::message_ptr m(rd_kafka_consumer_poll(consumer.get(), 200));
    if (!m || m->err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    consumed_record r;
    r.topic = rd_kafka_topic_name(m->rkt);
    r.partition = m->partition;
    r.offset = m->offset;
    if (const auto k = kafka::key_of(m.get())) r.key.emplace(*k);
    if (const auto v = kafka::value_of(m.get())) r.value.emplace(*v);
    kafka::for_each_header(m.get(), [&](std::string_view name, std::optional<std::string_view> value) {
      r.headers.emplace_back(std::string(name), std::string(value.value_or("")));
    });
    out.push_back(std::move(r));
  }
  rd_kafka_consumer_close(consumer.get());
  return out;
}

}  // namespace outbox::test
