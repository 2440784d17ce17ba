#pragma once
// The HTTP API on `metrics.listen`: the status of notifications, manual resend, /metrics, /healthz, /readyz.

#include "notifier.hpp"
#include "status_store.hpp"

#include "outbox/metrics/http_endpoint.hpp"
#include "outbox/metrics/registry.hpp"

#include <functional>
#include <string>

namespace outbox::notify {

/// The notification routes on the project's metrics endpoint (its threads, its bind and stop); reads the status
/// table through `store`.
class api_server {
 public:
  api_server(status_store& store, notifier& n, const metrics::registry& registry,
             std::function<metrics::readiness()> ready);

  /// Binds `host:port` (port 0 picks one) and serves; throws outbox_error("config") naming the address when it
  /// cannot.
  void start(const std::string& listen);
  [[nodiscard]] int port() const { return m_endpoint.port(); }
  void stop() { m_endpoint.stop(); }

 private:
  metrics::http_endpoint m_endpoint;
};

}  // namespace outbox::notify
