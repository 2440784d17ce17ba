#pragma once
// A small librdkafka producer for the consumer SDK's tests and benchmark (real Kafka or the mock cluster).

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace outbox::consumer_test {

/// One record to produce; partition -1 lets the partitioner pick by key.
struct outgoing {
  std::string topic;
  std::int32_t partition = -1;
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<std::pair<std::string, std::string>> headers;
};

/// A producer that fails loudly: send() queues, flush() waits and throws if any delivery failed.
class test_producer {
 public:
  /// A producer on `brokers`; with `mock_brokers` > 0 it starts its own mock cluster instead.
  explicit test_producer(const std::string& brokers, int mock_brokers = 0) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    if (mock_brokers > 0) {
      set(conf, "test.mock.num.brokers", std::to_string(mock_brokers));
    } else {
      set(conf, "bootstrap.servers", brokers);
    }
    set(conf, "linger.ms", "5");
    set(conf, "enable.idempotence", "true");
    set(conf, "queue.buffering.max.messages", "1000000");
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) static_cast<test_producer*>(opaque)->m_failed.fetch_add(1);
    });
    char err[512];
    m_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (m_rk == nullptr) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(std::string("test producer: ") + err);
    }
  }
  ~test_producer() { rd_kafka_destroy(m_rk); }
  test_producer(const test_producer&) = delete;
  test_producer& operator=(const test_producer&) = delete;

  /// The mock cluster this producer started, or nullptr.
  [[nodiscard]] rd_kafka_mock_cluster_t* mock() const { return rd_kafka_handle_mock_cluster(m_rk); }
  /// The mock cluster's bootstrap servers.
  [[nodiscard]] std::string mock_bootstraps() const { return rd_kafka_mock_cluster_bootstraps(mock()); }

  /// Queues one record (copied).
  void send(const outgoing& o) {
    rd_kafka_headers_t* headers = rd_kafka_headers_new(o.headers.size());
    for (const auto& [k, v] : o.headers) {
      rd_kafka_header_add(headers, k.data(), static_cast<ssize_t>(k.size()), v.data(), static_cast<ssize_t>(v.size()));
    }
    rd_kafka_vu_t vus[6];
    vus[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    vus[0].u.cstr = o.topic.c_str();
    vus[1].vtype = RD_KAFKA_VTYPE_PARTITION;
    vus[1].u.i32 = o.partition < 0 ? RD_KAFKA_PARTITION_UA : o.partition;
    vus[2].vtype = RD_KAFKA_VTYPE_KEY;
    vus[2].u.mem = {o.key ? const_cast<char*>(o.key->data()) : nullptr, o.key ? o.key->size() : 0};
    vus[3].vtype = RD_KAFKA_VTYPE_VALUE;
    vus[3].u.mem = {o.value ? const_cast<char*>(o.value->data()) : nullptr, o.value ? o.value->size() : 0};
    vus[4].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vus[4].u.i = RD_KAFKA_MSG_F_COPY;
    vus[5].vtype = RD_KAFKA_VTYPE_HEADERS;
    vus[5].u.headers = headers;
    while (true) {
      rd_kafka_error_t* e = rd_kafka_produceva(m_rk, vus, 6);
      if (e == nullptr) return;
      const auto code = rd_kafka_error_code(e);
      const std::string text = rd_kafka_error_string(e);
      rd_kafka_error_destroy(e);
      if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_headers_destroy(headers);
        throw std::runtime_error("test producer: " + text);
      }
      rd_kafka_poll(m_rk, 50);  // queue full: let deliveries drain
    }
  }

  /// Waits until everything queued is delivered; throws on a timeout or a failed delivery.
  void flush(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    if (rd_kafka_flush(m_rk, static_cast<int>(timeout.count())) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("test producer: flush timed out");
    }
    if (m_failed.load() > 0)
      throw std::runtime_error("test producer: " + std::to_string(m_failed.load()) + " deliveries failed");
  }

 private:
  static void set(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
    char err[512];
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error("test producer: " + key + ": " + err);
    }
  }

  rd_kafka_t* m_rk = nullptr;
  std::atomic<int> m_failed{0};
};

/// Creates `topic` with `partitions` partitions through the admin API (an existing topic is fine).
inline void create_topic(const std::string& brokers, const std::string& topic, int partitions) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) throw std::runtime_error(std::string("create_topic: ") + err);
  rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, err, sizeof err);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  std::string failure = ev == nullptr ? "no answer within 30 s" : "";
  if (ev != nullptr) {
    std::size_t n = 0;
    const rd_kafka_topic_result_t** res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto code = rd_kafka_topic_result_error(res[i]);
      if (code != RD_KAFKA_RESP_ERR_NO_ERROR && code != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        failure = rd_kafka_topic_result_error_string(res[i]);
      }
    }
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
  if (!failure.empty()) throw std::runtime_error("create topic " + topic + ": " + failure);
}

/// The committed offset of each of `partitions` partitions of `topic` for `group` (-1 when none).
inline std::vector<std::int64_t> committed_offsets(const std::string& brokers, const std::string& group,
                                                   const std::string& topic, int partitions) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) throw std::runtime_error(std::string("committed_offsets: ") + err);
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list, topic.c_str(), p);
  const auto e = rd_kafka_committed(rk, list, 10000);
  std::vector<std::int64_t> out;
  for (int p = 0; p < partitions; ++p) out.push_back(e == RD_KAFKA_RESP_ERR_NO_ERROR ? list->elems[p].offset : -2);
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  return out;
}

}  // namespace outbox::consumer_test
