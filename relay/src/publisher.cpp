#include "outbox/relay/publisher.hpp"

#include "outbox/base/log.hpp"

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

retry_class classify_kafka_error(int code) {
  switch (static_cast<rd_kafka_resp_err_t>(code)) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
      return retry_class::retryable;
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
      // The record may or may not have been written before the timeout.
      return retry_class::in_doubt;
    default:
      return retry_class::fatal;
  }
}

publisher::publisher(const std::string& brokers, const std::vector<std::pair<std::string, std::string>>& properties,
                     std::size_t max_inflight_messages, delivery_handler on_delivery, state_handler on_state)
    : m_on_delivery(std::move(on_delivery)), m_on_state(std::move(on_state)) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  auto set = [&](const std::string& key, const std::string& value, const char* origin) {
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      throw outbox_error("config", std::string(origin) + key + ": " + err);
    }
  };
  // Safety defaults first; sink.properties are applied after them, unchanged.
  set("bootstrap.servers", brokers, "sink.brokers: ");
  set("enable.idempotence", "true", "");
  set("acks", "all", "");
  set("partitioner", "murmur2_random", "");
  // Never give up on a record while brokers are merely unreachable: waited out, not dropped.
  set("message.timeout.ms", "0", "");
  set("linger.ms", "5", "");
  set("compression.type", "lz4", "");
  set("queue.buffering.max.messages", std::to_string(std::max<std::size_t>(max_inflight_messages + 1024, 100000)), "");
  set("queue.buffering.max.kbytes", "2097151", "");
  set("client.id", "outbox-relay", "");
  for (const auto& [key, value] : properties) set(key, value, "sink.properties.");
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_dr_msg_cb(
      conf, [](rd_kafka_t* rk, const rd_kafka_message_t* m, void* opaque) { on_delivery_report(rk, m, opaque); });
  rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t* /*rk*/, int level, const char* facility, const char* buf) {
    // syslog levels; librdkafka reports transient connection failures at 3, so 0-4 are warnings.
    const log::level l = level <= 4 ? log::level::warn : level <= 6 ? log::level::info : log::level::debug;
    log::write(l, "kafka", buf, {{"facility", facility}});
  });
  rd_kafka_conf_set_error_cb(
      conf, [](rd_kafka_t* rk, int e, const char* reason, void* opaque) { on_error(rk, e, reason, opaque); });

  if (::pipe2(m_wakeup, O_NONBLOCK | O_CLOEXEC) != 0) {
    rd_kafka_conf_destroy(conf);
    throw outbox_error("kafka", "cannot create the wakeup pipe");
  }
  m_producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (m_producer == nullptr) {
    rd_kafka_conf_destroy(conf);
    ::close(m_wakeup[0]);
    ::close(m_wakeup[1]);
    throw outbox_error("config", std::string("cannot create the Kafka producer: ") + err);
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
  rd_kafka_headers_t* headers = rd_kafka_headers_new(record.headers.size());
  for (const auto& [name, value] : record.headers) {
    rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                        static_cast<ssize_t>(value.size()));
  }
  auto t = std::make_unique<tag>(tag{event_id, record.byte_size(), route, commit_time_ms});
  rd_kafka_vu_t vus[6];
  vus[0].vtype = RD_KAFKA_VTYPE_TOPIC;
  vus[0].u.cstr = record.topic.c_str();
  vus[1].vtype = RD_KAFKA_VTYPE_KEY;
  vus[1].u.mem = {const_cast<char*>(record.key.data()), record.key.size()};
  vus[2].vtype = RD_KAFKA_VTYPE_VALUE;
  if (record.value) {
    vus[2].u.mem = {const_cast<char*>(record.value->data()), record.value->size()};
  } else {
    vus[2].u.mem = {nullptr, 0};
  }
  vus[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  vus[3].u.i = RD_KAFKA_MSG_F_COPY;
  vus[4].vtype = RD_KAFKA_VTYPE_HEADERS;
  vus[4].u.headers = headers;
  vus[5].vtype = RD_KAFKA_VTYPE_OPAQUE;
  vus[5].u.ptr = t.get();
  rd_kafka_error_t* e = rd_kafka_produceva(m_producer, vus, 6);
  if (e != nullptr) {
    const std::string reason = rd_kafka_error_string(e);
    const auto code = rd_kafka_error_code(e);
    rd_kafka_error_destroy(e);
    rd_kafka_headers_destroy(headers);  // not taken over on failure
    throw outbox_error("kafka.produce",
                       "librdkafka refused the record for topic " + record.topic + " key " + record.key + ": " + reason,
                       classify_kafka_error(code));
  }
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
                      classify_kafka_error(m->err)};
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
