#include "dlq_breaker.hpp"

#include <algorithm>
#include <stdexcept>

namespace outbox::consumer::detail {

dlq_breaker::dlq_breaker(double max_ratio, int window)
    : m_ratio(max_ratio), m_limit(max_ratio * window), m_ring(static_cast<std::size_t>(std::max(window, 1)), false) {
  if (window < 1 || !(max_ratio > 0 && max_ratio <= 1)) {
    throw std::invalid_argument("dlq.window must be at least 1 and dlq.max_ratio in (0, 1]");
  }
}

bool dlq_breaker::would_trip() const noexcept {
  std::lock_guard lock(m_mutex);
  const std::size_t after = m_count - (m_ring[m_next] ? 1 : 0) + 1;
  return static_cast<double>(after) > m_limit;
}

void dlq_breaker::add(bool dead_lettered) noexcept {
  std::lock_guard lock(m_mutex);
  if (m_ring[m_next]) --m_count;
  m_ring[m_next] = dead_lettered;
  if (dead_lettered) ++m_count;
  m_next = (m_next + 1) % m_ring.size();
}

void dlq_breaker::reset() noexcept {
  std::lock_guard lock(m_mutex);
  std::fill(m_ring.begin(), m_ring.end(), false);
  m_count = 0;
  m_next = 0;
}

std::size_t dlq_breaker::dead_letters() const noexcept {
  std::lock_guard lock(m_mutex);
  return m_count;
}

}  // namespace outbox::consumer::detail
