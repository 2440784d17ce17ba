#include "outbox/relay/publisher.hpp"

#include "outbox/base/log.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/kafka/errors.hpp"
#include "outbox/kafka/produce.hpp"

#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

namespace outbox::relay {

/// Travels with each record through librdkafka and comes back in its delivery report.
struct publisher::tag {
  std::uint64_t event_id;
  std::size_t bytes;
  std::uint32_t route;
  std::int64_t commit_time_ms;
};

publisher::publisher(const std::string& brokers, const std::vector<std::pair<std::string, std::string>>& properties,
                     std::size_t max_inflight_messages, delivery_handler on_delivery, state_handler on_state)
    : m_on_delivery(std::move(on_delivery)), m_on_state(std::move(on_state)) {
  kafka::conf_builder b;
  // Safety defaults first; sink.properties are applied after them, unchanged.
  b.set("bootstrap.servers", brokers, "sink.brokers: ");
  b.set("enable.idempotence", "true");
  b.set("acks", "all");
  b.set("partitioner", "murmur2_random");
  // Never give up on a record while brokers are merely unreachable: waited out, not dropped.
  b.set("message.timeout.ms", "0");
  b.set("linger.ms", "5");
  b.set("compression.type", "lz4");
  b.set("queue.buffering.max.messages", std::to_string(std::max<std::size_t>(max_inflight_messages + 1024, 100000)));
  b.set("queue.buffering.max.kbytes", "2097151");
  b.set("client.id", "outbox-relay");
  b.set_all(properties, "sink.properties.");
  b.log_lines();
  rd_kafka_conf_t* conf = b.get();
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_dr_msg_cb(
      conf, [](rd_kafka_t* rk, const rd_kafka_message_t* m, void* opaque) { on_delivery_report(rk, m, opaque); });
  rd_kafka_conf_set_error_cb(
      conf, [](rd_kafka_t* rk, int e, const char* reason, void* opaque) { on_error(rk, e, reason, opaque); });

  if (::pipe2(m_wakeup, O_NONBLOCK | O_CLOEXEC) != 0) throw outbox_error("kafka", "cannot create the wakeup pipe");
  try {
    m_producer = b.create(RD_KAFKA_PRODUCER, "the Kafka producer").release();
  } catch (...) {
    ::close(m_wakeup[0]);
    ::close(m_wakeup[1]);
    throw;
  }
  rd_kafka_queue_t* main_queue = rd_kafka_queue_get_main(m_producer);
  // librdkafka writes to the pipe when its main queue goes from empty to non-empty.
  rd_kafka_queue_io_event_enable(main_queue, m_wakeup[1], "1", 1);
  rd_kafka_queue_destroy(main_queue);
}

publisher::~publisher() {
  if (m_producer != nullptr) {
    rd_kafka_queue_t* main_queue = rd_kafka_queue_get_main(m_producer);
    rd_kafka_queue_io_event_enable(main_queue, -1, nullptr, 0);
    rd_kafka_queue_destroy(main_queue);
    // Records still queued are abandoned on purpose: their LSNs were never confirmed.
    rd_kafka_purge(m_producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(m_producer, 0);
    rd_kafka_destroy(m_producer);
  }
  if (m_wakeup[0] >= 0) ::close(m_wakeup[0]);
  if (m_wakeup[1] >= 0) ::close(m_wakeup[1]);
}

void publisher::produce(const kafka_record& record, std::uint64_t event_id, std::uint32_t route,
                        std::int64_t commit_time_ms) {
  kafka::headers_ptr headers = kafka::make_headers(record.headers);
  auto t = std::make_unique<tag>(tag{event_id, record.byte_size(), route, commit_time_ms});
  kafka::outgoing out;
  out.topic = record.topic;
  out.key = record.key;
  if (record.value) out.value = *record.value;
  out.headers = headers.get();
  out.opaque = t.get();
  if (const kafka::error_ptr e = kafka::produce(m_producer, out)) {
    throw outbox_error("kafka.produce",
                       "librdkafka refused the record for topic " + record.topic + " key " + record.key + ": " +
                           rd_kafka_error_string(e.get()),
                       kafka::classify(rd_kafka_error_code(e.get())));
  }
  static_cast<void>(headers.release());  // taken over by librdkafka
  ++m_inflight_messages;
  m_inflight_bytes += t->bytes;
  static_cast<void>(t.release());  // owned by librdkafka until the delivery report
}

void publisher::poll() {
  char drain[256];
  while (::read(m_wakeup[0], drain, sizeof drain) > 0) {
  }
  while (rd_kafka_poll(m_producer, 0) > 0) {
  }
}

void publisher::flush(std::chrono::milliseconds timeout) {
  rd_kafka_flush(m_producer, static_cast<int>(timeout.count()));
  poll();
}

std::vector<std::string> publisher::describe_cluster(std::chrono::milliseconds timeout) {
  const rd_kafka_metadata_t* md = nullptr;
  const auto code = rd_kafka_metadata(m_producer, 0, nullptr, &md, static_cast<int>(timeout.count()));
  if (code != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw outbox_error("kafka", std::string("cannot reach the Kafka brokers: ") + rd_kafka_err2str(code),
                       retry_class::retryable);
  }
  std::vector<std::string> out;
  out.reserve(static_cast<std::size_t>(md->broker_cnt));
  for (int i = 0; i < md->broker_cnt; ++i) {
    out.push_back(std::string(md->brokers[i].host) + ":" + std::to_string(md->brokers[i].port) + " (id " +
                  std::to_string(md->brokers[i].id) + ")");
  }
  rd_kafka_metadata_destroy(md);
  return out;
}

void publisher::on_delivery_report(rd_kafka_s* /*rk*/, const void* message, void* opaque) {
  auto* self = static_cast<publisher*>(opaque);
  const auto* m = static_cast<const rd_kafka_message_t*>(message);
  std::unique_ptr<tag> t(static_cast<tag*>(m->_private));
  --self->m_inflight_messages;
  self->m_inflight_bytes -= t->bytes;
  delivery d{t->event_id,
             t->bytes,
             t->route,
             t->commit_time_ms,
             rd_kafka_topic_name(m->rkt),
             m->err == RD_KAFKA_RESP_ERR_NO_ERROR,
             {}};
  if (!d.ok) {
    const std::string key = m->key != nullptr ? std::string(static_cast<const char*>(m->key), m->key_len) : "";
    d.failure = error{"kafka.delivery",
                      "Kafka rejected the record for topic " + std::string(rd_kafka_topic_name(m->rkt)) + " key " +
                          key + ": " + rd_kafka_err2str(m->err),
                      kafka::classify(m->err)};
  } else if (self->m_brokers_down) {
    self->m_brokers_down = false;
    self->m_on_state(true, "delivery succeeded");
  }
  self->m_on_delivery(d);
}

void publisher::on_error(rd_kafka_s* rk, int err, const char* reason, void* opaque) {
  auto* self = static_cast<publisher*>(opaque);
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    char buf[512];
    const auto code = rd_kafka_fatal_error(rk, buf, sizeof buf);
    self->m_on_delivery(
        delivery{0,
                 0,
                 0,
                 0,
                 {},
                 false,
                 error{"kafka.fatal", std::string("the Kafka producer failed: ") + rd_kafka_err2str(code) + ": " + buf,
                       retry_class::fatal}});
    return;
  }
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && !self->m_brokers_down) {
    self->m_brokers_down = true;
    self->m_on_state(false, reason);
  } else {
    log::debug("kafka", "librdkafka error",
               {{"error", rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(err))}, {"reason", reason}});
  }
}

}  // namespace outbox::relay
