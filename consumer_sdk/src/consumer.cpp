#include "outbox/consumer/consumer.hpp"

#include "attempt.hpp"
#include "consumer_metrics.hpp"
#include "dlq_breaker.hpp"
#include "key_order.hpp"
#include "offset_commits.hpp"
#include "options_check.hpp"
#include "record_copy.hpp"
#include "retry_flow.hpp"
#include "side_producer.hpp"
#include "topic_plan.hpp"
#include "topic_setup.hpp"
#include "worker_pool.hpp"
#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/base/record_format.hpp"
#include "outbox/consumer/offset_tracker.hpp"
#include "outbox/kafka/admin.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/kafka/handles.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

namespace outbox::consumer {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using namespace detail;
namespace rf = record_format;

constexpr std::string_view k_component = "consumer";
constexpr int k_poll_ms = 100;
constexpr milliseconds k_seek_timeout{5000};
constexpr milliseconds k_revoke_commit_timeout{10000};
constexpr milliseconds k_admin_timeout{15000};
constexpr milliseconds k_cleanup_budget{200};
constexpr milliseconds k_gauges_every{1000};
/// With consumer.workers: a partition with this many records started and not finished is paused until half of
/// them are finished.
constexpr std::size_t k_max_in_flight = 1000;

/// Serializes the lanes' copies through the one side producer (copies are the exception, not the hot path).
class locked_sink final : public copy_sink {
 public:
  explicit locked_sink(copy_sink& inner) : m_inner(inner) {}
  send_result send(const std::string& topic, const record& r, const record_format::header_pairs& extra) override {
    std::lock_guard lock(m_mutex);
    return m_inner.send(topic, r, extra);
  }

 private:
  copy_sink& m_inner;
  std::mutex m_mutex;
};

}  // namespace

class consumer::impl {
 public:
  impl(consumer_options options, handler h, transactional_handler th)
      : m_options(std::move(options)),
        m_metrics(m_options.metrics),
        m_breaker(checked_breaker(m_options)),
        m_plan(checked_group(m_options), m_options.topics, m_options.retry_topics, m_options.dlq_topic),
        m_commits(m_offsets, m_metrics) {
    if (!h && !th) throw outbox_error("consumer", "the consumer needs a handler; it got an empty one");
    if (m_options.on_dead_letter && !th) {
      throw outbox_error("config",
                         "consumer_options::on_dead_letter runs in the inbox transaction: it needs a "
                         "transactional_handler and the PostgreSQL inbox (dedupe.store: postgres)");
    }
    const handler lane_handler = h;
    const transactional_handler lane_tx_handler = th;
    if (th) {
      if (!m_options.inbox) {
        throw outbox_error("config",
                           "a transactional handler needs the PostgreSQL inbox: set dedupe.store: postgres and "
                           "dedupe.dsn (or consumer_options::inbox)");
      }
      if (m_options.dedupe) {
        log::warn(k_component, "ignoring the dedupe store: the transactional handler dedupes with the inbox");
        m_options.dedupe.reset();
      }
      m_attempts = std::make_unique<attempt_runner>(m_options.group_id, std::move(th), *m_options.inbox, m_metrics,
                                                    m_options.dedupe_key, m_options.classify, m_options.on_dead_letter);
    } else {
      m_attempts = std::make_unique<attempt_runner>(m_options.group_id, std::move(h), m_options.dedupe.get(), m_metrics,
                                                    m_options.dedupe_key, m_options.classify);
    }
    retry_schedule schedule = checked_schedule(m_options.retry);
    const retry_schedule schedule_copy = schedule;
    check_retention(m_options, schedule, m_attempts->dedupes() ? m_attempts->retention() : milliseconds(0));
    if (m_options.per_key_ordering && !m_options.retry_topics.empty()) {
      if (!m_options.holds) {
        milliseconds lapse = m_options.retry_topic_retention;
        for (const auto d : m_options.retry_topics) lapse = std::max(lapse, tier_retention(lapse, d));
        m_options.holds = dedupe::make_memory_key_holds(lapse);
        if (m_attempts->dedupes()) {
          log::warn(k_component,
                    "per-key holds are kept in memory only: a restart or rebalance forgets them; "
                    "from_config() keeps them with the dedupe store");
        }
      }
      m_order = std::make_unique<key_order>(*m_options.holds, m_options.group_id);
    }
    m_producer = std::make_unique<side_producer>(m_options.brokers, m_options.properties);
    m_flow = std::make_unique<retry_flow>(flow_settings{m_options.group_id, m_options.retry_topics, m_options.dlq_topic,
                                                        m_order != nullptr, m_options.probe_interval},
                                          std::move(schedule), std::random_device{}(), *m_attempts, m_order.get(),
                                          *m_producer, m_breaker, m_metrics);
    m_setup = std::make_unique<topic_setup>(
        m_producer->handle(), m_plan,
        setup_settings{m_options.prepare_topics, m_options.topic_replication_factor, m_options.retry_topic_retention,
                       m_options.dlq_retention, m_options.check_retention, m_attempts->retention(),
                       m_options.replay_window});
    if (m_options.workers > 1) start_workers(lane_handler, lane_tx_handler, schedule_copy);
    m_batching = m_options.inbox && lane_tx_handler && m_options.inbox->batch > 1;
    m_kafka = create_client();
    m_commits.attach(m_kafka.get());
  }

  ~impl() = default;
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  void run() {
    if (m_ran.exchange(true)) throw outbox_error("consumer", "consumer::run() may be called only once");
    std::exception_ptr failure;
    try {
      if (prepare_topics()) loop();
    } catch (...) {
      failure = std::current_exception();
    }
    shutdown(clock::now() + m_options.stop_timeout);
    if (failure) std::rethrow_exception(failure);
  }

  void stop() noexcept { m_stop.store(true, std::memory_order_relaxed); }
  consumer_stats stats() const noexcept { return m_metrics.stats(); }
  bool assigned() const noexcept { return m_assigned_count.load(std::memory_order_relaxed) > 0; }
  bool halted() const noexcept { return m_halted.load(std::memory_order_relaxed); }
  std::string halt_reason() const {
    std::lock_guard lock(m_halt_mutex);
    return m_halt_reason;
  }

 private:
  /// An assigned partition as the hot path finds it.
  struct partition_ref {
    topic_partition tp;
    partition_offsets* offsets;
    topic_entry role;
  };
  /// A record its partition waits for; `counted` once its offset is marked finished.
  struct waiting {
    pending_record p;
    bool counted = false;
  };

  /// consumer.workers: a lane per worker, each with its own attempt runner and retry flow.
  void start_workers(const handler& h, const transactional_handler& th, const retry_schedule& schedule) {
    m_lane_sink = std::make_unique<locked_sink>(*m_producer);
    std::random_device seeds;
    m_pool = std::make_unique<worker_pool>(static_cast<std::size_t>(m_options.workers), [&](std::size_t) {
      lane_engine e;
      if (th) {
        e.attempts =
            std::make_unique<attempt_runner>(m_options.group_id, th, *m_options.inbox, m_metrics, m_options.dedupe_key,
                                             m_options.classify, m_options.on_dead_letter);
      } else {
        e.attempts = std::make_unique<attempt_runner>(m_options.group_id, h, m_options.dedupe.get(), m_metrics,
                                                      m_options.dedupe_key, m_options.classify);
      }
      e.flow = std::make_unique<retry_flow>(
          flow_settings{m_options.group_id, m_options.retry_topics, m_options.dlq_topic, m_order != nullptr,
                        m_options.probe_interval},
          schedule, seeds(), *e.attempts, m_order.get(), *m_lane_sink, m_breaker, m_metrics);
      return e;
    });
    log::info(k_component, "handlers run on workers, records of one key in order", {{"workers", m_options.workers}});
  }

  kafka::consumer_ptr create_client() {
    kafka::conf_builder conf;
    conf.set("bootstrap.servers", m_options.brokers, "consumer.brokers ")
        .set("group.id", m_options.group_id, "consumer.group_id ")
        .set("auto.offset.reset", "earliest")  // a new group starts at the beginning: no callback is skipped
        .set("client.id", "outbox-consumer")
        // Cooperative rebalances move only the partitions that change owner; the others keep flowing.
        .set("partition.assignment.strategy", "cooperative-sticky");
    conf.set_all(m_options.properties, "consumer.properties.", [](std::string_view key) {
      if (key != "enable.auto.commit" && key != "enable.auto.offset.store") return true;
      log::warn(k_component, "ignoring a consumer property: the SDK commits offsets itself, after the outcome",
                {{"property", key}});
      return false;
    });
    conf.set("enable.auto.commit", "false").set("enable.auto.offset.store", "false").log_lines();
    rd_kafka_conf_set_opaque(conf.get(), this);
    rd_kafka_conf_set_rebalance_cb(
        conf.get(), [](rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts, void* opaque) {
          static_cast<impl*>(opaque)->on_rebalance(err, parts);
        });
    rd_kafka_conf_set_error_cb(conf.get(), [](rd_kafka_t* rk, int err, const char* reason, void* opaque) {
      static_cast<impl*>(opaque)->on_error(rk, err, reason);
    });
    kafka::client_ptr rk = conf.create(RD_KAFKA_CONSUMER, "the Kafka consumer");
    rd_kafka_poll_set_consumer(rk.get());  // error and rebalance callbacks are served by rd_kafka_consumer_poll
    return kafka::consumer_ptr(rk.release());
  }

  /// Resolves patterns and prepares the derived topics, waiting while Kafka does not answer; false on stop().
  bool prepare_topics() {
    for (int tries = 1; !m_stop.load(std::memory_order_relaxed); ++tries) {
      try {
        refresh_topics();
        return true;
      } catch (const outbox_error& e) {
        if (e.value().category == "config" || e.value().retry == retry_class::fatal) throw;
        if (tries == 1 || tries % 30 == 0) {
          log::warn(k_component, "Kafka does not answer yet; trying again", {{"error", e.what()}, {"tries", tries}});
        }
      }
      for (int i = 0; i < 10 && !m_stop.load(std::memory_order_relaxed); ++i) {
        std::this_thread::sleep_for(milliseconds(k_poll_ms));  // back off between start-up tries, stoppable
      }
    }
    return false;
  }

  /// Lists the cluster's topics, matches the patterns, prepares new sources, and subscribes when that changed.
  void refresh_topics() {
    const auto cluster = kafka::list_topics(m_producer->handle(), k_admin_timeout);
    std::vector<std::string> names;
    names.reserve(cluster.size());
    for (const auto& t : cluster) names.push_back(t.name);
    m_plan.resolve(names);
    m_setup->prepare(cluster);
    const auto topics = m_plan.subscription(m_setup->ready());
    if (topics == m_subscribed) return;
    kafka::partition_list_ptr list = kafka::make_partition_list(static_cast<int>(topics.size()));
    std::string joined;
    for (const auto& t : topics) {
      rd_kafka_topic_partition_list_add(list.get(), t.c_str(), RD_KAFKA_PARTITION_UA);
      joined += (joined.empty() ? "" : ",") + t;
    }
    if (const auto err = rd_kafka_subscribe(m_kafka.get(), list.get()); err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw outbox_error("kafka", std::string("cannot subscribe to consumer.topics: ") + rd_kafka_err2str(err));
    }
    m_subscribed = topics;
    log::info(k_component, "subscribed",
              {{"group", m_options.group_id},
               {"topics", joined},
               {"brokers", m_options.brokers},
               {"dedupe", m_options.inbox    ? "postgres inbox"
                          : m_options.dedupe ? "store"
                                             : "none"}});
  }

  void loop() {
    auto now = clock::now();
    auto next_commit = now + m_options.commit_interval;
    auto next_cleanup = now + m_options.cleanup_interval;
    auto next_refresh = now + m_options.pattern_refresh;
    auto next_gauges = now;
    while (!m_stop.load(std::memory_order_relaxed)) {
      if (!m_kafka_fatal.empty()) throw outbox_error("kafka", "fatal Kafka consumer error: " + m_kafka_fatal);
      if (!m_waiting.empty()) run_due();
      if (m_pool) {
        if (const auto failed = m_pool->failure()) std::rethrow_exception(failed);
        collect_finished();
        if (!m_parked.empty()) run_parked();
      }
      kafka::message_ptr msg(rd_kafka_consumer_poll(m_kafka.get(), poll_timeout_ms()));
      if (msg) handle(msg.get());
      if (m_batching && m_attempts->batch_open() &&
          (!msg || m_attempts->batch_records() >= m_options.inbox->batch ||
           clock::now() - m_attempts->batch_opened() >= m_options.inbox->batch_time)) {
        settle_batch();
      }
      follow_halt();
      now = clock::now();
      if (now >= next_commit) {
        m_commits.send();
        next_commit = now + m_options.commit_interval;
      }
      if (m_commits.outstanding() > 0) m_commits.drain(0);
      if (now >= next_cleanup) {
        const auto [rows, behind] = cleanup();
        next_cleanup = now + (behind ? milliseconds(1000) : m_options.cleanup_interval);
      }
      if (now >= next_refresh) {
        if (m_plan.has_patterns() || m_setup->ready().size() < m_plan.sources().size()) refresh_quietly();
        next_refresh = now + m_options.pattern_refresh;
      }
      if (now >= next_gauges) {
        update_gauges(now);
        next_gauges = now + k_gauges_every;
      }
    }
  }

  void refresh_quietly() {
    try {
      refresh_topics();
    } catch (const outbox_error& e) {
      if (e.value().category == "config") throw;
      log::warn(k_component, "could not look for new topics; trying again later", {{"error", e.what()}});
    }
  }

  int poll_timeout_ms() const {
    auto timeout = milliseconds(k_poll_ms);
    const auto now = clock::now();
    for (const auto& [tp, w] : m_waiting) {
      timeout = std::min(timeout, std::chrono::duration_cast<milliseconds>(std::max(w.p.due - now, clock::duration{})));
    }
    for (const auto& [tp, parked] : m_parked) {
      timeout =
          std::min(timeout, std::chrono::duration_cast<milliseconds>(std::max(parked.due - now, clock::duration{})));
    }
    // With workers, finished offsets come back while the poll waits: look for them often enough.
    if (m_pool) timeout = std::min(timeout, milliseconds(10));
    // An open batch commits once nothing more arrives within what is left of its batch_time.
    if (m_batching && m_attempts->batch_open()) {
      const auto left = m_options.inbox->batch_time - (now - m_attempts->batch_opened());
      timeout = std::min(timeout, std::max(std::chrono::duration_cast<milliseconds>(left), milliseconds(0)));
    }
    return static_cast<int>(timeout.count());
  }

  void handle(const rd_kafka_message_t* m) {
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) return;
      log::warn(k_component, "consumer error",
                {{"error", rd_kafka_message_errstr(m)}, {"code", rd_kafka_err2name(m->err)}});
      return;
    }
    const partition_ref* ref = lookup(m);
    if (ref == nullptr) return;  // not assigned any more
    if (m_pool) {
      dispatch(m, *ref);
      return;
    }
    // A record fetched before its partition was paused for a waiting one: it comes again after the seek.
    if (!m_waiting.empty() && m_waiting.contains(ref->tp)) return;
    // Already seen (a fetch that overlapped a seek): not processed twice.
    if (!ref->offsets->started(m->offset)) return;
    if (m_batching) m_attempts->allow_batch(m_waiting.empty() && !read_again(ref->tp, m->offset));
    fill_record(m, ref->tp.topic, m_record);
    std::optional<pending_record> p;
    switch (ref->role.role) {
      case topic_role::source:
        if (ref->role.from_pattern && is_copy(m_record)) {
          m_metrics.foreign_copy(ref->tp.topic);
          break;
        }
        p = m_flow->start(m_record, ref->tp, false);
        break;
      case topic_role::replay:
        p = m_flow->start(m_record, ref->tp, true);
        break;
      case topic_role::tier:
        p = m_flow->from_tier(m_record, ref->tp, ref->role.source, ref->role.delay);
        break;
    }
    const topic_partition tp = ref->tp;  // a copy: a lost batch rewinds partitions
    if (!p) {
      finish(tp, m->offset);
      if (m_rewound.contains(tp)) note_read_again(tp, m->offset);
      return;
    }
    // Nothing waits while a batch is open: the records before this one commit first.
    if (!settle_batch() && m_rewound.contains(tp)) {
      note_read_again(tp, m->offset);
      m_flow->forget(*p);  // its partition is read again from before it
      return;
    }
    pause(tp);
    m_waiting.insert_or_assign(tp, waiting{std::move(*p), false});
  }

  /// A record is finished: its offset is marked, or with an open batch of inbox records marked once the batch
  /// commits.
  void finish(const topic_partition& tp, std::int64_t offset) {
    if (m_batching) {
      sync_batch();
      if (m_attempts->batch_open()) {
        if (m_deferred.empty()) m_deferred_epoch = m_attempts->batch_commits();
        m_deferred.emplace_back(tp, offset);
        return;
      }
    }
    m_offsets.finished(tp, offset);
  }

  /// Commits the open batch of inbox records (inbox_options::batch) and marks its records finished; false when it
  /// was lost, and their partitions are read again from its first record.
  bool settle_batch() {
    if (!m_batching) return true;
    m_attempts->commit_batch();
    return sync_batch();
  }

  /// Catches up with what happened to the batch: committed (also by the attempt runner itself, before a dead
  /// letter) marks the deferred records finished; lost rewinds their partitions. False when it was lost.
  bool sync_batch() {
    m_rewound.clear();
    if (m_attempts->take_batch_lost()) {
      rewind_deferred();
      return false;
    }
    if (!m_deferred.empty() && m_attempts->batch_commits() != m_deferred_epoch) {
      for (const auto& [tp, offset] : m_deferred) m_offsets.finished(tp, offset);
      m_deferred.clear();
    }
    return true;
  }

  /// Whether the record at `offset` of `tp` is one a lost batch made the consumer read again: those run a
  /// transaction each, so that the record that lost it (an SQL error closes the whole transaction) fails alone.
  bool read_again(const topic_partition& tp, std::int64_t offset) {
    const auto it = m_read_again.find(tp);
    if (it == m_read_again.end()) return false;
    if (offset <= it->second) return true;
    m_read_again.erase(it);
    return false;
  }

  void note_read_again(const topic_partition& tp, std::int64_t offset) {
    auto& until = m_read_again[tp];
    until = std::max(until, offset);
  }

  /// A lost batch: each partition with records in it is read again from the first of them (a record waiting
  /// there is dropped and comes again too); the inbox makes what did commit a duplicate.
  void rewind_deferred() {
    std::map<topic_partition, std::int64_t> from;
    std::map<topic_partition, std::int64_t> until;
    for (const auto& [tp, offset] : m_deferred) {
      const auto [it, fresh] = from.emplace(tp, offset);
      if (!fresh) it->second = std::min(it->second, offset);
      auto& last = until[tp];
      last = std::max(last, offset);
    }
    m_deferred.clear();
    for (const auto& [tp, offset] : from) {
      partition_offsets* o = m_offsets.offsets(tp);
      if (o == nullptr) continue;
      forget(tp);
      o->rewind(offset);
      m_rewound.insert(tp);
      note_read_again(tp, until[tp]);
      bool moved = false;
      for (int tries = 0; tries < 3 && !moved; ++tries) moved = seek_and_resume(tp, offset);
      if (!moved) {
        throw outbox_error("kafka", "cannot read " + tp.topic + "[" + std::to_string(tp.partition) +
                                        "] again from offset " + std::to_string(offset) +
                                        " after a lost batch of inbox records; stopping so that a restart does");
      }
      log::warn(k_component, "a batch of inbox records was lost; reading its records again",
                {{"topic", tp.topic}, {"partition", tp.partition}, {"from_offset", offset}});
    }
  }

  /// consumer.workers: hands the record to its lane (a tier copy only once it is due: until then its partition is
  /// parked, and the copy read again when it is).
  void dispatch(const rd_kafka_message_t* m, const partition_ref& ref) {
    if (m_parked.contains(ref.tp)) return;  // fetched before its partition was parked: it comes again
    job j;
    fill_record(m, ref.tp.topic, j.rec);
    if (ref.role.role == topic_role::tier) {
      if (const auto wait = tier_copy_wait(j.rec, ref.role.delay); wait > milliseconds(0)) {
        pause(ref.tp);
        m_parked.insert_or_assign(ref.tp, parked_copy{m->offset, clock::now() + wait});
        return;
      }
      j.kind = job_kind::tier;
      j.tier_source = ref.role.source;
      j.tier_delay = ref.role.delay;
    } else if (ref.role.role == topic_role::replay) {
      j.kind = job_kind::replay;
    }
    if (!ref.offsets->started(m->offset)) return;  // already seen (a fetch that overlapped a seek)
    if (ref.role.role == topic_role::source && ref.role.from_pattern && is_copy(j.rec)) {
      m_metrics.foreign_copy(ref.tp.topic);
      ref.offsets->finished(m->offset);
      return;
    }
    j.tp = ref.tp;
    j.offset = m->offset;
    j.generation = m_generation[ref.tp];
    m_pool->submit(std::move(j));
    if (ref.offsets->in_flight() >= k_max_in_flight && m_full.insert(ref.tp).second) pause(ref.tp);
  }

  /// consumer.workers: marks the offsets the lanes finished (of the partitions' current assignments), and resumes
  /// a partition paused with too many records in flight once half of them are finished.
  void collect_finished() {
    for (const auto& f : m_pool->take_finished()) {
      const auto g = m_generation.find(f.tp);
      if (g != m_generation.end() && g->second == f.generation) m_offsets.finished(f.tp, f.offset);
    }
    for (auto it = m_full.begin(); it != m_full.end();) {
      const partition_offsets* o = m_offsets.offsets(*it);
      if (o != nullptr && o->in_flight() > k_max_in_flight / 2) {
        ++it;
        continue;
      }
      const topic_partition tp = *it;
      it = m_full.erase(it);
      if (o != nullptr && may_fetch(tp)) resume(tp);
    }
  }

  /// consumer.workers: a parked tier partition whose copy is due is read again from that copy.
  void run_parked() {
    const auto now = clock::now();
    for (auto it = m_parked.begin(); it != m_parked.end();) {
      if (now < it->second.due) {
        ++it;
        continue;
      }
      if (seek_and_resume(it->first, it->second.offset)) {
        it = m_parked.erase(it);
      } else {
        it->second.due = now + milliseconds(k_poll_ms);
        ++it;
      }
    }
  }

  /// Whether a partition may be fetched from: not halted, and not paused for a waiting or parked record or for
  /// too many in flight.
  [[nodiscard]] bool may_fetch(const topic_partition& tp) const {
    return !m_halted.load(std::memory_order_relaxed) && !m_waiting.contains(tp) && !m_parked.contains(tp) &&
           !m_full.contains(tp);
  }

  /// The assigned partition a message belongs to, cached by topic handle and partition; nullptr if not assigned.
  const partition_ref* lookup(const rd_kafka_message_t* m) {
    const auto key = std::make_pair(static_cast<const rd_kafka_topic_t*>(m->rkt), m->partition);
    if (const auto it = m_refs.find(key); it != m_refs.end()) return &it->second;
    topic_partition tp{rd_kafka_topic_name(m->rkt), m->partition};
    partition_offsets* offsets = m_offsets.offsets(tp);
    if (offsets == nullptr) return nullptr;
    const topic_entry* role = m_plan.role_of(tp.topic);
    if (role == nullptr) return nullptr;  // a topic dropped from the subscription: not ours to run
    return &m_refs.emplace(key, partition_ref{std::move(tp), offsets, *role}).first->second;
  }

  void run_due() {
    if (m_batching) m_attempts->allow_batch(false);  // records that waited run a transaction each
    for (auto it = m_waiting.begin(); it != m_waiting.end() && !m_stop.load(std::memory_order_relaxed);) {
      waiting& w = it->second;
      if (!w.counted) {
        if (!m_flow->drive(w.p)) {
          ++it;
          continue;
        }
        m_offsets.finished(it->first, w.p.offset);
        w.counted = true;
      }
      // Move the fetch position just past the record (later ones were dropped while paused), then resume.
      if (seek_and_resume(it->first, w.p.offset + 1)) {
        it = m_waiting.erase(it);
      } else {
        w.p.due = clock::now() + milliseconds(k_poll_ms);
        ++it;
      }
    }
  }

  /// Pauses every partition when the flow halted, resumes them when its probe succeeded.
  void follow_halt() {
    const bool now_halted = m_pool ? m_pool->halted() : m_flow->halted();
    if (now_halted == m_halted.load(std::memory_order_relaxed)) return;
    {
      std::lock_guard lock(m_halt_mutex);
      m_halt_reason = m_pool ? m_pool->halt_reason() : m_flow->halt_reason();
    }
    m_halted.store(now_halted, std::memory_order_relaxed);
    rd_kafka_topic_partition_list_t* assignment = nullptr;
    if (rd_kafka_assignment(m_kafka.get(), &assignment) != RD_KAFKA_RESP_ERR_NO_ERROR || assignment == nullptr) return;
    kafka::partition_list_ptr owned(assignment);
    if (now_halted) {
      rd_kafka_pause_partitions(m_kafka.get(), owned.get());
      return;
    }
    kafka::partition_list_ptr resume = kafka::make_partition_list(owned->cnt);
    for (const auto& tp : partitions_of(owned.get())) {
      if (may_fetch(tp)) rd_kafka_topic_partition_list_add(resume.get(), tp.topic.c_str(), tp.partition);
    }
    rd_kafka_resume_partitions(m_kafka.get(), resume.get());
  }

  void pause(const topic_partition& tp) {
    kafka::partition_list_ptr list = kafka::make_partition_list(1);
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
    rd_kafka_pause_partitions(m_kafka.get(), list.get());
  }

  void resume(const topic_partition& tp) {
    kafka::partition_list_ptr list = kafka::make_partition_list(1);
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition);
    rd_kafka_resume_partitions(m_kafka.get(), list.get());
  }

  bool seek_and_resume(const topic_partition& tp, std::int64_t offset) {
    kafka::partition_list_ptr list = kafka::make_partition_list(1);
    rd_kafka_topic_partition_list_add(list.get(), tp.topic.c_str(), tp.partition)->offset = offset;
    kafka::error_ptr e(rd_kafka_seek_partitions(m_kafka.get(), list.get(), static_cast<int>(k_seek_timeout.count())));
    const rd_kafka_resp_err_t err = e ? rd_kafka_error_code(e.get()) : list->elems[0].err;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      log::warn(
          k_component, "cannot move past a retried record yet; trying again",
          {{"topic", tp.topic}, {"partition", tp.partition}, {"offset", offset}, {"error", rd_kafka_err2str(err)}});
      return false;
    }
    // Stays paused until the breaker closes, or (workers) until fewer records are in flight.
    if (m_halted.load(std::memory_order_relaxed) || m_full.contains(tp)) return true;
    list->elems[0].offset = RD_KAFKA_OFFSET_INVALID;
    rd_kafka_resume_partitions(m_kafka.get(), list.get());
    return true;
  }

  std::pair<std::size_t, bool> cleanup() {
    try {
      const auto [rows, behind] = m_attempts->cleanup(m_options.cleanup_batch, k_cleanup_budget);
      m_metrics.cleanup(rows, behind);
      if (rows > 0) log::debug(k_component, "dedupe retention cleanup", {{"removed", rows}, {"behind", behind}});
      return {rows, behind};
    } catch (const std::exception& e) {
      m_metrics.dependency_error("dedupe");
      log::warn(k_component, "dedupe retention cleanup failed; will try again", {{"error", e.what()}});
      return {0, false};
    }
  }

  void update_gauges(clock::time_point now) {
    double oldest = 0;
    for (const auto& [tp, w] : m_waiting)
      oldest = std::max(oldest, std::chrono::duration<double>(now - w.p.since).count());
    std::size_t records = m_waiting.size();
    if (m_pool) {
      const auto [in_lanes, oldest_in_lanes] = m_pool->waiting(now);
      records += in_lanes;
      oldest = std::max(oldest, oldest_in_lanes);
    }
    m_metrics.waiting(records, oldest);
    m_metrics.evicted(m_attempts->evicted());
  }

  void forget(const topic_partition& tp) {
    if (const auto it = m_waiting.find(tp); it != m_waiting.end()) {
      m_flow->forget(it->second.p);
      m_waiting.erase(it);
    }
    m_parked.erase(tp);
    m_full.erase(tp);
    m_read_again.erase(tp);
  }

  void on_rebalance(rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts) {
    rd_kafka_t* rk = m_kafka.get();
    const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    const auto tps = partitions_of(parts);
    m_refs.clear();
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      for (const auto& tp : tps) {
        forget(tp);
        m_offsets.assign(tp);
        const std::uint64_t generation = ++m_next_generation;
        m_generation[tp] = generation;
        if (m_pool) m_pool->assign(tp, generation);
      }
      if (cooperative) {
        kafka::error_ptr e(rd_kafka_incremental_assign(rk, parts));
        if (e)
          log::error(k_component, "cannot take the assigned partitions", {{"error", rd_kafka_error_string(e.get())}});
      } else {
        rd_kafka_assign(rk, parts);
      }
      // A partition paused for a waiting record that was revoked or lost and comes back stays paused in
      // librdkafka: resume it, unless the consumer is halted and takes nothing new.
      if (m_halted.load(std::memory_order_relaxed)) {
        rd_kafka_pause_partitions(rk, parts);
      } else {
        rd_kafka_resume_partitions(rk, parts);
      }
      m_assigned_count.fetch_add(static_cast<int>(tps.size()), std::memory_order_relaxed);
      log::info(k_component, "partitions assigned", {{"partitions", describe(tps)}});
      return;
    }
    // Revoked or lost: work on these partitions stops here (this runs on the processing thread, between
    // records); what is finished is committed, unless the partitions are already someone else's. Per-key holds
    // live in the dedupe store, so nothing about them is lost here.
    // With workers, the lanes let these partitions go first: a handler already running finishes, and what
    // finished is committed with the rest.
    const bool lost = rd_kafka_assignment_lost(rk) != 0 || err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS;
    settle_quietly();
    if (m_pool) {
      m_pool->drop(tps);
      collect_finished();
    }
    for (const auto& tp : tps) forget(tp);
    if (!lost) m_commits.send_and_wait(&tps, clock::now() + std::min(m_options.stop_timeout, k_revoke_commit_timeout));
    for (const auto& tp : tps) {
      m_offsets.revoke(tp);
      m_generation.erase(tp);
    }
    if (cooperative) {
      m_assigned_count.fetch_sub(static_cast<int>(tps.size()), std::memory_order_relaxed);
      kafka::error_ptr e(rd_kafka_incremental_unassign(rk, parts));
    } else {
      m_assigned_count.store(0, std::memory_order_relaxed);
      rd_kafka_assign(rk, nullptr);
    }
    log::info(k_component, lost ? "partitions lost" : "partitions revoked", {{"partitions", describe(tps)}});
  }

  /// settle_batch() where a lost batch can only be logged: its records are not committed and come again.
  void settle_quietly() noexcept {
    try {
      settle_batch();
    } catch (const std::exception& e) {
      log::warn(k_component, "a batch of inbox records was lost; its records come again", {{"error", e.what()}});
    }
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
    if (m_pool) {
      m_pool->stop();  // the handlers running finish; what waits in a lane is dropped (read again later)
      collect_finished();
    }
    settle_quietly();
    m_commits.send_and_wait(nullptr, deadline);
    for (auto& [tp, w] : m_waiting) m_flow->forget(w.p);
    m_waiting.clear();
    kafka::queue_ptr close_queue(rd_kafka_queue_new(m_kafka.get()));
    kafka::error_ptr e(rd_kafka_consumer_close_queue(m_kafka.get(), close_queue.get()));
    if (e) log::warn(k_component, "consumer close failed", {{"error", rd_kafka_error_string(e.get())}});
    while (!e && rd_kafka_consumer_closed(m_kafka.get()) == 0) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
      if (left <= milliseconds(0)) {
        log::warn(k_component,
                  "the consumer did not leave the group within stop_timeout; the group notices after "
                  "session.timeout.ms");
        break;
      }
      kafka::event_ptr ev(rd_kafka_queue_poll(close_queue.get(),
                                              static_cast<int>(std::min<milliseconds::rep>(left.count(), k_poll_ms))));
      if (ev && rd_kafka_event_type(ev.get()) == RD_KAFKA_EVENT_REBALANCE) {
        // Leaving: nothing runs any more and everything finished was committed above; just let go.
        if (std::strcmp(rd_kafka_rebalance_protocol(m_kafka.get()), "COOPERATIVE") == 0) {
          kafka::error_ptr ignored(
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
  consumer_metrics m_metrics;
  dlq_breaker m_breaker;
  topic_plan m_plan;
  offset_tracker m_offsets;
  offset_commits m_commits;
  std::unique_ptr<attempt_runner> m_attempts;
  std::unique_ptr<key_order> m_order;
  std::unique_ptr<side_producer> m_producer;
  std::unique_ptr<retry_flow> m_flow;
  std::unique_ptr<topic_setup> m_setup;
  kafka::consumer_ptr m_kafka;
  std::vector<std::string> m_subscribed;
  std::map<topic_partition, waiting> m_waiting;
  /// consumer.workers: a tier copy not yet due, where its partition is read again from when it is.
  struct parked_copy {
    std::int64_t offset = 0;
    clock::time_point due;
  };
  std::unique_ptr<copy_sink> m_lane_sink;
  std::unique_ptr<worker_pool> m_pool;                    // null unless consumer.workers > 1
  std::map<topic_partition, parked_copy> m_parked;        // tier partitions parked until their copy is due
  std::set<topic_partition> m_full;                       // paused with k_max_in_flight records in flight
  std::map<topic_partition, std::uint64_t> m_generation;  // each assignment of a partition gets its own
  std::uint64_t m_next_generation = 0;
  /// inbox_options::batch > 1: records finished in the open batch, marked finished once it commits.
  bool m_batching = false;
  std::vector<std::pair<topic_partition, std::int64_t>> m_deferred;
  std::uint64_t m_deferred_epoch = 0;
  std::set<topic_partition> m_rewound;                   // by the last sync_batch()
  std::map<topic_partition, std::int64_t> m_read_again;  // up to which offset records run unbatched
  std::map<std::pair<const rd_kafka_topic_t*, std::int32_t>, partition_ref> m_refs;  // cleared on every rebalance
  record m_record;                                                                   // reused for every record read
  std::string m_kafka_fatal;
  std::atomic<bool> m_ran{false};
  std::atomic<bool> m_stop{false};
  std::atomic<bool> m_halted{false};  // mirrors the flow's state for other threads (readiness)
  mutable std::mutex m_halt_mutex;
  std::string m_halt_reason;
  std::atomic<int> m_assigned_count{0};  // read by other threads (readiness)
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
std::string consumer::halt_reason() const { return m_impl->halt_reason(); }

retry_policy default_retry_policy() {
  retry_policy p;
  p.kind = schedule_kind::exponential;
  p.initial = milliseconds(200);
  p.max = std::chrono::seconds(30);
  p.max_attempts = 5;
  return p;
}

dedupe_key_function dedupe_key_from_header(std::string name) {
  return [name = std::move(name)](const record& r) { return std::string(r.header(name).value_or("")); };
}

std::string retry_topic_name(const std::string& topic, const std::string& group, std::chrono::milliseconds delay) {
  return rf::retry_topic_name(topic, group, delay);
}

}  // namespace outbox::consumer
