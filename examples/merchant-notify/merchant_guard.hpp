#pragma once
// Per-merchant isolation: a circuit breaker and a cap on concurrent requests, shared by every handler thread.

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace outbox::notify {

/// After `failures` consecutive failed attempts a merchant's circuit opens for `cooldown`: attempts in that time
/// send nothing. Then one request is let through (half-open); its success closes the circuit, its failure opens it
/// again. Independently, at most `max_in_flight` requests go to one merchant at a time. Thread-safe.
class merchant_guard {
 public:
  using clock = std::chrono::steady_clock;

  merchant_guard(int failures, std::chrono::milliseconds cooldown, int max_in_flight);

  /// Why no request may go to `merchant` now (and how long until one may), or nullopt: then a slot is taken and
  /// finish() must be called.
  struct refusal {
    std::string reason;
    std::chrono::milliseconds wait{0};
  };
  std::optional<refusal> admit(const std::string& merchant, clock::time_point now = clock::now());
  /// Gives back the slot admit() took; `failed` says whether the attempt counts against the circuit.
  void finish(const std::string& merchant, bool failed, clock::time_point now = clock::now());

  /// Whether `merchant`'s circuit is open now (for the metrics gauge).
  bool open(const std::string& merchant, clock::time_point now = clock::now());

 private:
  struct state {
    int consecutive_failures = 0;
    clock::time_point open_until{};
    bool probing = false;  ///< a half-open request is out
    int in_flight = 0;
  };
  int m_failures;
  std::chrono::milliseconds m_cooldown;
  int m_max_in_flight;
  std::mutex m_mutex;
  std::map<std::string, state> m_states;
};

}  // namespace outbox::notify
