#include "dlq_kafka.hpp"

#include "outbox/base/error.hpp"
#include "outbox/kafka/admin.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/kafka/handles.hpp"
#include "outbox/kafka/produce.hpp"

#include <deque>
#include <mutex>
#include <random>

namespace outbox::ctl {
namespace {

using clock = std::chrono::steady_clock;

/// How long a partition read may go without progress before the command gives up.
constexpr std::chrono::seconds k_stall_timeout{30};

/// The last error librdkafka reported in the background (e.g. "all brokers down"), for messages.
struct error_sink {
  std::mutex mutex;
  std::string last;

  std::string get() {
    const std::lock_guard lock(mutex);
    return last;
  }
};

void on_error(rd_kafka_t* /*rk*/, int /*err*/, const char* reason, void* opaque) {
  auto* sink = static_cast<error_sink*>(opaque);
  const std::lock_guard lock(sink->mutex);
  sink->last = reason;
}

/// A client on `brokers` with outboxctl's settings, then the operator's properties (named `--property KEY` in
/// errors, secrets cut out); librdkafka's own log lines would repeat what our messages say.
kafka::client_ptr make_client(rd_kafka_type_t type, kafka::conf_builder& conf, const kafka_properties& properties,
                              error_sink* sink) {
  try {
    conf.set_all(properties, "--property ", [type](std::string_view key) {
      return type == RD_KAFKA_CONSUMER || !kafka::consumer_only_property(key);
    });
    conf.log_lines(true);
    rd_kafka_conf_set_opaque(conf.get(), sink);
    rd_kafka_conf_set_error_cb(conf.get(), on_error);
    return conf.create(type, type == RD_KAFKA_CONSUMER ? "a Kafka reader" : "a Kafka producer");
  } catch (const outbox_error& e) {
    if (e.value().category == "config") throw bad_property(e.what());
    throw kafka_failure(e.what());
  }
}

std::string describe(rd_kafka_resp_err_t err, error_sink& sink) {
  std::string s = rd_kafka_err2str(err);
  const auto last = sink.get();
  if (!last.empty() && last != s) s += " (" + last + ")";
  return s;
}

dlq_record copy_out(const rd_kafka_message_t* m) {
  dlq_record r;
  r.partition = m->partition;
  r.offset = m->offset;
  r.timestamp_ms = kafka::timestamp_of(m);
  if (const auto k = kafka::key_of(m)) r.key.emplace(*k);
  if (const auto v = kafka::value_of(m)) r.value.emplace(*v);
  kafka::for_each_header(m, [&](std::string_view name, std::optional<std::string_view> value) {
    r.headers.push_back({std::string(name), value ? std::optional<std::string>(*value) : std::nullopt});
  });
  return r;
}

void assign_one(rd_kafka_t* rk, const std::string& topic, int partition, std::int64_t offset) {
  kafka::partition_list_ptr list = kafka::make_partition_list(1);
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset = offset;
  if (const auto err = rd_kafka_assign(rk, list.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw kafka_failure("cannot read " + topic + " partition " + std::to_string(partition) + ": " +
                        rd_kafka_err2str(err));
  }
}

}  // namespace

struct topic_reader::state : error_sink {
  kafka::client_ptr consumer;
};

topic_reader::topic_reader(const std::string& brokers, const kafka_properties& properties, std::string topic)
    : m_state(std::make_unique<state>()), m_brokers(brokers), m_topic(std::move(topic)) {
  kafka::conf_builder conf;
  conf.set("bootstrap.servers", brokers, "--brokers ")
      // assign() with explicit offsets needs no group; the id only satisfies the consumer and is never used.
      .set("group.id", "outboxctl-" + std::to_string(std::random_device{}()))
      .set("enable.auto.commit", "false")
      .set("enable.auto.offset.store", "false")
      .set("enable.partition.eof", "true")
      .set("auto.offset.reset", "earliest")
      .set("allow.auto.create.topics", "false")
      .set("socket.timeout.ms", "10000");
  m_state->consumer = make_client(RD_KAFKA_CONSUMER, conf, properties, m_state.get());
  const auto count = partition_count(m_topic);
  if (!count) throw kafka_failure("topic " + m_topic + " does not exist on " + brokers);
  for (int p = 0; p < *count; ++p) m_partitions.push_back(p);
}

topic_reader::~topic_reader() = default;

std::optional<int> topic_reader::partition_count(const std::string& topic) {
  try {
    const auto info = kafka::describe_topic(m_state->consumer.get(), topic, k_request_timeout);
    if (!info || info->partitions <= 0) return std::nullopt;
    return info->partitions;
  } catch (const outbox_error& e) {
    const auto last = m_state->get();
    throw kafka_failure("Kafka at " + m_brokers + " gave no metadata for topic " + topic + " within " +
                        std::to_string(k_request_timeout.count() / 1000) + " s: " + e.what() +
                        (last.empty() ? "" : " (" + last + ")") + "; check --brokers and that Kafka is reachable");
  }
}

std::int64_t topic_reader::read_all(const std::function<bool(dlq_record&&)>& visit) {
  rd_kafka_t* rk = m_state->consumer.get();
  std::int64_t total = 0;
  for (const int p : m_partitions) {
    std::int64_t low = 0;
    std::int64_t high = 0;
    const auto err = rd_kafka_query_watermark_offsets(rk, m_topic.c_str(), p, &low, &high,
                                                      static_cast<int>(k_request_timeout.count()));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw kafka_failure("watermarks of " + m_topic + " partition " + std::to_string(p) + ": " +
                          describe(err, *m_state));
    }
    total += high - low;
    if (high <= low) continue;
    assign_one(rk, m_topic, p, low);
    bool keep_going = true;
    auto last_progress = clock::now();
    std::string last_error;
    while (keep_going) {
      const kafka::message_ptr m(rd_kafka_consumer_poll(rk, 200));
      if (!m) {
        if (clock::now() - last_progress > k_stall_timeout) {
          rd_kafka_assign(rk, nullptr);
          throw kafka_failure("no progress reading " + m_topic + " partition " + std::to_string(p) + " for " +
                              std::to_string(k_stall_timeout.count()) + " s" +
                              (last_error.empty() ? "" : ": " + last_error));
        }
        continue;
      }
      const bool ours = m->rkt != nullptr && m->partition == p;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        // The broker had nothing past this offset when it answered, so everything below `high` was read.
        if (ours) keep_going = false;
      } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        last_error = rd_kafka_message_errstr(m.get());
      } else if (ours) {
        last_progress = clock::now();
        if (m->offset >= high) {
          keep_going = false;
        } else {
          const bool more = visit(copy_out(m.get()));
          keep_going = more && m->offset + 1 < high;
          if (!more) {
            rd_kafka_assign(rk, nullptr);
            return total;
          }
        }
      }
    }
    rd_kafka_assign(rk, nullptr);
  }
  return total;
}

std::optional<dlq_record> topic_reader::read_one(int partition, std::int64_t offset) {
  rd_kafka_t* rk = m_state->consumer.get();
  std::int64_t low = 0;
  std::int64_t high = 0;
  const auto err = rd_kafka_query_watermark_offsets(rk, m_topic.c_str(), partition, &low, &high,
                                                    static_cast<int>(k_request_timeout.count()));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw kafka_failure("watermarks of " + m_topic + " partition " + std::to_string(partition) + ": " +
                        describe(err, *m_state));
  }
  if (offset < low || offset >= high) return std::nullopt;
  assign_one(rk, m_topic, partition, offset);
  std::optional<dlq_record> found;
  const auto deadline = clock::now() + k_stall_timeout;
  bool done = false;
  while (!done && clock::now() < deadline) {
    const kafka::message_ptr m(rd_kafka_consumer_poll(rk, 200));
    if (!m || m->partition != partition) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      done = true;
    } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m->offset == offset) found = copy_out(m.get());
      done = m->offset >= offset;
    }
  }
  rd_kafka_assign(rk, nullptr);
  if (!done) {
    throw kafka_failure("no answer reading " + m_topic + " partition " + std::to_string(partition) + " offset " +
                        std::to_string(offset) + " within " + std::to_string(k_stall_timeout.count()) + " s");
  }
  return found;
}

struct replay_producer::state : error_sink {
  kafka::client_ptr producer;
  std::deque<std::string> labels;  ///< one per record sent; a deque keeps their addresses stable
  std::vector<std::string> failures;
  std::size_t outstanding = 0;
};

replay_producer::replay_producer(const std::string& brokers, const kafka_properties& properties)
    : m_state(std::make_unique<state>()) {
  kafka::conf_builder conf;
  conf.set("bootstrap.servers", brokers, "--brokers ")
      .set("enable.idempotence", "true")
      .set("acks", "all")
      // The relay's partitioner, so a key replayed with --to lands where the relay would have put it.
      .set("partitioner", "murmur2_random")
      .set("linger.ms", "5")
      .set("message.timeout.ms", "60000");
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t* /*rk*/, const rd_kafka_message_t* m, void* opaque) {
    auto* s = static_cast<state*>(static_cast<error_sink*>(opaque));
    const auto* what = static_cast<const std::string*>(m->_private);
    --s->outstanding;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) s->failures.push_back(*what + ": " + rd_kafka_err2str(m->err));
  });
  m_state->producer = make_client(RD_KAFKA_PRODUCER, conf, properties, m_state.get());
}

replay_producer::~replay_producer() {
  if (m_state->outstanding > 0) {
    rd_kafka_purge(m_state->producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(m_state->producer.get(), 1000);
  }
}

void replay_producer::send(const std::string& topic, std::optional<int> partition, const dlq_record& r,
                           const std::vector<header>& headers, std::string label) {
  rd_kafka_t* rk = m_state->producer.get();
  const std::string& what = m_state->labels.emplace_back(std::move(label));
  kafka::headers_ptr hdrs(rd_kafka_headers_new(headers.size()));
  for (const auto& h : headers) {
    kafka::add_header(hdrs.get(), h.name, h.value ? std::optional<std::string_view>(*h.value) : std::nullopt);
  }
  kafka::outgoing out;
  out.topic = topic;
  out.partition = partition.value_or(RD_KAFKA_PARTITION_UA);
  if (r.key) out.key = *r.key;
  if (r.value) out.value = *r.value;
  out.headers = hdrs.get();
  out.opaque = const_cast<std::string*>(&what);
  for (;;) {
    const kafka::error_ptr error = kafka::produce(rk, out);
    if (!error) {
      static_cast<void>(hdrs.release());  // librdkafka owns them now
      ++m_state->outstanding;
      break;
    }
    if (rd_kafka_error_code(error.get()) == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 100);
      continue;
    }
    m_state->failures.push_back(what + ": " + rd_kafka_error_string(error.get()));
    break;
  }
  rd_kafka_poll(rk, 0);
}

std::vector<std::string> replay_producer::finish(std::chrono::milliseconds timeout) {
  rd_kafka_t* rk = m_state->producer.get();
  const auto deadline = clock::now() + timeout;
  while (m_state->outstanding > 0 && clock::now() < deadline) rd_kafka_poll(rk, 100);
  if (m_state->outstanding > 0) {
    // Purged records are reported through the delivery callback with a purge error, naming each one.
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    const auto grace = clock::now() + std::chrono::seconds(5);
    while (m_state->outstanding > 0 && clock::now() < grace) rd_kafka_poll(rk, 100);
  }
  auto failures = m_state->failures;
  const auto last = m_state->get();
  if (!failures.empty() && !last.empty()) failures.push_back("last client error: " + last);
  return failures;
}

}  // namespace outbox::ctl
