#include "consumer_metrics.hpp"

namespace outbox::consumer::detail {
namespace {

metrics::registry& use(std::unique_ptr<metrics::registry>& own, metrics::registry* given) {
  if (given != nullptr) return *given;
  own = std::make_unique<metrics::registry>();
  return *own;
}

}  // namespace

consumer_metrics::consumer_metrics(metrics::registry* reg)
    : m_reg(use(m_own, reg)),
      m_messages(m_reg.add_counter("outbox_consumer_messages_total",
                                   "Records by outcome: processed, duplicate, retried (attempts), dead_lettered.",
                                   {"topic", "outcome"})),
      m_retries(m_reg.add_counter("outbox_consumer_retries_total",
                                  "Failed attempts per topic and where the record retries: in_process or a tier's "
                                  "delay.",
                                  {"topic", "tier"})),
      m_held(m_reg.add_counter("outbox_consumer_held_total",
                               "Records parked unattempted behind an earlier record of their key.", {"topic"})),
      m_released(m_reg.add_counter("outbox_consumer_keys_released_total",
                                   "Keys whose dead-lettered head let its later records go (per-key ordering).",
                                   {"topic"})),
      m_foreign(m_reg.add_counter("outbox_consumer_foreign_copies_total",
                                  "Retry copies of another consumer group found and skipped.", {"topic"})),
      m_dependency_errors(m_reg.add_counter("outbox_consumer_dependency_errors_total",
                                            "Failed tries of a dependency (dedupe store, inbox database, Kafka "
                                            "produce, a claim held elsewhere); no attempt of the record is spent.",
                                            {"dependency"})),
      m_dependency_waiting(m_reg.add_gauge("outbox_consumer_dependency_waiting",
                                           "Records waiting for a dependency to answer again.", {"dependency"})),
      m_handler(m_reg.add_histogram("outbox_consumer_handler_seconds", "Time spent in the handler.", {"topic"},
                                    metrics::latency_buckets())),
      m_dedupe(m_reg
                   .add_histogram("outbox_consumer_dedupe_seconds", "Time spent claiming an event id.", {},
                                  metrics::latency_buckets())
                   .get()),
      m_up(m_reg.add_gauge("outbox_consumer_up", "1 while the consumer runs.").get()),
      m_halted(m_reg
                   .add_gauge("outbox_consumer_halted",
                              "1 when consumption is halted: the DLQ breaker tripped, or Kafka refused a dead letter.")
                   .get()),
      m_waiting(m_reg
                    .add_gauge("outbox_consumer_waiting_records",
                               "Records waiting with their partition paused: a retry delay, a tier's due time, a "
                               "dependency.")
                    .get()),
      m_oldest(
          m_reg.add_gauge("outbox_consumer_oldest_waiting_seconds", "How long the oldest waiting record waits.").get()),
      m_commit_failures(
          m_reg.add_counter("outbox_consumer_commit_failures_total", "Offset commits the broker refused.").get()),
      m_cleanup_rows(
          m_reg.add_counter("outbox_consumer_dedupe_cleanup_rows_total", "Expired dedupe entries (inbox rows) deleted.")
              .get()),
      m_cleanup_behind(m_reg
                           .add_gauge("outbox_consumer_dedupe_cleanup_behind",
                                      "1 when the last cleanup ran out of time with expired entries left.")
                           .get()),
      m_evicted(m_reg
                    .add_gauge("outbox_consumer_dedupe_evicted",
                               "Entries the memory store dropped before their retention to stay within its bounds.")
                    .get()) {
  m_up.set(1);
  m_halted.set(0);
  // Every dependency has its series from the start, so that a dashboard or alert reads 0, not "no data".
  for (const char* d : {"dedupe", "inbox", "claim", "kafka"}) {
    m_dependency_waiting.with({d}).set(0);
    static_cast<void>(m_dependency_errors.with({d}));
  }
}

consumer_metrics::~consumer_metrics() { m_up.set(0); }

consumer_metrics::per_topic& consumer_metrics::of(const std::string& topic) {
  std::lock_guard lock(m_topics_mutex);  // workers count beside the polling thread; the values are atomic
  const auto it = m_topics.find(topic);
  if (it != m_topics.end()) return it->second;
  per_topic t;
  static constexpr std::array<const char*, k_outcomes> names{"processed", "duplicate", "retried", "dead_lettered"};
  for (std::size_t i = 0; i < names.size(); ++i) t.outcomes[i] = &m_messages.with({topic, names[i]});
  t.in_process = &m_retries.with({topic, "in_process"});
  t.held = &m_held.with({topic});
  static_cast<void>(m_released.with({topic}));  // 0 until a key is released, rather than no series
  t.handler = &m_handler.with({topic});
  return m_topics.emplace(topic, t).first->second;
}

void consumer_metrics::processed(const std::string& topic) {
  m_n_processed.fetch_add(1, std::memory_order_relaxed);
  of(topic).outcomes[k_processed]->inc();
}

void consumer_metrics::duplicate(const std::string& topic) {
  m_n_duplicate.fetch_add(1, std::memory_order_relaxed);
  of(topic).outcomes[k_duplicate]->inc();
}

void consumer_metrics::retried(const std::string& topic) {
  m_n_retried.fetch_add(1, std::memory_order_relaxed);
  of(topic).outcomes[k_retried]->inc();
}

void consumer_metrics::retry_scheduled(const std::string& topic, const std::string& tier) {
  per_topic& t = of(topic);
  if (tier == "in_process") {
    t.in_process->inc();
  } else {
    m_retries.with({topic, tier}).inc();
  }
}

void consumer_metrics::dead_lettered(const std::string& topic, bool fatal) {
  m_n_dead_lettered.fetch_add(1, std::memory_order_relaxed);
  if (fatal) m_n_fatal.fetch_add(1, std::memory_order_relaxed);
  of(topic).outcomes[k_dead_lettered]->inc();
}

void consumer_metrics::parked(const std::string& /*topic*/) { m_n_parked.fetch_add(1, std::memory_order_relaxed); }

void consumer_metrics::held(const std::string& topic) {
  m_n_parked.fetch_add(1, std::memory_order_relaxed);
  m_n_held.fetch_add(1, std::memory_order_relaxed);
  of(topic).held->inc();
}

void consumer_metrics::key_released(const std::string& topic) { m_released.with({topic}).inc(); }

void consumer_metrics::foreign_copy(const std::string& topic) {
  m_n_foreign.fetch_add(1, std::memory_order_relaxed);
  m_foreign.with({topic}).inc();
}

void consumer_metrics::dependency_error(const std::string& dependency) {
  m_n_dependency_errors.fetch_add(1, std::memory_order_relaxed);
  m_dependency_errors.with({dependency}).inc();
}

void consumer_metrics::dependency_waiting(const std::string& dependency, int delta) {
  m_dependency_waiting.with({dependency}).add(delta);
}

void consumer_metrics::waiting(std::size_t records, double oldest_seconds) {
  m_waiting.set(static_cast<double>(records));
  m_oldest.set(oldest_seconds);
}

void consumer_metrics::commit(bool ok) {
  if (ok) {
    m_n_commits.fetch_add(1, std::memory_order_relaxed);
  } else {
    m_commit_failures.inc();
  }
}

void consumer_metrics::cleanup(std::size_t rows, bool behind) {
  m_cleanup_rows.inc(static_cast<double>(rows));
  m_cleanup_behind.set(behind ? 1 : 0);
}

void consumer_metrics::evicted(std::uint64_t total) { m_evicted.set(static_cast<double>(total)); }

void consumer_metrics::halted(bool on) { m_halted.set(on ? 1 : 0); }

void consumer_metrics::handler_time(const std::string& topic, double seconds) { of(topic).handler->observe(seconds); }

void consumer_metrics::dedupe_time(double seconds) { m_dedupe.observe(seconds); }

consumer_stats consumer_metrics::stats() const noexcept {
  consumer_stats s;
  s.processed = m_n_processed.load(std::memory_order_relaxed);
  s.duplicate = m_n_duplicate.load(std::memory_order_relaxed);
  s.retried = m_n_retried.load(std::memory_order_relaxed);
  s.fatal = m_n_fatal.load(std::memory_order_relaxed);
  s.dead_lettered = m_n_dead_lettered.load(std::memory_order_relaxed);
  s.parked = m_n_parked.load(std::memory_order_relaxed);
  s.held = m_n_held.load(std::memory_order_relaxed);
  s.commits = m_n_commits.load(std::memory_order_relaxed);
  s.dependency_errors = m_n_dependency_errors.load(std::memory_order_relaxed);
  s.foreign_copies = m_n_foreign.load(std::memory_order_relaxed);
  return s;
}

}  // namespace outbox::consumer::detail
