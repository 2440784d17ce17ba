#pragma once

#include "outbox/consumer/consumer.hpp"
#include "outbox/metrics/registry.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace outbox::consumer::detail {

/// The consumer's counters: `stats()` and the outbox_consumer_* metrics (SPEC §5 and the operational ones),
/// counted together in one call. Without a registry the metrics go to a private one nobody reads. Counting is
/// safe from the polling thread and the workers at once; stats() and the metrics are safe to read from any thread.
class consumer_metrics {
 public:
  /// Registers the metrics in `reg` (which must outlive this), or in a private registry when null.
  explicit consumer_metrics(metrics::registry* reg);
  ~consumer_metrics();
  consumer_metrics(const consumer_metrics&) = delete;
  consumer_metrics& operator=(const consumer_metrics&) = delete;

  /// The handler said done.
  void processed(const std::string& topic);
  /// The store or the inbox already had the event id.
  void duplicate(const std::string& topic);
  /// An attempt ended in retry.
  void retried(const std::string& topic);
  /// A retry was scheduled: `tier` is `in_process` or the tier's delay (`10s`).
  void retry_scheduled(const std::string& topic, const std::string& tier);
  /// Produced to the dead-letter topic; `fatal` unless its retries ran out.
  void dead_lettered(const std::string& topic, bool fatal);
  /// Produced to a retry tier after failing.
  void parked(const std::string& topic);
  /// Produced to a retry tier unattempted, behind an earlier record of its key.
  void held(const std::string& topic);
  /// A key whose head was dead-lettered let its later records go (per-key ordering).
  void key_released(const std::string& topic);
  /// A copy another consumer group parked, found on a topic this group reads, and skipped.
  void foreign_copy(const std::string& topic);
  /// One failed try of a dependency (`dedupe`, `inbox`, `kafka`, `claim`): the record waits, no attempt spent.
  void dependency_error(const std::string& dependency);
  /// Records now waiting for `dependency` to answer again.
  void dependency_waiting(const std::string& dependency, int delta);
  /// Records waiting in this consumer (a retry delay, a tier's due time, a dependency), and the oldest's age.
  void waiting(std::size_t records, double oldest_seconds);
  /// An offset commit the broker confirmed, or one that failed.
  void commit(bool ok);
  /// Dedupe cleanup deleted `rows`; `behind` when it stopped on its time budget with more to delete.
  void cleanup(std::size_t rows, bool behind);
  /// The store's evictions so far (the memory store's bounds).
  void evicted(std::uint64_t total);
  void halted(bool on);
  void handler_time(const std::string& topic, double seconds);
  void dedupe_time(double seconds);

  [[nodiscard]] consumer_stats stats() const noexcept;

 private:
  enum outcome_index { k_processed, k_duplicate, k_retried, k_dead_lettered, k_outcomes };
  struct per_topic {
    std::array<metrics::counter*, k_outcomes> outcomes{};
    metrics::counter* in_process = nullptr;
    metrics::counter* held = nullptr;
    metrics::histogram* handler = nullptr;
  };
  per_topic& of(const std::string& topic);

  std::unique_ptr<metrics::registry> m_own;
  metrics::registry& m_reg;
  metrics::family<metrics::counter>& m_messages;
  metrics::family<metrics::counter>& m_retries;
  metrics::family<metrics::counter>& m_held;
  metrics::family<metrics::counter>& m_released;
  metrics::family<metrics::counter>& m_foreign;
  metrics::family<metrics::counter>& m_dependency_errors;
  metrics::family<metrics::gauge>& m_dependency_waiting;
  metrics::family<metrics::histogram>& m_handler;
  metrics::histogram& m_dedupe;
  metrics::gauge& m_up;
  metrics::gauge& m_halted;
  metrics::gauge& m_waiting;
  metrics::gauge& m_oldest;
  metrics::counter& m_commit_failures;
  metrics::counter& m_cleanup_rows;
  metrics::gauge& m_cleanup_behind;
  metrics::gauge& m_evicted;
  std::mutex m_topics_mutex;
  std::unordered_map<std::string, per_topic> m_topics;  // under m_topics_mutex; entries never move

  std::atomic<std::uint64_t> m_n_processed{0};
  std::atomic<std::uint64_t> m_n_duplicate{0};
  std::atomic<std::uint64_t> m_n_retried{0};
  std::atomic<std::uint64_t> m_n_fatal{0};
  std::atomic<std::uint64_t> m_n_dead_lettered{0};
  std::atomic<std::uint64_t> m_n_parked{0};
  std::atomic<std::uint64_t> m_n_held{0};
  std::atomic<std::uint64_t> m_n_commits{0};
  std::atomic<std::uint64_t> m_n_dependency_errors{0};
  std::atomic<std::uint64_t> m_n_foreign{0};
};

}  // namespace outbox::consumer::detail
