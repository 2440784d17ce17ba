#include "outbox/relay/publisher.hpp"

#include "outbox/base/log.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/kafka/errors.hpp"
#include "outbox/kafka/produce.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstdint>

namespace outbox::relay {

publisher::publisher(const config::sink_config& sink, std::size_t max_inflight_messages, delivery_handler on_delivery,
                     error_handler on_error, const std::string& transactional_id, std::size_t batch_size_cap)
    : m_on_delivery(std::move(on_delivery)),
      m_on_error(std::move(on_error)),
      m_transactional(!transactional_id.empty()),
      m_batch_size_cap(batch_size_cap) {
  kafka::conf_builder b;
  // The safety settings first; sink.properties after them (config refuses the unsafe ones unless allowed).
  b.set("bootstrap.servers", sink.brokers, "sink.brokers: ");
  b.set("enable.idempotence", "true");
  b.set("enable.gapless.guarantee", "true");
  b.set("acks", "all");
  b.set("partitioner", "murmur2_random");
  // Never give up on a record while brokers are merely unreachable: waited out, not dropped.
  b.set("message.timeout.ms", "0");
  // 2 ms: at 1,000 events/s the commit->ack p99 is 3 ms lower than with 5, at about a twentieth less events/s at
  // full rate (docs/benchmarks.md, "Commit->ack latency"). sink.properties may set another value.
  b.set("linger.ms", "2");
  b.set("compression.type", "lz4");
  b.set("queue.buffering.max.messages", std::to_string(std::max<std::size_t>(max_inflight_messages + 1024, 100000)));
  b.set("queue.buffering.max.kbytes", "2097151");
  b.set("client.id", "outbox-relay");
  if (m_transactional) {
    // A transaction bounds how long a record may wait: librdkafka needs message.timeout.ms within it. A broker
    // outage longer than that aborts the transaction, and the relay goes on from its checkpoint.
    const std::string timeout = std::to_string(sink.transaction_timeout.count());
    b.set("transactional.id", transactional_id);
    b.set("transaction.timeout.ms", timeout);
    b.set("message.timeout.ms", timeout);
  }
  std::vector<std::pair<std::string, std::string>> props(sink.properties.begin(), sink.properties.end());
  b.set_all(props, "sink.properties.");
  if (batch_size_cap > 0) {
    const auto own = sink.properties.find("batch.size");
    if (own == sink.properties.end() || std::strtoull(own->second.c_str(), nullptr, 10) > batch_size_cap) {
      b.set("batch.size", std::to_string(batch_size_cap));
    }
  }
  b.log_lines();
  rd_kafka_conf_t* conf = b.get();
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery_report);
  rd_kafka_conf_set_error_cb(conf, on_error_cb);

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
    detach();
    rd_kafka_queue_t* main_queue = rd_kafka_queue_get_main(m_producer);
    rd_kafka_queue_io_event_enable(main_queue, -1, nullptr, 0);
    rd_kafka_queue_destroy(main_queue);
    // Records still queued are abandoned on purpose: their LSNs were never confirmed.
    purge();
    rd_kafka_poll(m_producer, 0);
    for (auto& [name, t] : m_topics) rd_kafka_topic_destroy(t);
    rd_kafka_destroy(m_producer);
  }
  if (m_wakeup[0] >= 0) ::close(m_wakeup[0]);
  if (m_wakeup[1] >= 0) ::close(m_wakeup[1]);
}

void publisher::detach() noexcept { m_detached = true; }

void publisher::purge() noexcept {
  if (m_producer != nullptr) rd_kafka_purge(m_producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

rd_kafka_topic_t* publisher::topic_handle(std::string_view topic) {
  if (const auto it = m_topics.find(topic); it != m_topics.end()) return it->second;
  const std::string name(topic);
  rd_kafka_topic_t* t = rd_kafka_topic_new(m_producer, name.c_str(), nullptr);
  if (t == nullptr) return nullptr;
  m_topics.emplace(name, t);
  return t;
}

produce_result publisher::produce(const record_view& record, std::uint64_t event_id, std::uint32_t source,
                                  std::int64_t commit_time_ms, std::string* why, rd_kafka_resp_err_t* code) {
  rd_kafka_topic_t* topic = topic_handle(record.topic);
  if (topic == nullptr) {
    if (why != nullptr) *why = std::string("librdkafka cannot use topic ") + std::string(record.topic);
    return produce_result::refused;
  }
  kafka::headers_ptr headers(rd_kafka_headers_new(record.headers.size()));
  for (const auto& h : record.headers) kafka::add_header(headers.get(), h.name, h.value);
  const std::uint64_t seq = m_next_seq;
  const auto bytes = static_cast<std::uint32_t>(std::min<std::size_t>(record.byte_size(), UINT32_MAX));
  kafka::outgoing out;
  out.topic_handle = topic;
  out.key = record.key;
  out.value = record.value;
  out.headers = headers.get();
  out.opaque = reinterpret_cast<void*>(static_cast<std::uintptr_t>(seq + 1));
  if (const kafka::error_ptr e = kafka::produce(m_producer, out)) {
    const auto err = rd_kafka_error_code(e.get());
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return produce_result::queue_full;
    if (code != nullptr) *code = err;
    // A fatal error, or a transaction librdkafka already moved to AbortableError (a record of it timed out, the
    // coordinator aborted it) before its delivery reports were served: the record is fine, the producer is not.
    if (rd_kafka_error_is_fatal(e.get()) != 0 || (m_transactional && err == RD_KAFKA_RESP_ERR__STATE)) {
      if (why != nullptr) *why = std::string("librdkafka cannot produce: ") + rd_kafka_error_string(e.get());
      return produce_result::producer_failed;
    }
    if (why != nullptr) {
      *why = "librdkafka refused the record for topic " + std::string(record.topic) + " (key \"" +
             std::string(record.key.substr(0, 100)) + "\", " + std::to_string(record.byte_size()) +
             " bytes): " + rd_kafka_error_string(e.get());
      if (err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
        *why +=
            " (more than the producer's message.max.bytes; raise sink.properties.message.max.bytes together with "
            "the topic's max.message.bytes, or keep events smaller)";
      }
    }
    return produce_result::refused;
  }
  static_cast<void>(headers.release());  // taken over by librdkafka
  m_ring.push_back({event_id, commit_time_ms, bytes, source, false});
  ++m_next_seq;
  ++m_inflight_messages;
  m_inflight_bytes += bytes;
  return produce_result::queued;
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

namespace {

tx_outcome outcome_of(rd_kafka_error_t* e, const char* call) {
  tx_outcome out;
  if (e == nullptr) return out;
  out.message = std::string(call) + ": " + rd_kafka_error_string(e);
  if (rd_kafka_error_is_fatal(e) != 0) {
    out.what = tx_outcome::kind::fatal;
  } else if (rd_kafka_error_txn_requires_abort(e) != 0) {
    out.what = tx_outcome::kind::abortable;
  } else {
    out.what = tx_outcome::kind::retriable;
  }
  rd_kafka_error_destroy(e);
  return out;
}

int ms(std::chrono::milliseconds t) { return static_cast<int>(std::min<long long>(t.count(), INT32_MAX)); }

}  // namespace

tx_outcome publisher::init_transactions(std::chrono::milliseconds timeout) {
  return outcome_of(rd_kafka_init_transactions(m_producer, ms(timeout)), "init_transactions");
}

tx_outcome publisher::begin_transaction() {
  return outcome_of(rd_kafka_begin_transaction(m_producer), "begin_transaction");
}

tx_outcome publisher::commit_transaction(std::chrono::milliseconds timeout) {
  return outcome_of(rd_kafka_commit_transaction(m_producer, ms(timeout)), "commit_transaction");
}

tx_outcome publisher::abort_transaction(std::chrono::milliseconds timeout) {
  return outcome_of(rd_kafka_abort_transaction(m_producer, ms(timeout)), "abort_transaction");
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

std::optional<std::string> publisher::fatal_error() const {
  char buf[512];
  const auto code = rd_kafka_fatal_error(m_producer, buf, sizeof buf);
  if (code == RD_KAFKA_RESP_ERR_NO_ERROR) return std::nullopt;
  return std::string(rd_kafka_err2str(code)) + ": " + buf;
}

void publisher::on_delivery_report(rd_kafka_t* /*rk*/, const rd_kafka_message_t* m, void* opaque) {
  auto* self = static_cast<publisher*>(opaque);
  const auto seq = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(m->_private)) - 1;
  if (seq < self->m_ring_base || seq - self->m_ring_base >= self->m_ring.size()) return;
  inflight_entry& e = self->m_ring[seq - self->m_ring_base];
  if (e.done) return;
  e.done = true;
  --self->m_inflight_messages;
  self->m_inflight_bytes -= e.bytes;
  const delivery d{
      e.event_id,
      e.bytes,
      e.source,
      e.commit_time_ms,
      rd_kafka_topic_name(m->rkt),
      m->key != nullptr ? std::string_view(static_cast<const char*>(m->key), m->key_len) : std::string_view(),
      m->err};
  while (!self->m_ring.empty() && self->m_ring.front().done) {
    self->m_ring.pop_front();
    ++self->m_ring_base;
  }
  if (!self->m_detached) self->m_on_delivery(d);
}

void publisher::on_error_cb(rd_kafka_t* /*rk*/, int err, const char* reason, void* opaque) {
  auto* self = static_cast<publisher*>(opaque);
  if (!self->m_detached && self->m_on_error) self->m_on_error(static_cast<rd_kafka_resp_err_t>(err), reason);
}

}  // namespace outbox::relay
