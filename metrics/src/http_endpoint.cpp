#include "outbox/metrics/http_endpoint.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"

#include <httplib.h>
#include <atomic>
#include <chrono>
#include <thread>
#include <sys/socket.h>

namespace outbox::metrics {

struct http_endpoint::server {
  httplib::Server http;
  std::atomic<bool> finished{false};
};

http_endpoint::http_endpoint(const registry& metrics, std::function<readiness()> ready)
    : m_server(std::make_unique<server>()) {
  // httplib's default adds SO_REUSEPORT, which would let a second process share the port silently.
  m_server->http.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  m_server->http.Get("/metrics", [&metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  m_server->http.Get("/healthz",
                     [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  m_server->http.Get("/readyz", [ready = std::move(ready)](const httplib::Request&, httplib::Response& res) {
    const readiness r = ready();
    res.status = r.ready ? 200 : 503;
    res.set_content(r.ready ? (r.reason.empty() ? std::string("ready\n") : "ready: " + r.reason + "\n")
                            : "not ready: " + r.reason + "\n",
                    "text/plain");
  });
}

http_endpoint::~http_endpoint() { stop(); }

void http_endpoint::add_routes(const std::function<void(httplib::Server&)>& add) { add(m_server->http); }

void http_endpoint::start(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw outbox_error("config", "metrics.listen: expected host:port, got " + listen);
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const int port = std::stoi(listen.substr(colon + 1));
  m_port = port == 0 ? m_server->http.bind_to_any_port(host) : (m_server->http.bind_to_port(host, port) ? port : -1);
  if (m_port <= 0) {
    throw outbox_error("metrics", "cannot listen on " + listen + " (metrics.listen): address in use or not local");
  }
  m_thread = std::thread([this] {
    m_server->http.listen_after_bind();
    m_server->finished = true;
  });
  log::info("metrics", "serving /metrics, /healthz, /readyz", {{"listen", host + ":" + std::to_string(m_port)}});
}

void http_endpoint::stop() {
  if (!m_thread.joinable()) return;
  // httplib's stop() does nothing until the accept loop has marked itself running, so a stop that
  // comes right after start() would be lost and join() would wait forever. Retry until it lands.
  while (!m_server->finished) {
    if (m_server->http.is_running()) {
      m_server->http.stop();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  m_thread.join();
}

}  // namespace outbox::metrics
