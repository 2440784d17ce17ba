#pragma once

#include "outbox/config/consumer_config.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace outbox::consumer {

/// How the delay between in-process attempts grows.
enum class schedule_kind { fixed, exponential, decorrelated, list };

/// What a retry_schedule is built from; retry_schedule's constructor checks it.
struct retry_policy {
  schedule_kind kind = schedule_kind::exponential;
  std::chrono::milliseconds initial{200};         ///< fixed: the delay; exponential/decorrelated: base
  std::chrono::milliseconds max{30000};           ///< cap on one delay (not applied to list)
  std::vector<std::chrono::milliseconds> delays;  ///< list: delay before attempt 2, 3, ...
  int max_attempts = 0;  ///< total attempts allowed, 0 = no cap (list: also capped by delays.size()+1)
  std::chrono::milliseconds max_elapsed{0};  ///< cap on time since the first failure, 0 = no cap
};

/// The `wechatpay` preset: list 15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h 3h 6h 6h.
retry_policy wechatpay_policy();

/// Builds a policy from the loaded `retry:` config section (schedule, initial, max, attempts, delays, max_elapsed).
retry_policy policy_from_config(const config::retry_config& c);

/// The delays between attempts of one record, with jitter drawn from a caller-given seed.
class retry_schedule {
 public:
  /// Throws std::invalid_argument naming the field on nonsense (initial <= 0, initial > max, list empty, ...).
  explicit retry_schedule(retry_policy p);

  /// Delay to wait after `failures` failed attempts (failures >= 1) before the next attempt, or nullopt when
  /// the caps say give up (max_attempts reached, list exhausted, or elapsed + delay would exceed max_elapsed).
  /// Deterministic in `seed`: the same (failures, seed) always gives the same delay, so a record's jitter can be
  /// seeded per record (see jitter_seed) and replayed in tests. exponential = full jitter: uniform in
  /// [0, min(max, initial*2^(failures-1))] (never below 1ms); decorrelated = AWS "decorrelated jitter":
  /// d1 = initial, d(n) = min(max, uniform[initial, 3*d(n-1)]), computed iteratively from the seed.
  /// Throws std::invalid_argument when failures < 1.
  [[nodiscard]] std::optional<std::chrono::milliseconds> next_delay(int failures, std::chrono::milliseconds elapsed,
                                                                    std::uint64_t seed) const;

  /// Upper bound of the sum of all delays the schedule can produce before giving up, using `attempts` attempts
  /// (list: sum of its first attempts-1 delays; others: sum of their caps). Used for the retention check.
  /// Also bounded by the policy's max_attempts, the list's length and max_elapsed when those are set.
  [[nodiscard]] std::chrono::milliseconds worst_case_total(int attempts) const;

  [[nodiscard]] const retry_policy& policy() const noexcept;

 private:
  retry_policy m_policy;
};

/// A per-record seed: a stable 64-bit hash (FNV-1a) of the event id (or topic/partition/offset when no
/// event id) mixed with `salt` (tests pass a fixed salt; the SDK passes a per-process random one).
std::uint64_t jitter_seed(std::string_view record_identity, std::uint64_t salt);

}  // namespace outbox::consumer
