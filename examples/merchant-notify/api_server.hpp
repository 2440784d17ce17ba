#pragma once
// The HTTP API on `metrics.listen`: the status of notifications, manual resend, /metrics, /healthz, /readyz.

#include "notifier.hpp"
#include "status_store.hpp"

#include "outbox/metrics/http_endpoint.hpp"
#include "outbox/metrics/registry.hpp"

#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace outbox::notify {

/// Serves from its own threads (cpp-httplib's pool); reads the status table through `store`.
class api_server {
 public:
  api_server(status_store& store, notifier& n, const metrics::registry& registry,
             std::function<metrics::readiness()> ready);
  ~api_server();
  api_server(const api_server&) = delete;
  api_server& operator=(const api_server&) = delete;

  /// Binds `host:port` (port 0 picks one) and serves; throws outbox_error naming the address when it cannot.
  void start(const std::string& listen);
  [[nodiscard]] int port() const { return m_port; }
  void stop();

 private:
  struct server;
  std::unique_ptr<server> m_server;
  std::thread m_thread;
  int m_port = 0;
};

}  // namespace outbox::notify
