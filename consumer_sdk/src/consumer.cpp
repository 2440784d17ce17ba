#include "outbox/consumer/consumer.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/consumer/offset_tracker.hpp"
#include "outbox/dedupe/postgres_inbox.hpp"

#include <librdkafka/rdkafka.h>
#include <pqxx/pqxx>

#include <algorithm>
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
    m_halted.set(0);  // no breaker can trip yet: it arrives with the dead-letter topic
  }
  ~consumer_metrics() { m_up.set(0); }
  consumer_metrics(const consumer_metrics&) = delete;
  consumer_metrics& operator=(const consumer_metrics&) = delete;

  enum outcome_index { processed, duplicate, retried, dead_lettered, k_outcomes };

  void count(const std::string& topic, outcome_index o) { of(topic).outcomes[o]->inc(); }
  void retry(const std::string& topic) {
    auto& t = of(topic);
    t.outcomes[retried]->inc();
    t.in_process_retries->inc();
  }
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
      : m_options(std::move(options)), m_handler(std::move(h)), m_tx_handler(std::move(th)) {
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
    s.commits = m_commits.load(std::memory_order_relaxed);
    return s;
  }

  bool assigned() const noexcept { return m_assigned_count.load(std::memory_order_relaxed) > 0; }

 private:
  enum class verdict { processed, duplicate, retry, fatal };
  /// An assigned partition as the hot path finds it.
  struct partition_ref {
    topic_partition tp;
    partition_offsets* offsets;
  };
  struct attempt_result {
    verdict kind;
    std::string reason;
  };
  /// A record whose handler asked to retry; its partition is paused until it is resolved.
  struct waiting {
    record rec;
    int attempts = 0;
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
    list_ptr topics = make_list(static_cast<int>(m_options.topics.size()));
    for (const auto& t : m_options.topics)
      rd_kafka_topic_partition_list_add(topics.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
    const rd_kafka_resp_err_t err = rd_kafka_subscribe(m_kafka.get(), topics.get());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw outbox_error("kafka", std::string("cannot subscribe to consumer.topics: ") + rd_kafka_err2str(err));
    }
    std::string names;
    for (const auto& t : m_options.topics) names += (names.empty() ? "" : ",") + t;
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
    const attempt_result res = attempt(m_record);
    if (res.kind == verdict::retry) {
      waiting w{m_record, 1, clock::now() + backoff(1), false};
      note_retry(w, res.reason);
      pause(ref->tp);
      m_waiting.insert_or_assign(ref->tp, std::move(w));
      return;
    }
    settle(m_record, res);
    ref->offsets->finished(m->offset);
  }

  /// The assigned partition a message belongs to, cached by topic handle and partition; nullptr if not assigned.
  const partition_ref* lookup(const rd_kafka_message_t* m) {
    const auto key = std::make_pair(static_cast<const rd_kafka_topic_t*>(m->rkt), m->partition);
    const auto it = m_refs.find(key);
    if (it != m_refs.end()) return &it->second;
    topic_partition tp{rd_kafka_topic_name(m->rkt), m->partition};
    partition_offsets* offsets = m_offsets.offsets(tp);
    if (offsets == nullptr) return nullptr;
    return &m_refs.emplace(key, partition_ref{std::move(tp), offsets}).first->second;
  }

  void run_due_retries() {
    for (auto it = m_waiting.begin(); it != m_waiting.end() && !m_stop.load(std::memory_order_relaxed);) {
      waiting& w = it->second;
      if (clock::now() < w.due) {
        ++it;
        continue;
      }
      if (!w.resolved) {
        attempt_result res = attempt(w.rec);
        if (res.kind == verdict::retry) {
          ++w.attempts;
          w.due = clock::now() + backoff(w.attempts);
          note_retry(w, res.reason);
          ++it;
          continue;
        }
        settle(w.rec, res);
        m_offsets.finished(it->first, w.rec.offset);
        w.resolved = true;
      }
      // Move the fetch position just past the record (later ones were dropped while paused), then resume.
      if (seek_and_resume(it->first, w.rec.offset + 1)) {
        it = m_waiting.erase(it);
      } else {
        w.due = clock::now() + milliseconds(k_poll_ms);
        ++it;
      }
    }
  }

  milliseconds backoff(int attempts) const {
    milliseconds d = std::max(m_options.retry_initial, milliseconds(1));
    for (int i = 1; i < attempts && d < m_options.retry_max; ++i) d *= 2;
    return std::min(d, m_options.retry_max);
  }

  void note_retry(const waiting& w, const std::string& reason) {
    m_retried.fetch_add(1, std::memory_order_relaxed);
    if (m_metrics) m_metrics->retry(w.rec.topic);
    const auto in = std::chrono::duration_cast<milliseconds>(w.due - clock::now()).count();
    log::warn(k_component, "handler asked to retry; later records of the partition wait",
              {{"topic", w.rec.topic},
               {"partition", w.rec.partition},
               {"offset", w.rec.offset},
               {"event_id", w.rec.event_id()},
               {"attempt", w.attempts},
               {"retry_in_ms", in},
               {"reason", reason}});
  }

  void settle(const record& r, const attempt_result& res) {
    switch (res.kind) {
      case verdict::processed:
        m_processed.fetch_add(1, std::memory_order_relaxed);
        if (m_metrics) m_metrics->count(r.topic, consumer_metrics::processed);
        break;
      case verdict::duplicate:
        m_duplicate.fetch_add(1, std::memory_order_relaxed);
        if (m_metrics) m_metrics->count(r.topic, consumer_metrics::duplicate);
        break;
      case verdict::fatal:
        m_fatal.fetch_add(1, std::memory_order_relaxed);
        // Counted as dead_lettered: the record is given up on. Until the DLQ topic exists it is only logged.
        if (m_metrics) m_metrics->count(r.topic, consumer_metrics::dead_lettered);
        log::error(k_component,
                   "giving up on a record: fatal outcome; no dead-letter topic yet, so it is logged, counted and "
                   "committed past",
                   {{"topic", r.topic},
                    {"partition", r.partition},
                    {"offset", r.offset},
                    {"event_id", r.event_id()},
                    {"reason", res.reason}});
        break;
      case verdict::retry:
        break;
    }
  }

  attempt_result attempt(const record& r) { return m_inbox ? attempt_in_transaction(r) : attempt_plain(r); }

  static attempt_result from_outcome(const outcome& o) {
    switch (o.kind) {
      case outcome_kind::done:
        return {verdict::processed, {}};
      case outcome_kind::retry:
        return {verdict::retry, o.reason};
      case outcome_kind::fatal:
        return {verdict::fatal, o.reason};
    }
    return {verdict::retry, o.reason};
  }

  attempt_result attempt_plain(const record& r) {
    dedupe::store* store = m_options.dedupe.get();
    const std::string_view id = r.event_id();
    if (store != nullptr) {
      if (id.empty()) return {verdict::fatal, "record has no event_id header, so it cannot be deduplicated"};
      try {
        const auto t0 = std::chrono::steady_clock::now();
        const auto claimed = store->claim(m_options.group_id, id);
        if (m_metrics) m_metrics->dedupe_time(seconds_since(t0));
        switch (claimed) {
          case dedupe::claim_result::claimed:
            break;
          case dedupe::claim_result::duplicate:
            return {verdict::duplicate, {}};
          case dedupe::claim_result::in_progress:
            return {verdict::retry, "another worker holds the claim on this event id (lease not expired)"};
        }
      } catch (const std::exception& e) {
        return {verdict::retry, std::string("dedupe store claim failed: ") + e.what()};
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
    if (id.empty()) return {verdict::fatal, "record has no event_id header, so the inbox cannot deduplicate it"};
    try {
      if (!m_db) m_db = std::make_unique<pqxx::connection>(m_options.inbox->dsn);
      pqxx::work tx(*m_db);
      const auto c0 = std::chrono::steady_clock::now();
      const bool claimed = m_inbox->claim_in(tx, m_options.group_id, id);
      if (m_metrics) m_metrics->dedupe_time(seconds_since(c0));
      if (!claimed) {
        tx.abort();
        return {verdict::duplicate, {}};
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
      return {verdict::retry, std::string("PostgreSQL connection lost: ") + e.what()};
    } catch (const pqxx::in_doubt_error& e) {
      m_db.reset();
      return {verdict::retry,
              std::string("commit in doubt (the next attempt finds the inbox row if it committed): ") + e.what()};
    } catch (const std::exception& e) {
      if (m_db && !m_db->is_open()) m_db.reset();
      return {verdict::retry, std::string("transaction failed: ") + e.what()};
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
      m_assigned_count.fetch_add(static_cast<int>(tps.size()), std::memory_order_relaxed);
      log::info(k_component, "partitions assigned", {{"partitions", describe(tps)}});
      return;
    }
    // Revoked or lost: work on these partitions stops here (this runs on the processing thread, between
    // records); what is finished is committed, unless the partitions are already someone else's.
    const bool lost = rd_kafka_assignment_lost(rk) != 0 || err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS;
    for (const auto& tp : tps) m_waiting.erase(tp);
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
              {{"processed", s.processed}, {"duplicate", s.duplicate}, {"retried", s.retried}, {"fatal", s.fatal}});
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

}  // namespace outbox::consumer
