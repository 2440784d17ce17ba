#include "merchant_guard.hpp"

namespace outbox::notify {

merchant_guard::merchant_guard(int failures, std::chrono::milliseconds cooldown, int max_in_flight)
    : m_failures(failures), m_cooldown(cooldown), m_max_in_flight(max_in_flight) {}

std::optional<merchant_guard::refusal> merchant_guard::admit(const std::string& merchant, clock::time_point now) {
  std::lock_guard lock(m_mutex);
  state& s = m_states[merchant];
  const bool tripped = s.consecutive_failures >= m_failures;
  if (tripped && now < s.open_until) {
    return refusal{"circuit open after " + std::to_string(s.consecutive_failures) + " consecutive failures",
                   std::chrono::duration_cast<std::chrono::milliseconds>(s.open_until - now)};
  }
  if (tripped && s.probing) return refusal{"circuit half-open: a probe request is out", m_cooldown};
  if (s.in_flight >= m_max_in_flight) {
    return refusal{"at the merchant's limit of " + std::to_string(m_max_in_flight) + " requests in flight",
                   std::chrono::milliseconds(0)};
  }
  if (tripped) s.probing = true;
  ++s.in_flight;
  return std::nullopt;
}

void merchant_guard::finish(const std::string& merchant, bool failed, clock::time_point now) {
  std::lock_guard lock(m_mutex);
  state& s = m_states[merchant];
  --s.in_flight;
  s.probing = false;
  if (!failed) {
    s.consecutive_failures = 0;
    return;
  }
  if (++s.consecutive_failures >= m_failures) s.open_until = now + m_cooldown;
}

bool merchant_guard::open(const std::string& merchant, clock::time_point now) {
  std::lock_guard lock(m_mutex);
  const auto it = m_states.find(merchant);
  return it != m_states.end() && it->second.consecutive_failures >= m_failures && now < it->second.open_until;
}

}  // namespace outbox::notify
