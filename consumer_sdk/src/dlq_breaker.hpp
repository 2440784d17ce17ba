#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

namespace outbox::consumer::detail {

/// The DLQ breaker: which of the last `window` settled records were dead-lettered. It trips when one more dead
/// letter would make more than `max_ratio` of the window dead letters; the consumer then halts instead of
/// dead-lettering everything after a bad deploy, and probes its held record until one succeeds (reset()).
/// Replayed records are not counted: replaying a batch whose cause is not fixed must not halt live traffic.
///
/// Safe from several threads (the workers of consumer.workers share one breaker); a would_trip() and the add()
/// after it are not one step, so workers deciding at the same moment may pass the ratio by one record each.
///
///   window 10, max_ratio 0.5:  . . X . X X . X X [X?]  -> 5 dead letters of 10 is the most: the sixth trips
class dlq_breaker {
 public:
  /// Throws std::invalid_argument unless window >= 1 and 0 < max_ratio <= 1.
  dlq_breaker(double max_ratio, int window);

  /// True when dead-lettering one more record would make more than max_ratio of the window dead letters.
  [[nodiscard]] bool would_trip() const noexcept;
  /// Counts one settled record: dead-lettered or not.
  void add(bool dead_lettered) noexcept;
  /// Forgets the window (a probe succeeded): the next `window` records start from all good.
  void reset() noexcept;

  [[nodiscard]] std::size_t dead_letters() const noexcept;
  [[nodiscard]] std::size_t window() const noexcept { return m_ring.size(); }
  [[nodiscard]] double max_ratio() const noexcept { return m_ratio; }

 private:
  double m_ratio;
  double m_limit;
  std::vector<bool> m_ring;
  std::size_t m_next = 0;
  std::size_t m_count = 0;
  mutable std::mutex m_mutex;
};

}  // namespace outbox::consumer::detail
