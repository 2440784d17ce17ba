#include "outbox/test/kafka.hpp"

#include "outbox/test/environment.hpp"

#include <librdkafka/rdkafka.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace outbox::test {
namespace {

struct conf_deleter {
  void operator()(rd_kafka_conf_t* c) const { rd_kafka_conf_destroy(c); }
};
struct kafka_deleter {
  void operator()(rd_kafka_t* k) const { rd_kafka_destroy(k); }
};
using kafka_ptr = std::unique_ptr<rd_kafka_t, kafka_deleter>;

void set(rd_kafka_conf_t* conf, const char* key, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, key, value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    throw std::runtime_error(std::string("librdkafka config ") + key + ": " + err);
  }
}

kafka_ptr make_client(rd_kafka_type_t type, rd_kafka_conf_t* conf) {
  char err[512];
  rd_kafka_t* k = rd_kafka_new(type, conf, err, sizeof err);
  if (k == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("rd_kafka_new: ") + err);
  }
  return kafka_ptr(k);
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
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", require_services().kafka_brokers);
  auto admin = make_client(RD_KAFKA_PRODUCER, conf);
  char err[512];
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err);
  if (nt == nullptr) throw std::runtime_error(std::string("NewTopic ") + topic + ": " + err);
  for (const auto& [k, v] : configs) rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str());
  rd_kafka_queue_t* queue = rd_kafka_queue_new(admin.get());
  rd_kafka_CreateTopics(admin.get(), &nt, 1, nullptr, queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, 30000);
  std::string failure;
  if (ev == nullptr) {
    failure = "no answer from " + require_services().kafka_brokers + " within 30 s";
  } else {
    const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &n);
    for (size_t i = 0; i < n; ++i) {
      const auto code = rd_kafka_topic_result_error(results[i]);
      if (code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        failure = rd_kafka_topic_result_error_string(results[i]);
      }
    }
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(queue);
  if (!failure.empty()) throw std::runtime_error("create topic " + topic + ": " + failure);
}

std::vector<consumed_record> kafka_consume(const std::string& topic, std::size_t count,
                                           std::chrono::milliseconds timeout) {
  return kafka_consume_until(
      topic, [count](const std::vector<consumed_record>& r) { return r.size() >= count; }, timeout);
}

void kafka_delete_records(const std::string& topic, int partition, long long before_offset) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", require_services().kafka_brokers);
  auto admin = make_client(RD_KAFKA_PRODUCER, conf);
  rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(offsets, topic.c_str(), partition)->offset = before_offset;
  rd_kafka_DeleteRecords_t* del = rd_kafka_DeleteRecords_new(offsets);
  rd_kafka_topic_partition_list_destroy(offsets);
  rd_kafka_queue_t* queue = rd_kafka_queue_new(admin.get());
  rd_kafka_DeleteRecords(admin.get(), &del, 1, nullptr, queue);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(queue, 30000);
  std::string failure;
  if (ev == nullptr) {
    failure = "no answer within 30 s";
  } else {
    if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      failure = rd_kafka_event_error_string(ev);
    } else {
      const rd_kafka_topic_partition_list_t* res =
          rd_kafka_DeleteRecords_result_offsets(rd_kafka_event_DeleteRecords_result(ev));
      for (int i = 0; res != nullptr && i < res->cnt; ++i) {
        if (res->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) failure = rd_kafka_err2str(res->elems[i].err);
      }
    }
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_DeleteRecords_destroy(del);
  rd_kafka_queue_destroy(queue);
  if (!failure.empty()) throw std::runtime_error("delete records of " + topic + ": " + failure);
}

long long kafka_record_count(const std::string& topic) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", require_services().kafka_brokers);
  auto client = make_client(RD_KAFKA_PRODUCER, conf);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_topic_t* t = rd_kafka_topic_new(client.get(), topic.c_str(), nullptr);
  const auto err = rd_kafka_metadata(client.get(), 0, t, &md, 10000);
  rd_kafka_topic_destroy(t);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw std::runtime_error("metadata for " + topic + ": " + rd_kafka_err2str(err));
  long long total = 0;
  for (int i = 0; i < md->topic_cnt; ++i) {
    for (int p = 0; p < md->topics[i].partition_cnt; ++p) {
      int64_t low = 0;
      int64_t high = 0;
      const auto e = rd_kafka_query_watermark_offsets(client.get(), topic.c_str(), md->topics[i].partitions[p].id, &low,
                                                      &high, 10000);
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        throw std::runtime_error("watermarks of " + topic + ": " + rd_kafka_err2str(e));
      }
      total += high - low;
    }
  }
  rd_kafka_metadata_destroy(md);
  return total;
}

std::vector<consumed_record> kafka_consume_until(const std::string& topic,
                                                 const std::function<bool(const std::vector<consumed_record>&)>& done,
                                                 std::chrono::milliseconds timeout) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", require_services().kafka_brokers);
  set(conf, "group.id", unique_name("reader"));
  set(conf, "auto.offset.reset", "earliest");
  set(conf, "enable.auto.commit", "false");
  set(conf, "enable.partition.eof", "false");
  set(conf, "topic.metadata.refresh.interval.ms", "500");
  auto consumer = make_client(RD_KAFKA_CONSUMER, conf);
  rd_kafka_poll_set_consumer(consumer.get());
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(consumer.get(), topics);
  rd_kafka_topic_partition_list_destroy(topics);

  std::vector<consumed_record> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done(out) && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer.get(), 200);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      consumed_record r;
      r.topic = rd_kafka_topic_name(m->rkt);
      r.partition = m->partition;
      r.offset = m->offset;
      if (m->key != nullptr) r.key.emplace(static_cast<const char*>(m->key), m->key_len);
      if (m->payload != nullptr) r.value.emplace(static_cast<const char*>(m->payload), m->len);
      rd_kafka_headers_t* hdrs = nullptr;
      if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name = nullptr;
        const void* val = nullptr;
        size_t size = 0;
        for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
          r.headers.emplace_back(name, val != nullptr ? std::string(static_cast<const char*>(val), size) : "");
        }
      }
      out.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(consumer.get());
  return out;
}

}  // namespace outbox::test
