#pragma once

#include "outbox/config/relay_config.hpp"
#include "outbox/metrics/http_endpoint.hpp"
#include "outbox/metrics/registry.hpp"

#include <memory>
#include <string>
#include <vector>

namespace outbox::relay {

/// What the operator asked for on the command line; applied on the first connect only.
struct run_options {
  bool recreate_slot = false;                ///< drop the slot and the state, start over with a backfill
  std::vector<std::string> backfill_tables;  ///< publish these tables' current rows before streaming
};

/// The relay: one Asio event loop that tails the slot, publishes rows and confirms LSNs; every blocking PostgreSQL
/// call runs on a side thread of its own.
class relay {
 public:
  /// Registers the relay's metrics (SPEC §4, prefix `outbox_relay_`) in `metrics`. Throws outbox_error("config") on
  /// a configuration librdkafka or the router refuses.
  relay(const config::relay_config& c, run_options opts, metrics::registry& metrics);
  ~relay();
  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  /// Runs until SIGTERM/SIGINT (0 after draining; 1 when it had halted) or an unrecoverable failure (1).
  int run();

  /// Streaming from PostgreSQL, Kafka reachable, neither stalled nor halted; safe to call from any thread.
  [[nodiscard]] metrics::readiness ready() const;

 private:
  class loop;
  std::unique_ptr<loop> m_loop;
};

}  // namespace outbox::relay
