#include "outbox/consumer/retry_schedule.hpp"

#include "outbox/config/units.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace outbox::consumer {
namespace {

using std::chrono::milliseconds;
using rep = milliseconds::rep;

constexpr rep k_rep_max = std::numeric_limits<rep>::max();
constexpr std::uint64_t k_golden_gamma = 0x9E3779B97F4A7C15ULL;

/// The splitmix64 finalizer: a bijective 64-bit mix.
constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30U)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27U)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31U);
}

/// The n-th output (n >= 1) of the splitmix64 stream seeded with `seed`; jitter for failure n uses draw n.
constexpr std::uint64_t draw(std::uint64_t seed, int n) noexcept {
  return mix64(seed + static_cast<std::uint64_t>(n) * k_golden_gamma);
}

/// Uniform in [lo, hi] (lo <= hi) from one draw. The modulo bias is below (hi - lo) / 2^64: nothing at
/// millisecond scale, and unlike std::uniform_int_distribution the result is the same on every standard library.
rep uniform(std::uint64_t r, rep lo, rep hi) noexcept {
  const auto span = static_cast<std::uint64_t>(hi) - static_cast<std::uint64_t>(lo) + 1;
  if (span == 0) return lo + static_cast<rep>(r >> 1U);  // [0, 2^64): cannot happen with lo >= 0
  return lo + static_cast<rep>(r % span);
}

rep saturating_add(rep a, rep b) noexcept { return a > k_rep_max - b ? k_rep_max : a + b; }

rep saturating_mul(rep a, rep k) noexcept { return a != 0 && k > k_rep_max / a ? k_rep_max : a * k; }

/// min(cap, base * 2^shift) without overflow; base > 0.
rep doubled(rep base, int shift, rep cap) noexcept {
  if (shift >= 63 || base > (cap >> shift)) return cap;
  return std::min(cap, base << shift);
}

std::string text(milliseconds d) { return config::format_duration(d); }

void check(const retry_policy& p) {
  if (p.max_attempts < 0) {
    throw std::invalid_argument("retry_policy.max_attempts is " + std::to_string(p.max_attempts) +
                                "; use 0 for no cap or the number of attempts allowed");
  }
  if (p.max_elapsed.count() < 0) {
    throw std::invalid_argument("retry_policy.max_elapsed is negative; use 0ms for no cap");
  }
  if (p.kind == schedule_kind::list) {
    if (p.delays.empty()) {
      throw std::invalid_argument("retry_policy.delays is empty; a list schedule needs at least one delay");
    }
    for (std::size_t i = 0; i < p.delays.size(); ++i) {
      if (p.delays[i].count() < 0) {
        throw std::invalid_argument("retry_policy.delays[" + std::to_string(i) + "] is negative");
      }
    }
    return;
  }
  if (p.initial.count() <= 0) {
    throw std::invalid_argument("retry_policy.initial is " + std::to_string(p.initial.count()) +
                                "ms; it must be longer than 0ms");
  }
  if (p.max.count() <= 0) {
    throw std::invalid_argument("retry_policy.max is " + std::to_string(p.max.count()) +
                                "ms; it must be longer than 0ms");
  }
  if (p.initial > p.max) {
    throw std::invalid_argument("retry_policy.initial " + text(p.initial) + " is longer than retry_policy.max " +
                                text(p.max) + "; raise max or lower initial");
  }
}

}  // namespace

retry_policy wechatpay_policy() {
  retry_policy p;
  p.kind = schedule_kind::list;
  p.delays = config::wechatpay_delays();
  return p;
}

retry_policy policy_from_config(const config::retry_config& c) {
  retry_policy p;
  switch (c.schedule) {
    case config::retry_schedule::fixed:
      p.kind = schedule_kind::fixed;
      break;
    case config::retry_schedule::exponential:
      p.kind = schedule_kind::exponential;
      break;
    case config::retry_schedule::decorrelated:
      p.kind = schedule_kind::decorrelated;
      break;
    case config::retry_schedule::list:
      p.kind = schedule_kind::list;
      p.delays = c.delays;
      break;
    case config::retry_schedule::wechatpay:
      p = wechatpay_policy();
      break;
  }
  p.initial = c.initial;
  p.max = c.max;
  p.max_attempts = c.attempts;
  p.max_elapsed = c.max_elapsed;
  return p;
}

retry_schedule::retry_schedule(retry_policy p) : m_policy(std::move(p)) { check(m_policy); }

std::optional<milliseconds> retry_schedule::next_delay(int failures, milliseconds elapsed, std::uint64_t seed) const {
  if (failures < 1) {
    throw std::invalid_argument("retry_schedule::next_delay: failures is " + std::to_string(failures) +
                                "; it counts failed attempts and starts at 1");
  }
  const retry_policy& p = m_policy;
  if (p.max_attempts > 0 && failures >= p.max_attempts) return std::nullopt;

  rep delay = 0;
  switch (p.kind) {
    case schedule_kind::fixed:
      delay = p.initial.count();
      break;
    case schedule_kind::exponential: {
      const rep cap = doubled(p.initial.count(), failures - 1, p.max.count());
      delay = std::max<rep>(1, uniform(draw(seed, failures), 0, cap));
      break;
    }
    case schedule_kind::decorrelated: {
      const rep base = p.initial.count();
      delay = base;
      for (int n = 2; n <= failures; ++n) {
        delay = std::min(p.max.count(), uniform(draw(seed, n), base, saturating_mul(delay, 3)));
      }
      break;
    }
    case schedule_kind::list:
      if (static_cast<std::size_t>(failures) > p.delays.size()) return std::nullopt;
      delay = p.delays[static_cast<std::size_t>(failures) - 1].count();
      break;
  }
  if (p.max_elapsed.count() > 0 && saturating_add(std::max<rep>(elapsed.count(), 0), delay) > p.max_elapsed.count()) {
    return std::nullopt;
  }
  return milliseconds(delay);
}

milliseconds retry_schedule::worst_case_total(int attempts) const {
  if (attempts < 1) {
    throw std::invalid_argument("retry_schedule::worst_case_total: attempts is " + std::to_string(attempts) +
                                "; it must be at least 1");
  }
  const retry_policy& p = m_policy;
  int delays = attempts - 1;
  if (p.max_attempts > 0) delays = std::min(delays, p.max_attempts - 1);
  if (p.kind == schedule_kind::list) delays = static_cast<int>(std::min<std::size_t>(delays, p.delays.size()));

  rep total = 0;
  switch (p.kind) {
    case schedule_kind::fixed:
      total = saturating_mul(p.initial.count(), delays);
      break;
    case schedule_kind::decorrelated:
      total = saturating_mul(p.max.count(), delays);
      break;
    case schedule_kind::exponential:
      for (int i = 0; i < delays; ++i) {
        const rep cap = doubled(p.initial.count(), i, p.max.count());
        if (cap == p.max.count()) {  // every later delay has the same cap
          total = saturating_add(total, saturating_mul(cap, delays - i));
          break;
        }
        total = saturating_add(total, cap);
      }
      break;
    case schedule_kind::list:
      for (int i = 0; i < delays; ++i) total = saturating_add(total, p.delays[static_cast<std::size_t>(i)].count());
      break;
  }
  if (p.max_elapsed.count() > 0) total = std::min(total, p.max_elapsed.count());
  return milliseconds(total);
}

const retry_policy& retry_schedule::policy() const noexcept { return m_policy; }

std::uint64_t jitter_seed(std::string_view record_identity, std::uint64_t salt) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64-bit offset basis
  for (const char c : record_identity) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;  // FNV-1a 64-bit prime
  }
  return mix64(h ^ mix64(salt));
}

}  // namespace outbox::consumer
