#pragma once

#include "outbox/metrics/http_endpoint.hpp"
#include "outbox/metrics/registry.hpp"
#include "outbox/relay/settings.hpp"

#include <memory>

namespace outbox::relay {

/// The relay: one Asio event loop that tails the slot, publishes rows and confirms LSNs.
class relay {
 public:
  /// Registers the relay's metrics (SPEC §4, prefix `outbox_relay_`) in `metrics`.
  relay(settings s, metrics::registry& metrics);
  ~relay();
  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  /// Runs until SIGTERM/SIGINT (returns 0 after draining) or an unrecoverable failure (returns 1).
  int run();

  /// Streaming from PostgreSQL and Kafka reachable; safe to call from any thread.
  [[nodiscard]] metrics::readiness ready() const;

 private:
  class loop;
  std::unique_ptr<loop> m_loop;
};

}  // namespace outbox::relay
