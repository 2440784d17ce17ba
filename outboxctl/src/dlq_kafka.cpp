#include "dlq_kafka.hpp"

#include <librdkafka/rdkafka.h>

#include <deque>
#include <mutex>
#include <random>

namespace outbox::ctl {
namespace {

using clock = std::chrono::steady_clock;

/// How long a partition read may go without progress before the command gives up.
constexpr std::chrono::seconds k_stall_timeout{30};

struct kafka_deleter {
  void operator()(rd_kafka_t* k) const { rd_kafka_destroy(k); }
};
using kafka_ptr = std::unique_ptr<rd_kafka_t, kafka_deleter>;

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

/// librdkafka's own log lines would repeat what our messages say; the error callback keeps the gist.
void on_log(const rd_kafka_t* /*rk*/, int /*level*/, const char* /*fac*/, const char* /*buf*/) {}

void set(rd_kafka_conf_t* conf, const char* key, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, key, value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw kafka_failure(std::string("librdkafka setting ") + key + "=" + value + ": " + err);
  }
}

kafka_ptr make_client(rd_kafka_type_t type, rd_kafka_conf_t* conf, error_sink* sink) {
  rd_kafka_conf_set_opaque(conf, sink);
  rd_kafka_conf_set_error_cb(conf, on_error);
  rd_kafka_conf_set_log_cb(conf, on_log);
  char err[512];
  rd_kafka_t* k = rd_kafka_new(type, conf, err, sizeof err);
  if (k == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw kafka_failure(std::string("cannot create a Kafka client: ") + err);
  }
  return kafka_ptr(k);
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
  rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
  r.timestamp_ms = rd_kafka_message_timestamp(m, &type);
  if (m->key != nullptr) r.key.emplace(static_cast<const char*>(m->key), m->key_len);
  if (m->payload != nullptr) r.value.emplace(static_cast<const char*>(m->payload), m->len);
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name = nullptr;
    const void* val = nullptr;
    size_t size = 0;
    for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
      header h{name, std::nullopt};
      if (val != nullptr) h.value.emplace(static_cast<const char*>(val), size);
      r.headers.push_back(std::move(h));
    }
  }
  return r;
}

}  // namespace

struct topic_reader::state : error_sink {
  kafka_ptr consumer;
};

topic_reader::topic_reader(const std::string& brokers, std::string topic)
    : m_state(std::make_unique<state>()), m_brokers(brokers), m_topic(std::move(topic)) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", brokers);
  // assign() with explicit offsets needs no group; the id only satisfies the consumer and is never used.
  set(conf, "group.id", "outboxctl-" + std::to_string(std::random_device{}()));
  set(conf, "enable.auto.commit", "false");
  set(conf, "enable.auto.offset.store", "false");
  set(conf, "enable.partition.eof", "true");
  set(conf, "auto.offset.reset", "earliest");
  set(conf, "allow.auto.create.topics", "false");
  set(conf, "socket.timeout.ms", "10000");
  m_state->consumer = make_client(RD_KAFKA_CONSUMER, conf, m_state.get());

  const auto count = partition_count(m_topic);
  if (!count) throw kafka_failure("topic " + m_topic + " does not exist on " + brokers);
  for (int p = 0; p < *count; ++p) m_partitions.push_back(p);
}

topic_reader::~topic_reader() = default;

std::optional<int> topic_reader::partition_count(const std::string& topic) {
  rd_kafka_t* rk = m_state->consumer.get();
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  const auto err = rd_kafka_metadata(rk, 0, t, &md, static_cast<int>(k_request_timeout.count()));
  rd_kafka_topic_destroy(t);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw kafka_failure("Kafka at " + m_brokers + " gave no metadata for topic " + topic + " within " +
                        std::to_string(k_request_timeout.count() / 1000) + " s: " + describe(err, *m_state) +
                        "; check --brokers and that Kafka is reachable");
  }
  std::optional<int> count;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& tm = md->topics[i];
    if (topic != tm.topic) continue;
    if (tm.err == RD_KAFKA_RESP_ERR_NO_ERROR && tm.partition_cnt > 0) {
      count = tm.partition_cnt;
    } else if (tm.err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && tm.err != RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC &&
               tm.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const std::string why = rd_kafka_err2str(tm.err);
      rd_kafka_metadata_destroy(md);
      throw kafka_failure("metadata for topic " + topic + ": " + why);
    }
  }
  rd_kafka_metadata_destroy(md);
  return count;
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

    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, m_topic.c_str(), p)->offset = low;
    const auto aerr = rd_kafka_assign(rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw kafka_failure("cannot read " + m_topic + " partition " + std::to_string(p) + ": " + rd_kafka_err2str(aerr));
    }
    bool keep_going = true;
    auto last_progress = clock::now();
    std::string last_error;
    while (keep_going) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
      if (m == nullptr) {
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
        last_error = rd_kafka_message_errstr(m);
      } else if (ours) {
        last_progress = clock::now();
        if (m->offset >= high) {
          keep_going = false;
        } else {
          const bool more = visit(copy_out(m));
          keep_going = more && m->offset + 1 < high;
          if (!more) {
            rd_kafka_message_destroy(m);
            rd_kafka_assign(rk, nullptr);
            return total;
          }
        }
      }
      rd_kafka_message_destroy(m);
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
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, m_topic.c_str(), partition)->offset = offset;
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  std::optional<dlq_record> found;
  const auto deadline = clock::now() + k_stall_timeout;
  bool done = false;
  while (!done && clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (m == nullptr) continue;
    if (m->partition == partition) {
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        done = true;
      } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (m->offset == offset) found = copy_out(m);
        done = m->offset >= offset;
      }
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_assign(rk, nullptr);
  if (!done) {
    throw kafka_failure("no answer reading " + m_topic + " partition " + std::to_string(partition) + " offset " +
                        std::to_string(offset) + " within " + std::to_string(k_stall_timeout.count()) + " s");
  }
  return found;
}

struct replay_producer::state : error_sink {
  kafka_ptr producer;
  std::deque<std::string> labels;  ///< one per record sent; a deque keeps their addresses stable
  std::vector<std::string> failures;
  std::size_t outstanding = 0;
};

replay_producer::replay_producer(const std::string& brokers) : m_state(std::make_unique<state>()) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", brokers);
  set(conf, "enable.idempotence", "true");
  set(conf, "acks", "all");
  // The relay's partitioner, so a key replayed with --to lands where the relay would have put it.
  set(conf, "partitioner", "murmur2_random");
  set(conf, "linger.ms", "5");
  set(conf, "message.timeout.ms", "60000");
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t* /*rk*/, const rd_kafka_message_t* m, void* opaque) {
    auto* s = static_cast<state*>(static_cast<error_sink*>(opaque));
    const auto* what = static_cast<const std::string*>(m->_private);
    --s->outstanding;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      s->failures.push_back(*what + ": " + rd_kafka_err2str(m->err));
    }
  });
  m_state->producer = make_client(RD_KAFKA_PRODUCER, conf, m_state.get());
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
  rd_kafka_headers_t* hdrs = rd_kafka_headers_new(headers.size());
  for (const auto& h : headers) {
    rd_kafka_header_add(hdrs, h.name.c_str(), -1, h.value ? h.value->data() : nullptr,
                        h.value ? static_cast<ssize_t>(h.value->size()) : 0);
  }
  rd_kafka_vu_t vu[7];
  vu[0].vtype = RD_KAFKA_VTYPE_TOPIC;
  vu[0].u.cstr = topic.c_str();
  vu[1].vtype = RD_KAFKA_VTYPE_PARTITION;
  vu[1].u.i32 = partition.value_or(RD_KAFKA_PARTITION_UA);
  vu[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  vu[2].u.i = RD_KAFKA_MSG_F_COPY;
  vu[3].vtype = RD_KAFKA_VTYPE_KEY;
  vu[3].u.mem.ptr = r.key ? const_cast<char*>(r.key->data()) : nullptr;
  vu[3].u.mem.size = r.key ? r.key->size() : 0;
  vu[4].vtype = RD_KAFKA_VTYPE_VALUE;
  vu[4].u.mem.ptr = r.value ? const_cast<char*>(r.value->data()) : nullptr;
  vu[4].u.mem.size = r.value ? r.value->size() : 0;
  vu[5].vtype = RD_KAFKA_VTYPE_HEADERS;
  vu[5].u.headers = hdrs;
  vu[6].vtype = RD_KAFKA_VTYPE_OPAQUE;
  vu[6].u.ptr = const_cast<std::string*>(&what);
  for (;;) {
    rd_kafka_error_t* error = rd_kafka_produceva(rk, vu, 7);
    if (error == nullptr) {
      ++m_state->outstanding;
      break;
    }
    const auto code = rd_kafka_error_code(error);
    const std::string why = rd_kafka_error_string(error);
    rd_kafka_error_destroy(error);
    if (code == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 100);
      continue;
    }
    rd_kafka_headers_destroy(hdrs);
    m_state->failures.push_back(what + ": " + why);
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
