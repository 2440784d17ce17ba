#pragma once

#include "outbox/metrics/registry.hpp"

#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}  // namespace httplib

namespace outbox::metrics {

/// Why the process is (not) ready, for /readyz.
struct readiness {
  bool ready = false;
  std::string reason;  ///< shown in the body: what is missing
};

/// Serves GET /metrics (text format), /healthz (process alive) and /readyz on `host:port` from its
/// own thread. Reads only atomics and the registry's guarded maps.
class http_endpoint {
 public:
  http_endpoint(const registry& metrics, std::function<readiness()> ready);
  ~http_endpoint();
  http_endpoint(const http_endpoint&) = delete;
  http_endpoint& operator=(const http_endpoint&) = delete;

  /// Adds a service's own routes to the same server (before start()), e.g. an API beside /metrics, /healthz and
  /// /readyz; `add` receives cpp-httplib's server.
  void add_routes(const std::function<void(httplib::Server&)>& add);
  /// Binds `listen` (`host:port`; port 0 picks a free one) and starts serving; throws outbox_error
  /// naming the address when it cannot bind.
  void start(const std::string& listen);
  /// The bound port.
  [[nodiscard]] int port() const { return m_port; }
  void stop();

 private:
  struct server;
  std::unique_ptr<server> m_server;
  std::thread m_thread;
  int m_port = 0;
};

}  // namespace outbox::metrics
