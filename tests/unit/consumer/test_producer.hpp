#pragma once
// A small librdkafka producer for the consumer SDK's tests and benchmark (real Kafka or the mock cluster).

#include "outbox/kafka/admin.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/kafka/handles.hpp"
#include "outbox/kafka/produce.hpp"

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
    kafka::conf_builder conf;
    if (mock_brokers > 0) {
      conf.set("test.mock.num.brokers", std::to_string(mock_brokers));
    } else {
      conf.set("bootstrap.servers", brokers);
    }
    conf.set("linger.ms", "5").set("enable.idempotence", "true").set("queue.buffering.max.messages", "1000000");
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) static_cast<test_producer*>(opaque)->m_failed.fetch_add(1);
    });
    conf.log_lines(true);
    m_rk = conf.create(RD_KAFKA_PRODUCER, "the test producer");
  }
  test_producer(const test_producer&) = delete;
  test_producer& operator=(const test_producer&) = delete;

  /// The mock cluster this producer started, or nullptr.
  [[nodiscard]] rd_kafka_mock_cluster_t* mock() const { return rd_kafka_handle_mock_cluster(m_rk.get()); }
  /// The mock cluster's bootstrap servers.
  [[nodiscard]] std::string mock_bootstraps() const { return rd_kafka_mock_cluster_bootstraps(mock()); }
  /// The producer's handle (for admin requests in tests).
  [[nodiscard]] rd_kafka_t* handle() const { return m_rk.get(); }

  /// Queues one record (copied).
  void send(const outgoing& o) {
    kafka::headers_ptr headers = kafka::make_headers(o.headers);
    kafka::outgoing out;
    out.topic = o.topic;
    out.partition = o.partition < 0 ? RD_KAFKA_PARTITION_UA : o.partition;
    if (o.key) out.key = *o.key;
    if (o.value) out.value = *o.value;
    out.headers = headers.get();
    while (true) {
      const kafka::error_ptr e = kafka::produce(m_rk.get(), out);
      if (!e) {
        static_cast<void>(headers.release());  // librdkafka owns them now
        return;
      }
      if (rd_kafka_error_code(e.get()) != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        throw std::runtime_error(std::string("test producer: ") + rd_kafka_error_string(e.get()));
      }
      rd_kafka_poll(m_rk.get(), 50);  // queue full: let deliveries drain
    }
  }

  /// Waits until everything queued is delivered; throws on a timeout or a failed delivery.
  void flush(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    if (rd_kafka_flush(m_rk.get(), static_cast<int>(timeout.count())) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("test producer: flush timed out");
    }
    if (m_failed.load() > 0)
      throw std::runtime_error("test producer: " + std::to_string(m_failed.load()) + " deliveries failed");
  }

 private:
  kafka::client_ptr m_rk;
  std::atomic<int> m_failed{0};
};

/// Creates `topic` with `partitions` partitions through the admin API (an existing topic is fine).
inline void create_topic(const std::string& brokers, const std::string& topic, int partitions) {
  kafka::conf_builder conf;
  conf.set("bootstrap.servers", brokers).log_lines(true);
  const auto rk = conf.create(RD_KAFKA_PRODUCER, "a test admin client");
  for (const auto& r : kafka::create_topics(rk.get(), {{topic, partitions, 1, {}}}, std::chrono::seconds(30))) {
    if (r.error != RD_KAFKA_RESP_ERR_NO_ERROR && r.error != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      throw std::runtime_error("create topic " + topic + ": " + r.message);
    }
  }
}

/// The committed offset of each of `partitions` partitions of `topic` for `group` (-1 when none).
inline std::vector<std::int64_t> committed_offsets(const std::string& brokers, const std::string& group,
                                                   const std::string& topic, int partitions) {
  kafka::conf_builder conf;
  conf.set("bootstrap.servers", brokers).set("group.id", group).log_lines(true);
  const kafka::consumer_ptr rk(conf.create(RD_KAFKA_CONSUMER, "a test offsets reader").release());
  kafka::partition_list_ptr list = kafka::make_partition_list(partitions);
  for (int p = 0; p < partitions; ++p) rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p);
  const auto e = rd_kafka_committed(rk.get(), list.get(), 10000);
  std::vector<std::int64_t> out;
  for (int p = 0; p < partitions; ++p) out.push_back(e == RD_KAFKA_RESP_ERR_NO_ERROR ? list->elems[p].offset : -2);
  return out;
}

}  // namespace outbox::consumer_test
