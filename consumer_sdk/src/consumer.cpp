#include "outbox/consumer/consumer.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/base/text.hpp"
#include "outbox/config/units.hpp"
#include "outbox/consumer/offset_tracker.hpp"
#include "outbox/dedupe/postgres_inbox.hpp"

#include <librdkafka/rdkafka.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <charconv>
#include <deque>
#include <set>
#include <optional>
#include <random>
#include <system_error>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <unordered_map>
#include <string>
#include <string_view>
#include <utility>

namespace outbox::consumer {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view k_component = "consumer";
constexpr int k_poll_ms = 100;
constexpr int k_records_between_timers = 64;
constexpr milliseconds k_seek_timeout{5000};
constexpr milliseconds k_revoke_commit_timeout{10000};
constexpr milliseconds k_produce_timeout{10000};
constexpr milliseconds k_delivery_timeout{30000};
constexpr milliseconds k_parked_grace{30000};

struct kafka_deleter {
  void operator()(rd_kafka_t* k) const { rd_kafka_destroy_flags(k, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE); }
};
struct list_deleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const { rd_kafka_topic_partition_list_destroy(l); }
};
struct queue_deleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
struct event_deleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
struct message_deleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
struct error_deleter {
  void operator()(rd_kafka_error_t* e) const { rd_kafka_error_destroy(e); }
};
using kafka_ptr = std::unique_ptr<rd_kafka_t, kafka_deleter>;
using list_ptr = std::unique_ptr<rd_kafka_topic_partition_list_t, list_deleter>;
using queue_ptr = std::unique_ptr<rd_kafka_queue_t, queue_deleter>;
using event_ptr = std::unique_ptr<rd_kafka_event_t, event_deleter>;
using message_ptr = std::unique_ptr<rd_kafka_message_t, message_deleter>;
using error_ptr = std::unique_ptr<rd_kafka_error_t, error_deleter>;

list_ptr make_list(int size) { return list_ptr(rd_kafka_topic_partition_list_new(size)); }

std::vector<topic_partition> partitions_of(const rd_kafka_topic_partition_list_t* list) {
  std::vector<topic_partition> out;
  out.reserve(static_cast<std::size_t>(list->cnt));
  for (int i = 0; i < list->cnt; ++i) out.push_back({list->elems[i].topic, list->elems[i].partition});
  return out;
}

std::string describe(const std::vector<topic_partition>& tps) {
  std::string out;
  for (const auto& tp : tps) {
    if (!out.empty()) out += ",";
    out += tp.topic + "[" + std::to_string(tp.partition) + "]";
  }
  return out;
}

/// Copies a message into `r`, reusing the capacity of its strings (no allocation once warmed up).
void fill_record(rd_kafka_message_t* m, const std::string& topic, record& r) {
  r.topic.assign(topic);
  r.partition = m->partition;
  r.offset = m->offset;
  auto assign = [](std::optional<std::string>& field, const void* data, std::size_t size) {
    if (data == nullptr) {
      field.reset();
    } else {
      if (!field) field.emplace();
      field->assign(static_cast<const char*>(data), size);
    }
  };
  assign(r.key, m->key, m->key_len);
  assign(r.value, m->payload, m->len);
  rd_kafka_headers_t* headers = nullptr;
  std::size_t kept = 0;
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers != nullptr) {
    const std::size_t n = rd_kafka_header_cnt(headers);
    if (r.headers.size() < n) r.headers.resize(n);
    for (; kept < n; ++kept) {
      const char* name = nullptr;
      const void* value = nullptr;
      std::size_t size = 0;
      if (rd_kafka_header_get_all(headers, kept, &name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR) break;
      r.headers[kept].first.assign(name);
      if (value == nullptr) {
        r.headers[kept].second.clear();
      } else {
        r.headers[kept].second.assign(static_cast<const char*>(value), size);
      }
    }
  }
  r.headers.resize(kept);
  rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
  r.timestamp_ms = rd_kafka_message_timestamp(m, &type);
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::optional<std::int64_t> header_number(const record& r, std::string_view name) {
  const auto h = r.header(name);
  return h ? parse_int64(*h) : std::nullopt;
}

/// The record's headers without the SDK's own retry bookkeeping (`retry_*`).
std::vector<std::pair<std::string, std::string>> without_retry_headers(const record& r) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(r.headers.size() + 12);
  for (const auto& h : r.headers) {
    if (!std::string_view(h.first).starts_with("retry_")) out.push_back(h);
  }
  return out;
}

/// A dead-letter error message stays small: at most 1 KiB, cut on a UTF-8 character boundary.
std::string cut_message(std::string_view m) {
  constexpr std::size_t k_max = 1024;
  if (m.size() <= k_max) return std::string(m);
  std::size_t n = k_max;
  while (n > 0 && (static_cast<unsigned char>(m[n]) & 0xC0U) == 0x80U) --n;
  return std::string(m.substr(0, n));
}

/// Produces the SDK's own records (retry tiers, dead letters) and waits for each acknowledgement:
/// the original offset is committed only after Kafka has the copy. Idempotent, acks=all.
class side_producer {
 public:
  side_producer(const std::string& brokers, const std::vector<std::pair<std::string, std::string>>& properties) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    auto set = [&](const std::string& key, const std::string& value) {
      return rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) == RD_KAFKA_CONF_OK;
    };
    set("bootstrap.servers", brokers);
    for (const auto& [key, value] : properties) {
      // Consumer-only settings do not apply here; security and client settings do.
      static constexpr std::array<std::string_view, 8> k_consumer_only{
          "group.", "enable.auto", "auto.", "session.", "partition.assignment", "max.poll", "fetch.", "isolation."};
      if (std::any_of(k_consumer_only.begin(), k_consumer_only.end(),
                      [name = std::string_view(key)](std::string_view prefix) { return name.starts_with(prefix); })) {
        continue;
      }
      set(key, value);
    }
    set("client.id", "outbox-consumer-retry");
    set("enable.idempotence", "true");
    set("acks", "all");
    set("linger.ms", "0");
    // send() waits for the definitive delivery report, so this bounds how long a retry or dead-letter
    // copy can hold the processing thread.
    set("message.timeout.ms", std::to_string(k_delivery_timeout.count()));
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
      if (m->_private != nullptr) *static_cast<rd_kafka_resp_err_t*>(m->_private) = m->err;
    });
    rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t*, int level, const char* facility, const char* buf) {
      log::write(level <= 3   ? log::level::error
                 : level == 4 ? log::level::warn
                              : log::level::debug,
                 "kafka", buf, {{"facility", facility}});
    });
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (rk == nullptr) {
      rd_kafka_conf_destroy(conf);
      throw outbox_error("config", std::string("cannot create the retry/dead-letter producer: ") + err);
    }
    m_kafka.reset(rk);
  }

  /// Sends one record and waits for Kafka's definitive answer (bounded by message.timeout.ms); an error text
  /// on failure. Never gives up before librdkafka does: a copy abandoned while still queued could land later
  /// and be sent again, a duplicate dead letter.
  std::optional<std::string> send(const std::string& topic, const std::optional<std::string>& key,
                                  const std::optional<std::string>& value,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  milliseconds timeout) {
    rd_kafka_headers_t* hdrs = rd_kafka_headers_new(headers.size());
    for (const auto& [name, v] : headers) {
      rd_kafka_header_add(hdrs, name.data(), static_cast<ssize_t>(name.size()), v.data(),
                          static_cast<ssize_t>(v.size()));
    }
    auto result = std::make_unique<rd_kafka_resp_err_t>(RD_KAFKA_RESP_ERR__IN_PROGRESS);
    rd_kafka_vu_t vus[6];
    vus[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    vus[0].u.cstr = topic.c_str();
    vus[1].vtype = RD_KAFKA_VTYPE_KEY;
    vus[1].u.mem = {key ? const_cast<char*>(key->data()) : nullptr, key ? key->size() : 0};
    vus[2].vtype = RD_KAFKA_VTYPE_VALUE;
    vus[2].u.mem = {value ? const_cast<char*>(value->data()) : nullptr, value ? value->size() : 0};
    vus[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vus[3].u.i = RD_KAFKA_MSG_F_COPY;
    vus[4].vtype = RD_KAFKA_VTYPE_HEADERS;
    vus[4].u.headers = hdrs;
    vus[5].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vus[5].u.ptr = result.get();
    if (rd_kafka_error_t* e = rd_kafka_produceva(m_kafka.get(), vus, 6); e != nullptr) {
      std::string why = std::string("cannot produce to ") + topic + ": " + rd_kafka_error_string(e);
      rd_kafka_error_destroy(e);
      rd_kafka_headers_destroy(hdrs);  // not taken over on failure
      return why;
    }
    const auto deadline = clock::now() + std::max(timeout, k_delivery_timeout + milliseconds(5000));
    while (*result == RD_KAFKA_RESP_ERR__IN_PROGRESS && clock::now() < deadline) rd_kafka_poll(m_kafka.get(), 50);
    if (*result == RD_KAFKA_RESP_ERR__IN_PROGRESS) {
      // Still queued: the delivery report will write into `result` later, so it must outlive this call.
      m_abandoned.push_back(std::move(result));
      return "no delivery report from Kafka for " + topic + " in time";
    }
    if (*result != RD_KAFKA_RESP_ERR_NO_ERROR) return topic + ": " + rd_kafka_err2str(*result);
    return std::nullopt;
  }

  /// Creates the topics that do not exist yet (broker defaults for partitions and replication).
  void ensure_topics(const std::vector<std::string>& names, milliseconds timeout) {
    if (names.empty()) return;
    std::vector<rd_kafka_NewTopic_t*> topics;
    topics.reserve(names.size());
    char err[512];
    for (const auto& n : names) topics.push_back(rd_kafka_NewTopic_new(n.c_str(), -1, -1, err, sizeof err));
    queue_ptr q(rd_kafka_queue_new(m_kafka.get()));
    rd_kafka_AdminOptions_t* opts = rd_kafka_AdminOptions_new(m_kafka.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, static_cast<int>(timeout.count()), err, sizeof err);
    rd_kafka_CreateTopics(m_kafka.get(), topics.data(), topics.size(), opts, q.get());
    event_ptr ev(rd_kafka_queue_poll(q.get(), static_cast<int>(timeout.count()) + 1000));
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy_array(topics.data(), topics.size());
    if (!ev) {
      log::warn("consumer", "could not create the retry and dead-letter topics in time; create them by hand");
      return;
    }
    if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      log::warn("consumer", "could not create the retry and dead-letter topics",
                {{"error", rd_kafka_event_error_string(ev.get())}});
      return;
    }
    std::size_t n = 0;
    const rd_kafka_topic_result_t** results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev.get()), &n);
    for (std::size_t i = 0; i < n; ++i) {
      const rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
      if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        log::info("consumer", "created topic", {{"topic", rd_kafka_topic_result_name(results[i])}});
      } else if (e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        log::warn("consumer", "could not create topic",
                  {{"topic", rd_kafka_topic_result_name(results[i])}, {"error", rd_kafka_err2str(e)}});
      }
    }
  }

  ~side_producer() {
    if (m_kafka) rd_kafka_flush(m_kafka.get(), 5000);
  }
  side_producer(const side_producer&) = delete;
  side_producer& operator=(const side_producer&) = delete;

 private:
  struct producer_deleter {
    void operator()(rd_kafka_t* k) const { rd_kafka_destroy(k); }
  };
  std::unique_ptr<rd_kafka_t, producer_deleter> m_kafka;
  std::vector<std::unique_ptr<rd_kafka_resp_err_t>> m_abandoned;
};

/// The DLQ breaker: remembers which of the last `window` settled records were dead-lettered.
class dlq_breaker {
 public:
  dlq_breaker(double max_ratio, int window)
      : m_limit(max_ratio * window), m_ring(static_cast<std::size_t>(std::max(window, 1)), false) {}
  /// True when dead-lettering one more record would make more than max_ratio of the window dead letters.
  [[nodiscard]] bool would_trip() const noexcept {
    const std::size_t after = m_count - (m_ring[m_next] ? 1 : 0) + 1;
    return static_cast<double>(after) > m_limit;
  }
  void add(bool dead_lettered) noexcept {
    if (m_ring[m_next]) --m_count;
    m_ring[m_next] = dead_lettered;
    if (dead_lettered) ++m_count;
    m_next = (m_next + 1) % m_ring.size();
  }
  [[nodiscard]] std::size_t dead_letters() const noexcept { return m_count; }
  [[nodiscard]] std::size_t window() const noexcept { return m_ring.size(); }

 private:
  double m_limit;
  std::vector<bool> m_ring;
  std::size_t m_next = 0;
  std::size_t m_count = 0;
};

log::level from_syslog(int level) {
  // syslog levels: 0-3 error, 4 warning, 5-6 notice/info, 7 debug
  return level <= 3   ? log::level::error
         : level == 4 ? log::level::warn
         : level <= 6 ? log::level::info
                      : log::level::debug;
}

}  // namespace

/// outbox_consumer_* metrics; counters are cached per topic so the hot path takes no lock.
class consumer_metrics {
 public:
  explicit consumer_metrics(metrics::registry& reg)
      : m_messages(reg.add_counter("outbox_consumer_messages_total",
                                   "Records by outcome: processed, duplicate, retried (attempts), dead_lettered.",
                                   {"topic", "outcome"})),
        m_retries(
            reg.add_counter("outbox_consumer_retries_total", "Retry attempts per topic and tier.", {"topic", "tier"})),
        m_handler(reg.add_histogram("outbox_consumer_handler_seconds", "Time spent in the handler.", {"topic"},
                                    metrics::latency_buckets())),
        m_dedupe(reg.add_histogram("outbox_consumer_dedupe_seconds", "Time spent claiming an event id.", {},
                                   metrics::latency_buckets())
                     .get()),
        m_up(reg.add_gauge("outbox_consumer_up", "1 while the consumer runs.").get()),
        m_halted(reg.add_gauge("outbox_consumer_halted",
                               "1 when the DLQ breaker halted consumption (too many records dead-lettered).")
                     .get()) {
    m_up.set(1);
    m_halted.set(0);
  }
  ~consumer_metrics() { m_up.set(0); }
  consumer_metrics(const consumer_metrics&) = delete;
  consumer_metrics& operator=(const consumer_metrics&) = delete;

  enum outcome_index { processed, duplicate, retried, dead_lettered, k_outcomes };

  void count(const std::string& topic, outcome_index o) { of(topic).outcomes[o]->inc(); }
  /// An attempt that ended in retry.
  void retried_attempt(const std::string& topic) { of(topic).outcomes[retried]->inc(); }
  /// A retry scheduled: `tier` is `in_process` or the tier's delay (`10s`).
  void retry_in(const std::string& topic, const std::string& tier) {
    if (tier == "in_process") {
      of(topic).in_process_retries->inc();
    } else {
      m_retries.with({topic, tier}).inc();
    }
  }
  void halted(bool on) { m_halted.set(on ? 1 : 0); }
  void handler_time(const std::string& topic, double seconds) { of(topic).handler->observe(seconds); }
  void dedupe_time(double seconds) { m_dedupe.observe(seconds); }

 private:
  struct per_topic {
    std::array<metrics::counter*, k_outcomes> outcomes{};
    metrics::counter* in_process_retries = nullptr;
    metrics::histogram* handler = nullptr;
  };

  per_topic& of(const std::string& topic) {
    auto it = m_topics.find(topic);
    if (it != m_topics.end()) return it->second;
    per_topic t;
    static constexpr std::array<const char*, k_outcomes> names{"processed", "duplicate", "retried", "dead_lettered"};
    for (std::size_t i = 0; i < names.size(); ++i) t.outcomes[i] = &m_messages.with({topic, names[i]});
    t.in_process_retries = &m_retries.with({topic, "in_process"});
    t.handler = &m_handler.with({topic});
    return m_topics.emplace(topic, t).first->second;
  }

  metrics::family<metrics::counter>& m_messages;
  metrics::family<metrics::counter>& m_retries;
  metrics::family<metrics::histogram>& m_handler;
  metrics::histogram& m_dedupe;
  metrics::gauge& m_up;
  metrics::gauge& m_halted;
  std::unordered_map<std::string, per_topic> m_topics;  // processing thread only
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

class consumer::impl {
 public:
  impl(consumer_options options, handler h, transactional_handler th)
      : m_options(std::move(options)),
        m_handler(std::move(h)),
        m_tx_handler(std::move(th)),
        m_schedule(make_schedule(m_options.retry)),
        m_breaker(m_options.dlq_max_ratio, m_options.dlq_window) {
    if (m_options.dlq_window < 1 || !(m_options.dlq_max_ratio > 0 && m_options.dlq_max_ratio <= 1)) {
      throw outbox_error("config", "dlq.window must be at least 1 and dlq.max_ratio in (0, 1]");
    }
    if (m_options.dlq_topic.empty()) throw outbox_error("config", "dlq.topic is empty; name the dead-letter topic");
    m_per_key = m_options.per_key_ordering && !m_options.retry_topics.empty();
    for (const auto& t : m_options.topics) {
      if (!t.empty() && t.front() == '^') continue;  // a pattern: its retry tiers cannot be listed up front
      for (std::size_t i = 0; i < m_options.retry_topics.size(); ++i) {
        m_tier_of[retry_topic_name(t, m_options.retry_topics[i])] = {t, static_cast<int>(i)};
      }
    }
    if (m_options.group_id.empty()) throw outbox_error("config", "consumer.group_id is empty; set the consumer group");
    if (m_options.topics.empty()) throw outbox_error("config", "consumer.topics is empty; name at least one topic");
    if (!m_handler && !m_tx_handler)
      throw outbox_error("consumer", "the consumer needs a handler; it got an empty one");
    if (m_tx_handler) {
      if (!m_options.inbox) {
        throw outbox_error("config",
                           "a transactional handler needs the PostgreSQL inbox: set dedupe.store: postgres and "
                           "dedupe.dsn (or consumer_options::inbox)");
      }
      if (m_options.dedupe) {
        log::warn(k_component, "ignoring the dedupe store: the transactional handler dedupes with the inbox");
        m_options.dedupe.reset();
      }
      m_inbox = std::make_unique<dedupe::postgres_inbox>(
          m_options.inbox->dsn, dedupe::postgres_inbox::options{m_options.inbox->table, m_options.inbox->retention});
    }
    if (m_options.metrics != nullptr) m_metrics = std::make_unique<consumer_metrics>(*m_options.metrics);
    m_kafka = create_client();
    m_commit_queue.reset(rd_kafka_queue_new(m_kafka.get()));
  }

  ~impl() = default;
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  void run() {
    if (m_ran.exchange(true)) throw outbox_error("consumer", "consumer::run() may be called only once");
    subscribe();
    std::exception_ptr failure;
    try {
      loop();
    } catch (...) {
      failure = std::current_exception();
    }
    shutdown(clock::now() + m_options.stop_timeout);
    if (failure) std::rethrow_exception(failure);
  }

  void stop() noexcept { m_stop.store(true, std::memory_order_relaxed); }

  consumer_stats stats() const noexcept {
    consumer_stats s;
    s.processed = m_processed.load(std::memory_order_relaxed);
    s.duplicate = m_duplicate.load(std::memory_order_relaxed);
    s.retried = m_retried.load(std::memory_order_relaxed);
    s.fatal = m_fatal.load(std::memory_order_relaxed);
    s.dead_lettered = m_dead_lettered.load(std::memory_order_relaxed);
    s.parked = m_parked_count.load(std::memory_order_relaxed);
    s.commits = m_commits.load(std::memory_order_relaxed);
    return s;
  }

  bool assigned() const noexcept { return m_assigned_count.load(std::memory_order_relaxed) > 0; }
  bool halted() const noexcept { return m_halted.load(std::memory_order_relaxed); }

  static retry_schedule make_schedule(const retry_policy& p) {
    try {
      return retry_schedule(p);
    } catch (const std::invalid_argument& e) {
      throw outbox_error("config", std::string("retry: ") + e.what());
    }
  }

 private:
  enum class verdict { processed, duplicate, retry, fatal };
  /// An assigned partition as the hot path finds it.
  struct partition_ref {
    topic_partition tp;
    partition_offsets* offsets;
    int tier;                     ///< -1 for a subscribed topic, k for retry tier k
    const std::string* original;  ///< the original topic of a retry tier; null otherwise
  };
  struct attempt_result {
    verdict kind;
    std::string reason;
    std::string error_class;  ///< of a fatal outcome; empty means `fatal`
  };
  /// Where a record first arrived: a retry-tier copy carries it in `retry_original_*` headers.
  struct origin_info {
    std::string topic;
    std::int32_t partition = 0;
    std::int64_t offset = 0;
    std::int64_t timestamp_ms = -1;
    std::int64_t first_failure_ms = 0;  ///< 0 until an attempt failed
  };
  /// A record parked in a retry tier, for per-key ordering: its original position, and when to stop
  /// waiting for it.
  struct parked_entry {
    std::int32_t partition;
    std::int64_t offset;
    clock::time_point expires;
  };
  /// What to do with a record that is not simply done, once it is due.
  enum class next_step { attempt, move };
  /// A record that needs more than one step (retry, a tier, the DLQ); its partition is paused while it
  /// waits, so later records of the partition wait behind it.
  struct waiting {
    record rec;               ///< as the handler sees it: the original topic, partition and offset
    std::int64_t offset = 0;  ///< its own offset in the partition it was read from
    origin_info origin;
    int tier = -1;     ///< -1: read from the original topic; k: read from retry tier k
    int attempts = 0;  ///< handler attempts so far, all stages
    int in_process_failures = 0;
    next_step step = next_step::attempt;
    int target = 0;           ///< for move: the tier to produce to; tiers.size() is the dead-letter topic
    bool held = false;        ///< moved without an attempt: held behind an earlier record of its key
    std::string error_class;  ///< for a dead letter
    std::string reason;       ///< the last failure
    std::uint64_t seed = 0;   ///< jitter of this record's in-process backoff
    clock::time_point due;
    bool resolved = false;  ///< finished; the partition still has to be moved past it and resumed
  };

  kafka_ptr create_client() {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    auto set = [&](const std::string& key, const std::string& value, std::string_view origin) {
      char err[512];
      if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw outbox_error("config", std::string(origin) + key + ": " + err + "; fix or remove it");
      }
    };
    set("bootstrap.servers", m_options.brokers, "consumer.brokers ");
    set("group.id", m_options.group_id, "consumer.group_id ");
    set("auto.offset.reset", "earliest", "");  // a new group starts at the beginning: no callback is skipped
    set("client.id", "outbox-consumer", "");
    for (const auto& [key, value] : m_options.properties) {
      if ((key == "enable.auto.commit" || key == "enable.auto.offset.store") && value != "false") {
        log::warn(k_component, "ignoring a consumer property: the SDK commits offsets itself, after the outcome",
                  {{"property", key}, {"value", value}});
        continue;
      }
      set(key, value, "consumer.properties.");
    }
    set("enable.auto.commit", "false", "");
    set("enable.auto.offset.store", "false", "");
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_rebalance_cb(
        conf, [](rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts, void* opaque) {
          static_cast<impl*>(opaque)->on_rebalance(err, parts);
        });
    rd_kafka_conf_set_log_cb(conf, [](const rd_kafka_t*, int level, const char* facility, const char* buf) {
      log::write(from_syslog(level), "kafka", buf, {{"facility", facility}});
    });
    rd_kafka_conf_set_error_cb(conf, [](rd_kafka_t* rk, int err, const char* reason, void* opaque) {
      static_cast<impl*>(opaque)->on_error(rk, err, reason);
    });
    char err[512];
    rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (rk == nullptr) {
      rd_kafka_conf_destroy(conf);
      throw outbox_error("config", std::string("cannot create the Kafka consumer: ") + err);
    }
    rd_kafka_poll_set_consumer(rk);  // error and rebalance callbacks are served by rd_kafka_consumer_poll
    return kafka_ptr(rk);
  }

  void subscribe() {
    // Retry tiers and dead-letter topics exist before the first record needs them, so that the
    // subscription sees the tiers now rather than at the next metadata refresh.
    // Dead-letter topics are created when the first record needs one (see dead_letter()).
    std::vector<std::string> own_topics;
    for (const auto& [tier, origin] : m_tier_of) own_topics.push_back(tier);
    if (!own_topics.empty()) producer().ensure_topics(own_topics, k_produce_timeout);
    list_ptr topics = make_list(static_cast<int>(m_options.topics.size() + m_tier_of.size()));
    for (const auto& t : m_options.topics)
      rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
    for (const auto& [tier, origin] : m_tier_of)
      rd_kafka_topic_partition_list_add(topics.get(), tier.c_str(), RD_KAFKA_PARTITION_UA);
    const rd_kafka_resp_err_t err = rd_kafka_subscribe(m_kafka.get(), topics.get());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw outbox_error("kafka", std::string("cannot subscribe to consumer.topics: ") + rd_kafka_err2str(err));
    }
    std::string names;
    for (const auto& t : m_options.topics) names += (names.empty() ? "" : ",") + t;
    for (const auto& [tier, origin] : m_tier_of) names += "," + tier;
    log::info(k_component, "subscribed",
              {{"group", m_options.group_id},
               {"topics", names},
               {"brokers", m_options.brokers},
               {"dedupe", m_inbox            ? "postgres inbox"
                          : m_options.dedupe ? "store"
                                             : "none"}});
  }

  void loop() {
    auto next_commit = clock::now() + m_options.commit_interval;
    auto next_cleanup = clock::now() + m_options.cleanup_interval;
    int since_timers = 0;
    while (!m_stop.load(std::memory_order_relaxed)) {
      if (!m_kafka_fatal.empty()) throw outbox_error("kafka", "fatal Kafka consumer error: " + m_kafka_fatal);
      if (!m_waiting.empty()) run_due_retries();
      message_ptr msg(rd_kafka_consumer_poll(m_kafka.get(), poll_timeout_ms()));
      if (msg) handle(msg.get());
      // Timers are looked at when idle and every few records: reading the clock per record costs throughput.
      if (msg && ++since_timers < k_records_between_timers) continue;
      since_timers = 0;
      const auto now = clock::now();
      if (now >= next_commit) {
        commit(nullptr, std::nullopt);
        next_commit = now + m_options.commit_interval;
      }
      if (m_outstanding_commits > 0) drain_commit_results(0);
      if (now >= next_cleanup) {
        cleanup();
        next_cleanup = now + m_options.cleanup_interval;
      }
    }
  }

  int poll_timeout_ms() const {
    auto timeout = milliseconds(k_poll_ms);
    if (m_halted) return k_poll_ms;
    const auto now = clock::now();
    for (const auto& [tp, w] : m_waiting) {
      timeout = std::min(timeout, std::chrono::duration_cast<milliseconds>(std::max(w.due - now, clock::duration{})));
    }
    return static_cast<int>(timeout.count());
  }

  void handle(rd_kafka_message_t* m) {
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
      log::warn(k_component, "consumer error",
                {{"error", rd_kafka_message_errstr(m)}, {"code", rd_kafka_err2name(m->err)}});
      return;
    }
    const partition_ref* ref = lookup(m);
    if (ref == nullptr) return;  // not assigned any more
    // A record fetched before its partition was paused for a retry: it comes again after the seek.
    if (!m_waiting.empty() && m_waiting.contains(ref->tp)) return;
    // Already seen (a fetch that overlapped a seek): not processed twice.
    if (!ref->offsets->started(m->offset)) return;
    fill_record(m, ref->tp.topic, m_record);
    if (ref->tier >= 0) {
      from_tier(*ref, m->offset);
      return;
    }
    if (m_per_key && m_record.key && !m_parked.empty() && parked_queue(m_record.topic, *m_record.key) != nullptr) {
      // An earlier record of this key waits in a retry tier: this one queues behind it, unattempted.
      waiting w = make_waiting(m_record, m->offset);
      w.step = next_step::move;
      w.target = 0;
      w.held = true;
      continue_with(*ref, std::move(w));
      return;
    }
    const attempt_result res = attempt(m_record);
    if (res.kind == verdict::processed || res.kind == verdict::duplicate) {
      settle(m_record, res);
      ref->offsets->finished(m->offset);
      return;
    }
    waiting w = make_waiting(m_record, m->offset);
    w.attempts = 1;
    after_attempt(w, res);
    continue_with(*ref, std::move(w));
  }

  waiting make_waiting(const record& r, std::int64_t offset) {
    waiting w;
    w.rec = r;
    w.offset = offset;
    w.origin = origin_info{r.topic, r.partition, r.offset, r.timestamp_ms, 0};
    const std::string_view id = r.event_id();
    w.seed = jitter_seed(
        id.empty() ? r.topic + "/" + std::to_string(r.partition) + "/" + std::to_string(r.offset) : std::string(id),
        m_jitter_salt);
    w.due = clock::now();
    return w;
  }

  /// A record read from retry tier `ref.tier`: it runs when due (its partition paused until then).
  void from_tier(const partition_ref& ref, std::int64_t offset) {
    waiting w = make_waiting(m_record, offset);
    w.tier = ref.tier;
    w.origin.topic = std::string(m_record.header("retry_original_topic").value_or(*ref.original));
    w.origin.partition = static_cast<std::int32_t>(header_number(m_record, "retry_original_partition").value_or(-1));
    w.origin.offset = header_number(m_record, "retry_original_offset").value_or(-1);
    w.origin.timestamp_ms = header_number(m_record, "retry_original_timestamp_ms").value_or(m_record.timestamp_ms);
    w.origin.first_failure_ms = header_number(m_record, "retry_first_failure_ms").value_or(wall_ms());
    w.attempts = static_cast<int>(header_number(m_record, "retry_attempt").value_or(0));
    w.reason = std::string(m_record.header("retry_reason").value_or(""));
    w.rec.topic = w.origin.topic;  // the handler sees the record it subscribed to
    w.rec.partition = w.origin.partition;
    w.rec.offset = w.origin.offset;
    const std::int64_t due_ms = header_number(m_record, "retry_due_ms").value_or(0);
    w.due = clock::now() + milliseconds(std::max<std::int64_t>(0, due_ms - wall_ms()));
    w.step = next_step::attempt;
    continue_with(ref, std::move(w));
  }

  /// Drives `w` as far as it goes now; if it has to wait, its partition is paused until it is due.
  void continue_with(const partition_ref& ref, waiting w) {
    if (drive(w)) {
      ref.offsets->finished(w.offset);
      return;
    }
    pause(ref.tp);
    m_waiting.insert_or_assign(ref.tp, std::move(w));
  }

  /// Runs the due steps of `w`; true when it is finished (done, duplicate, parked in a tier, dead-lettered).
  bool drive(waiting& w) {
    while (!m_halted && clock::now() >= w.due) {
      if (w.step == next_step::attempt) {
        if (w.tier >= 0 && m_per_key && !first_of_key(w)) {
          // Not its turn: an earlier record of its key is still parked. Back into the same tier, unattempted.
          w.step = next_step::move;
          w.target = w.tier;
          w.held = true;
          continue;
        }
        const attempt_result res = attempt(w.rec);
        ++w.attempts;
        if (res.kind == verdict::processed || res.kind == verdict::duplicate) {
          settle(w.rec, res);
          release_key(w);
          return true;
        }
        after_attempt(w, res);
        continue;
      }
      if (move(w)) return true;
      if (!m_halted) w.due = clock::now() + milliseconds(1000);
    }
    return false;
  }

  /// Decides the next step after an attempt that ended in retry or fatal.
  void after_attempt(waiting& w, const attempt_result& res) {
    w.reason = res.reason;
    if (w.origin.first_failure_ms == 0) w.origin.first_failure_ms = wall_ms();
    w.held = false;
    if (res.kind == verdict::fatal) {
      w.step = next_step::move;
      w.target = static_cast<int>(m_options.retry_topics.size());
      w.error_class = res.error_class.empty() ? "fatal" : res.error_class;
      return;
    }
    m_retried.fetch_add(1, std::memory_order_relaxed);
    if (m_metrics) m_metrics->retried_attempt(w.origin.topic);
    if (w.tier < 0) {
      ++w.in_process_failures;
      const milliseconds elapsed(wall_ms() - w.origin.first_failure_ms);
      if (const auto delay = m_schedule.next_delay(w.in_process_failures, elapsed, w.seed)) {
        w.step = next_step::attempt;
        w.due = clock::now() + *delay;
        if (m_metrics) m_metrics->retry_in(w.origin.topic, "in_process");
        log::warn(k_component, "handler asked to retry; later records of the partition wait",
                  {{"topic", w.origin.topic},
                   {"partition", w.origin.partition},
                   {"offset", w.origin.offset},
                   {"event_id", w.rec.event_id()},
                   {"attempt", w.attempts},
                   {"retry_in_ms", static_cast<long long>(delay->count())},
                   {"reason", w.reason}});
        return;
      }
    }
    w.step = next_step::move;
    w.target = w.tier + 1;
    w.error_class = "retry_exhausted";
  }

  /// Produces `w` to its target (a retry tier or the dead-letter topic); true once Kafka acknowledged it.
  bool move(waiting& w) {
    const auto tiers = static_cast<int>(m_options.retry_topics.size());
    if (w.target < tiers) return park(w);
    return dead_letter(w);
  }

  bool park(waiting& w) {
    const milliseconds delay = m_options.retry_topics[static_cast<std::size_t>(w.target)];
    const std::string topic = retry_topic_name(w.origin.topic, delay);
    auto headers = without_retry_headers(w.rec);
    headers.emplace_back("retry_attempt", std::to_string(w.attempts));
    headers.emplace_back("retry_due_ms", std::to_string(wall_ms() + delay.count()));
    headers.emplace_back("retry_original_topic", w.origin.topic);
    headers.emplace_back("retry_original_partition", std::to_string(w.origin.partition));
    headers.emplace_back("retry_original_offset", std::to_string(w.origin.offset));
    headers.emplace_back("retry_original_timestamp_ms", std::to_string(w.origin.timestamp_ms));
    headers.emplace_back("retry_first_failure_ms",
                         std::to_string(w.origin.first_failure_ms > 0 ? w.origin.first_failure_ms : wall_ms()));
    if (!w.reason.empty()) headers.emplace_back("retry_reason", cut_message(w.reason));
    if (auto err = producer().send(topic, w.rec.key, w.rec.value, headers, k_produce_timeout)) {
      log::warn(k_component, "cannot park a record in its retry topic yet; trying again",
                {{"topic", topic}, {"offset", w.origin.offset}, {"error", *err}});
      return false;
    }
    m_parked_count.fetch_add(1, std::memory_order_relaxed);
    if (m_per_key && w.rec.key) {
      // The copy may land on a tier partition another instance owns; if nothing here resolves it by the
      // time it should have run, the entry lapses rather than holding the key forever.
      const auto expires = clock::now() + 2 * delay + k_parked_grace;
      auto& queue = m_parked[{w.origin.topic, *w.rec.key}];
      const auto it = std::find_if(queue.begin(), queue.end(), [&](const parked_entry& e) {
        return e.partition == w.origin.partition && e.offset == w.origin.offset;
      });
      if (it == queue.end()) {
        queue.push_back(parked_entry{w.origin.partition, w.origin.offset, expires});
      } else {
        it->expires = expires;
      }
    }
    if (w.held) {
      log::info(k_component, "record held behind an earlier record of its key",
                {{"topic", topic}, {"key", w.rec.key.value_or("")}, {"offset", w.origin.offset}});
    } else {
      if (m_metrics) m_metrics->retry_in(w.origin.topic, config::format_duration(delay));
      log::warn(k_component, "record parked in a retry topic",
                {{"topic", topic},
                 {"original_offset", w.origin.offset},
                 {"event_id", w.rec.event_id()},
                 {"attempts", w.attempts},
                 {"due_in_ms", static_cast<long long>(delay.count())},
                 {"reason", w.reason}});
    }
    return true;
  }

  bool dead_letter(waiting& w) {
    if (m_breaker.would_trip()) {
      halt(w);
      return false;
    }
    const std::string topic = dlq_topic_for(w.origin.topic);
    auto headers = without_retry_headers(w.rec);
    const std::int64_t now = wall_ms();
    headers.emplace_back("dlq_original_topic", w.origin.topic);
    headers.emplace_back("dlq_original_partition", std::to_string(w.origin.partition));
    headers.emplace_back("dlq_original_offset", std::to_string(w.origin.offset));
    headers.emplace_back("dlq_original_timestamp_ms", std::to_string(w.origin.timestamp_ms));
    headers.emplace_back("dlq_consumer_group", m_options.group_id);
    headers.emplace_back("dlq_error_class", w.error_class.empty() ? "fatal" : w.error_class);
    headers.emplace_back("dlq_error_message", cut_message(w.reason));
    headers.emplace_back("dlq_attempts", std::to_string(w.attempts));
    headers.emplace_back("dlq_first_failure_ms",
                         std::to_string(w.origin.first_failure_ms > 0 ? w.origin.first_failure_ms : now));
    headers.emplace_back("dlq_last_failure_ms", std::to_string(now));
    auto err = producer().send(topic, w.rec.key, w.rec.value, headers, k_produce_timeout);
    if (err && m_created_dlq.insert(topic).second) {
      // Perhaps the broker does not create topics on its own: create the dead-letter topic, then send again.
      producer().ensure_topics({topic}, k_produce_timeout);
      err = producer().send(topic, w.rec.key, w.rec.value, headers, k_produce_timeout);
    }
    if (err) {
      log::warn(k_component, "cannot dead-letter a record yet; trying again",
                {{"topic", topic}, {"offset", w.origin.offset}, {"error", *err}});
      return false;
    }
    m_breaker.add(true);
    m_dead_lettered.fetch_add(1, std::memory_order_relaxed);
    if (w.error_class != "retry_exhausted") m_fatal.fetch_add(1, std::memory_order_relaxed);
    if (m_metrics) m_metrics->count(w.origin.topic, consumer_metrics::dead_lettered);
    log::error(k_component, "giving up on a record: dead-lettered",
               {{"topic", w.origin.topic},
                {"partition", w.origin.partition},
                {"offset", w.origin.offset},
                {"event_id", w.rec.event_id()},
                {"dlq_topic", topic},
                {"error_class", w.error_class},
                {"attempts", w.attempts},
                {"reason", w.reason}});
    release_key(w);
    return true;
  }

  /// The breaker: stop taking records instead of dead-lettering everything after a bad deploy.
  void halt(const waiting& w) {
    if (m_halted.exchange(true, std::memory_order_relaxed)) return;
    if (m_metrics) m_metrics->halted(true);
    rd_kafka_topic_partition_list_t* assignment = nullptr;
    if (rd_kafka_assignment(m_kafka.get(), &assignment) == RD_KAFKA_RESP_ERR_NO_ERROR && assignment != nullptr) {
      list_ptr owned(assignment);
      rd_kafka_pause_partitions(m_kafka.get(), owned.get());
    }
    log::error(k_component,
               "DLQ breaker tripped: consumption halted instead of dead-lettering more; fix the cause, then restart",
               {{"dead_lettered_in_window", m_breaker.dead_letters()},
                {"window", m_breaker.window()},
                {"max_ratio", m_options.dlq_max_ratio},
                {"held_topic", w.origin.topic},
                {"held_offset", w.origin.offset},
                {"reason", w.reason}});
  }

  /// Per-key ordering: may `w` run now? Yes unless an earlier record of its key is still parked.
  bool first_of_key(const waiting& w) {
    if (!w.rec.key) return true;
    const auto* queue = parked_queue(w.origin.topic, *w.rec.key);
    if (queue == nullptr) return true;
    return queue->front().partition == w.origin.partition && queue->front().offset == w.origin.offset;
  }

  /// The parked records of a key, oldest first, after dropping lapsed ones; null when none is left.
  std::deque<parked_entry>* parked_queue(const std::string& topic, const std::string& key) {
    const auto it = m_parked.find({topic, key});
    if (it == m_parked.end()) return nullptr;
    auto& q = it->second;
    const auto now = clock::now();
    while (!q.empty() && q.front().expires < now) {
      log::warn(k_component,
                "per-key order no longer held for a key: its parked record was not seen again here in time "
                "(its retry partition may belong to another instance)",
                {{"topic", topic}, {"key", key}, {"original_offset", q.front().offset}});
      q.pop_front();
    }
    if (q.empty()) {
      m_parked.erase(it);
      return nullptr;
    }
    return &q;
  }

  void release_key(const waiting& w) {
    if (!w.rec.key || m_parked.empty()) return;
    const auto it = m_parked.find({w.origin.topic, *w.rec.key});
    if (it == m_parked.end()) return;
    auto& q = it->second;
    q.erase(std::remove_if(q.begin(), q.end(),
                           [&](const parked_entry& e) {
                             return e.partition == w.origin.partition && e.offset == w.origin.offset;
                           }),
            q.end());
    if (q.empty()) m_parked.erase(it);
  }

  side_producer& producer() {
    if (!m_producer) m_producer = std::make_unique<side_producer>(m_options.brokers, m_options.properties);
    return *m_producer;
  }

  std::string dlq_topic_for(const std::string& topic) const {
    std::string out = m_options.dlq_topic;
    for (auto at = out.find("{topic}"); at != std::string::npos; at = out.find("{topic}", at + topic.size())) {
      out.replace(at, 7, topic);
    }
    return out;
  }

  /// The assigned partition a message belongs to, cached by topic handle and partition; nullptr if not assigned.
  const partition_ref* lookup(const rd_kafka_message_t* m) {
    const auto key = std::make_pair(static_cast<const rd_kafka_topic_t*>(m->rkt), m->partition);
    const auto it = m_refs.find(key);
    if (it != m_refs.end()) return &it->second;
    topic_partition tp{rd_kafka_topic_name(m->rkt), m->partition};
    partition_offsets* offsets = m_offsets.offsets(tp);
    if (offsets == nullptr) return nullptr;
    int tier = -1;
    const std::string* original = nullptr;
    if (const auto t = m_tier_of.find(tp.topic); t != m_tier_of.end()) {
      tier = t->second.second;
      original = &t->second.first;
    }
    return &m_refs.emplace(key, partition_ref{std::move(tp), offsets, tier, original}).first->second;
  }

  void run_due_retries() {
    for (auto it = m_waiting.begin(); it != m_waiting.end() && !m_stop.load(std::memory_order_relaxed);) {
      waiting& w = it->second;
      if (!w.resolved) {
        if (!drive(w)) {
          ++it;
          continue;
        }
        m_offsets.finished(it->first, w.offset);
        w.resolved = true;
      }
      // Move the fetch position just past the record (later ones were dropped while paused), then resume.
      if (seek_and_resume(it->first, w.offset + 1)) {
        it = m_waiting.erase(it);
      } else {
        w.due = clock::now() + milliseconds(k_poll_ms);
        ++it;
      }
    }
  }

  /// Counts a record that is done: processed, or a duplicate of one already processed.
  void settle(const record& r, const attempt_result& res) {
    m_breaker.add(false);
    if (res.kind == verdict::processed) {
      m_processed.fetch_add(1, std::memory_order_relaxed);
      if (m_metrics) m_metrics->count(r.topic, consumer_metrics::processed);
    } else {
      m_duplicate.fetch_add(1, std::memory_order_relaxed);
      if (m_metrics) m_metrics->count(r.topic, consumer_metrics::duplicate);
    }
  }

  attempt_result attempt(const record& r) { return m_inbox ? attempt_in_transaction(r) : attempt_plain(r); }

  static attempt_result from_outcome(const outcome& o) {
    switch (o.kind) {
      case outcome_kind::done:
        return {verdict::processed, {}, {}};
      case outcome_kind::retry:
        return {verdict::retry, o.reason, {}};
      case outcome_kind::fatal:
        return {verdict::fatal, o.reason, o.error_class};
    }
    return {verdict::retry, o.reason, {}};
  }

  attempt_result attempt_plain(const record& r) {
    dedupe::store* store = m_options.dedupe.get();
    const std::string_view id = r.event_id();
    if (store != nullptr) {
      if (id.empty())
        return {verdict::fatal, "record has no event_id header, so it cannot be deduplicated", "missing_event_id"};
      try {
        const auto t0 = std::chrono::steady_clock::now();
        const auto claimed = store->claim(m_options.group_id, id);
        if (m_metrics) m_metrics->dedupe_time(seconds_since(t0));
        switch (claimed) {
          case dedupe::claim_result::claimed:
            break;
          case dedupe::claim_result::duplicate:
            return {verdict::duplicate, {}, {}};
          case dedupe::claim_result::in_progress:
            return {verdict::retry, "another worker holds the claim on this event id (lease not expired)", {}};
        }
      } catch (const std::exception& e) {
        return {verdict::retry, std::string("dedupe store claim failed: ") + e.what(), {}};
      }
    }
    outcome o;
    const auto t0 = std::chrono::steady_clock::now();
    try {
      o = m_handler(r);
    } catch (...) {
      o = outcome_from_exception(std::current_exception());
    }
    if (m_metrics) m_metrics->handler_time(r.topic, seconds_since(t0));
    if (store != nullptr) {
      try {
        // Only done events are remembered: a fatal one may be replayed once its cause is fixed.
        if (o.kind == outcome_kind::done) {
          store->complete(m_options.group_id, id);
        } else {
          store->release(m_options.group_id, id);
        }
      } catch (const std::exception& e) {
        // The effect is applied either way; a redelivery before the lease expires would be skipped or retried.
        log::warn(k_component, "dedupe store could not record the outcome",
                  {{"event_id", id}, {"outcome", to_string(o.kind)}, {"error", e.what()}});
      }
    }
    return from_outcome(o);
  }

  attempt_result attempt_in_transaction(const record& r) {
    const std::string_view id = r.event_id();
    if (id.empty())
      return {verdict::fatal, "record has no event_id header, so the inbox cannot deduplicate it", "missing_event_id"};
    try {
      if (!m_db) m_db = std::make_unique<pqxx::connection>(m_options.inbox->dsn);
      pqxx::work tx(*m_db);
      const auto c0 = std::chrono::steady_clock::now();
      const bool claimed = m_inbox->claim_in(tx, m_options.group_id, id);
      if (m_metrics) m_metrics->dedupe_time(seconds_since(c0));
      if (!claimed) {
        tx.abort();
        return {verdict::duplicate, {}, {}};
      }
      outcome o;
      const auto t0 = std::chrono::steady_clock::now();
      try {
        o = m_tx_handler(r, tx);
      } catch (...) {
        o = outcome_from_exception(std::current_exception());
      }
      if (m_metrics) m_metrics->handler_time(r.topic, seconds_since(t0));
      if (o.kind == outcome_kind::done) {
        tx.commit();  // inbox row and effect together; in doubt -> retry finds the row if it committed
      } else {
        tx.abort();
      }
      return from_outcome(o);
    } catch (const pqxx::broken_connection& e) {
      m_db.reset();
      return {verdict::retry, std::string("PostgreSQL connection lost: ") + e.what(), {}};
    } catch (const pqxx::in_doubt_error& e) {
      m_db.reset();
      return {verdict::retry,
              std::string("commit in doubt (the next attempt finds the inbox row if it committed): ") + e.what(),
              {}};
    } catch (const std::exception& e) {
      if (m_db && !m_db->is_open()) m_db.reset();
      return {verdict::retry, std::string("transaction failed: ") + e.what(), {}};
    }
  }

  void pause(const topic_partition& tp) {
    list_ptr list = make_list(1);
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
    rd_kafka_pause_partitions(m_kafka.get(), list.get());
  }

  bool seek_and_resume(const topic_partition& tp, std::int64_t offset) {
    list_ptr list = make_list(1);
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition)->offset = offset;
    error_ptr e(rd_kafka_seek_partitions(m_kafka.get(), list.get(), static_cast<int>(k_seek_timeout.count())));
    const rd_kafka_resp_err_t err = e ? rd_kafka_error_code(e.get()) : list->elems[0].err;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      log::warn(
          k_component, "cannot move past a retried record yet; trying again",
          {{"topic", tp.topic}, {"partition", tp.partition}, {"offset", offset}, {"error", rd_kafka_err2str(err)}});
      return false;
    }
    list->elems[0].offset = RD_KAFKA_OFFSET_INVALID;
    rd_kafka_resume_partitions(m_kafka.get(), list.get());
    return true;
  }

  /// Sends the finished positions (of `only`, or all); with `wait_until`, waits for the answers until then.
  void commit(const std::vector<topic_partition>* only, std::optional<clock::time_point> wait_until) {
    const auto positions = m_offsets.pending(only);
    if (!positions.empty()) {
      list_ptr list = make_list(static_cast<int>(positions.size()));
      for (const auto& p : positions) {
        rd_kafka_topic_partition_list_add(list.get(), p.where.topic.c_str(), p.where.partition)->offset = p.offset;
        m_offsets.commit_sent(p);
      }
      const rd_kafka_resp_err_t err =
          rd_kafka_commit_queue(m_kafka.get(), list.get(), m_commit_queue.get(), &ignore_commit_callback, nullptr);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (const auto& p : positions) m_offsets.commit_result(p, false);
        log::warn(k_component, "offset commit not sent; will try again", {{"error", rd_kafka_err2str(err)}});
      } else {
        ++m_outstanding_commits;
      }
    }
    if (!wait_until) return;
    while (m_outstanding_commits > 0) {
      const auto left = std::chrono::duration_cast<milliseconds>(*wait_until - clock::now());
      if (left <= milliseconds(0)) {
        log::warn(k_component,
                  "offset commit unanswered before the deadline; the records will be delivered again "
                  "and skipped as duplicates");
        return;
      }
      drain_commit_results(static_cast<int>(std::min<milliseconds::rep>(left.count(), k_poll_ms)));
    }
  }

  static void ignore_commit_callback(rd_kafka_t*, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t*, void*) {}

  void drain_commit_results(int timeout_ms) {
    while (m_outstanding_commits > 0) {
      event_ptr ev(rd_kafka_queue_poll(m_commit_queue.get(), timeout_ms));
      if (!ev) return;
      timeout_ms = 0;
      if (rd_kafka_event_type(ev.get()) != RD_KAFKA_EVENT_OFFSET_COMMIT) continue;
      --m_outstanding_commits;
      const rd_kafka_resp_err_t err = rd_kafka_event_error(ev.get());
      const rd_kafka_topic_partition_list_t* parts = rd_kafka_event_topic_partition_list(ev.get());
      if (parts == nullptr) continue;
      for (int i = 0; i < parts->cnt; ++i) {
        const auto& p = parts->elems[i];
        const bool ok = err == RD_KAFKA_RESP_ERR_NO_ERROR && p.err == RD_KAFKA_RESP_ERR_NO_ERROR;
        m_offsets.commit_result({{p.topic, p.partition}, p.offset}, ok);
        if (ok) {
          m_commits.fetch_add(1, std::memory_order_relaxed);
        } else {
          log::warn(k_component, "offset commit failed; will try again",
                    {{"topic", p.topic},
                     {"partition", p.partition},
                     {"offset", p.offset},
                     {"error", rd_kafka_err2str(err != RD_KAFKA_RESP_ERR_NO_ERROR ? err : p.err)}});
        }
      }
    }
  }

  void cleanup() {
    try {
      std::size_t removed = 0;
      if (m_inbox) removed = m_inbox->cleanup(m_options.cleanup_batch);
      if (m_options.dedupe) removed = m_options.dedupe->cleanup(m_options.cleanup_batch);
      if (removed > 0) log::debug(k_component, "dedupe retention cleanup", {{"removed", removed}});
    } catch (const std::exception& e) {
      log::warn(k_component, "dedupe retention cleanup failed; will try again", {{"error", e.what()}});
    }
  }

  void on_rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) {
    rd_kafka_t* rk = m_kafka.get();
    const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    const auto tps = partitions_of(parts);
    m_refs.clear();
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      for (const auto& tp : tps) {
        m_offsets.assign(tp);
        m_waiting.erase(tp);
      }
      if (cooperative) {
        error_ptr e(rd_kafka_incremental_assign(rk, parts));
        if (e)
          log::error(k_component, "cannot take the assigned partitions", {{"error", rd_kafka_error_string(e.get())}});
      } else {
        rd_kafka_assign(rk, parts);
      }
      if (m_halted) rd_kafka_pause_partitions(rk, parts);  // the breaker tripped: take nothing new either
      m_assigned_count.fetch_add(static_cast<int>(tps.size()), std::memory_order_relaxed);
      log::info(k_component, "partitions assigned", {{"partitions", describe(tps)}});
      return;
    }
    // Revoked or lost: work on these partitions stops here (this runs on the processing thread, between
    // records); what is finished is committed, unless the partitions are already someone else's.
    const bool lost = rd_kafka_assignment_lost(rk) != 0 || err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS;
    for (const auto& tp : tps) m_waiting.erase(tp);
    // Parked records of revoked tier partitions are someone else's now: per-key order starts over.
    if (std::any_of(tps.begin(), tps.end(), [&](const topic_partition& tp) { return m_tier_of.contains(tp.topic); }))
      m_parked.clear();
    if (!lost) commit(&tps, clock::now() + std::min(m_options.stop_timeout, k_revoke_commit_timeout));
    for (const auto& tp : tps) m_offsets.revoke(tp);
    if (cooperative) {
      m_assigned_count.fetch_sub(static_cast<int>(tps.size()), std::memory_order_relaxed);
    } else {
      m_assigned_count.store(0, std::memory_order_relaxed);
    }
    if (cooperative) {
      error_ptr e(rd_kafka_incremental_unassign(rk, parts));
    } else {
      rd_kafka_assign(rk, nullptr);
    }
    log::info(k_component, lost ? "partitions lost" : "partitions revoked", {{"partitions", describe(tps)}});
  }

  void on_error(rd_kafka_t* rk, int err, const char* reason) {
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      char text[512];
      rd_kafka_fatal_error(rk, text, sizeof text);
      m_kafka_fatal = text;
      return;
    }
    log::warn(k_component, "Kafka client error",
              {{"code", rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err))}, {"error", reason}});
  }

  void shutdown(clock::time_point deadline) {
    log::info(k_component, "stopping: committing finished offsets and leaving the group");
    commit(nullptr, deadline);
    m_waiting.clear();
    queue_ptr close_queue(rd_kafka_queue_new(m_kafka.get()));
    error_ptr e(rd_kafka_consumer_close_queue(m_kafka.get(), close_queue.get()));
    if (e) log::warn(k_component, "consumer close failed", {{"error", rd_kafka_error_string(e.get())}});
    while (!e && rd_kafka_consumer_closed(m_kafka.get()) == 0) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
      if (left <= milliseconds(0)) {
        log::warn(k_component,
                  "the consumer did not leave the group within stop_timeout; the group notices "
                  "after session.timeout.ms");
        break;
      }
      event_ptr ev(rd_kafka_queue_poll(close_queue.get(),
                                       static_cast<int>(std::min<milliseconds::rep>(left.count(), k_poll_ms))));
      if (ev && rd_kafka_event_type(ev.get()) == RD_KAFKA_EVENT_REBALANCE) {
        // Leaving: nothing runs any more and everything finished was committed above; just let go.
        if (std::strcmp(rd_kafka_rebalance_protocol(m_kafka.get()), "COOPERATIVE") == 0) {
          error_ptr ignored(
              rd_kafka_incremental_unassign(m_kafka.get(), rd_kafka_event_topic_partition_list(ev.get())));
        } else {
          rd_kafka_assign(m_kafka.get(), nullptr);
        }
      }
    }
    const consumer_stats s = stats();
    log::info(k_component, "stopped",
              {{"processed", s.processed},
               {"duplicate", s.duplicate},
               {"retried", s.retried},
               {"parked", s.parked},
               {"dead_lettered", s.dead_lettered}});
  }

  consumer_options m_options;
  handler m_handler;
  transactional_handler m_tx_handler;
  std::unique_ptr<dedupe::postgres_inbox> m_inbox;
  std::unique_ptr<pqxx::connection> m_db;
  kafka_ptr m_kafka;
  queue_ptr m_commit_queue;
  offset_tracker m_offsets;
  std::map<topic_partition, waiting> m_waiting;
  retry_schedule m_schedule;
  bool m_per_key = false;
  std::uint64_t m_jitter_salt = std::random_device{}();
  std::map<std::string, std::pair<std::string, int>> m_tier_of;  // retry tier topic -> (original topic, tier)
  /// Per-key ordering: (original topic, key) -> original (partition, offset) of its parked records, oldest first.
  std::map<std::pair<std::string, std::string>, std::deque<parked_entry>> m_parked;
  std::unique_ptr<side_producer> m_producer;  // created on the first retry-tier or dead-letter record
  std::set<std::string> m_created_dlq;        // dead-letter topics this consumer tried to create
  dlq_breaker m_breaker;
  std::atomic<bool> m_halted{false};  // set by the DLQ breaker; read by other threads (readiness)
  std::atomic<std::uint64_t> m_dead_lettered{0};
  std::atomic<std::uint64_t> m_parked_count{0};
  std::map<std::pair<const rd_kafka_topic_t*, std::int32_t>, partition_ref> m_refs;  // cleared on every rebalance
  record m_record;                                                                   // reused for every first attempt
  int m_outstanding_commits = 0;
  std::string m_kafka_fatal;
  std::atomic<bool> m_ran{false};
  std::atomic<bool> m_stop{false};
  std::unique_ptr<consumer_metrics> m_metrics;  // null without consumer_options::metrics
  std::atomic<int> m_assigned_count{0};         // read by other threads (readiness)
  std::atomic<std::uint64_t> m_processed{0};
  std::atomic<std::uint64_t> m_duplicate{0};
  std::atomic<std::uint64_t> m_retried{0};
  std::atomic<std::uint64_t> m_fatal{0};
  std::atomic<std::uint64_t> m_commits{0};
};

consumer::consumer(consumer_options options, handler h)
    : m_impl(std::make_unique<impl>(std::move(options), std::move(h), transactional_handler{})) {}

consumer::consumer(consumer_options options, transactional_handler h)
    : m_impl(std::make_unique<impl>(std::move(options), handler{}, std::move(h))) {}

consumer::~consumer() = default;

void consumer::run() { m_impl->run(); }

void consumer::stop() noexcept { m_impl->stop(); }

consumer_stats consumer::stats() const noexcept { return m_impl->stats(); }
bool consumer::assigned() const noexcept { return m_impl->assigned(); }
bool consumer::halted() const noexcept { return m_impl->halted(); }

retry_policy default_retry_policy() {
  retry_policy p;
  p.kind = schedule_kind::exponential;
  p.initial = milliseconds(200);
  p.max = std::chrono::seconds(30);
  p.max_attempts = 5;
  return p;
}

std::string retry_topic_name(const std::string& topic, std::chrono::milliseconds delay) {
  return topic + ".retry." + config::format_duration(delay);
}

}  // namespace outbox::consumer
