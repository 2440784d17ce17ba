#pragma once
// SIGTERM and SIGINT as a clean stop for a service built on the consumer SDK.

#include "outbox/consumer/consumer.hpp"

#include <csignal>

namespace outbox::consumer {

/// Makes SIGTERM and SIGINT stop a consumer cleanly (run() returns, finished offsets are committed) from the
/// moment it is made: make one on the first line of main(). A signal that comes before a consumer is attached,
/// while the service still reads its config or connects, is remembered, and the consumer attached later stops at
/// once; a service stopped while it starts (a rolling deploy, a supervisor giving up) exits cleanly instead of
/// being killed by the signal. One per process; the previous handlers come back when it is destroyed.
class stop_signals {
 public:
  /// Installs the handlers. Throws outbox_error when another stop_signals exists or sigaction() fails.
  stop_signals();
  ~stop_signals();
  stop_signals(const stop_signals&) = delete;
  stop_signals& operator=(const stop_signals&) = delete;

  /// While it lives, a stop signal stops `c`; when one came already, `c` is stopped at once. Destroy it before
  /// the consumer.
  class attachment {
   public:
    ~attachment();
    attachment(const attachment&) = delete;
    attachment& operator=(const attachment&) = delete;

   private:
    friend class stop_signals;
    attachment() = default;
  };
  [[nodiscard]] attachment attach(consumer& c) noexcept;

  /// Whether a stop signal has come since this was made.
  [[nodiscard]] bool requested() const noexcept;

 private:
  struct sigaction m_old_term {};
  struct sigaction m_old_int {};
};

}  // namespace outbox::consumer
