#include "api_server.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>

namespace outbox::notify {
namespace {

constexpr int k_default_limit = 100;
constexpr int k_max_limit = 1000;

void reply(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  res.set_content(body.dump() + "\n", "application/json");
}

/// Runs `fn`, answering 503 when the status table cannot be reached.
template <typename Fn>
void guarded(httplib::Response& res, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    reply(res, 503, {{"error", std::string("status table unavailable: ") + e.what()}});
  }
}

}  // namespace

struct api_server::server {
  httplib::Server http;
  std::atomic<bool> finished{false};
};

api_server::api_server(status_store& store, notifier& n, const metrics::registry& registry,
                       std::function<metrics::readiness()> ready)
    : m_server(std::make_unique<server>()) {
  auto& http = m_server->http;
  // httplib's default adds SO_REUSEPORT, which would let a second process share the port silently.
  http.set_socket_options([](int sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  http.Get(R"(/notifications/([^/]+))", [&store](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      const auto row = store.find(req.matches[1]);
      if (!row) return reply(res, 404, {{"error", "no notification with event_id " + std::string(req.matches[1])}});
      reply(res, 200, *row);
    });
  });
  http.Get("/notifications", [&store](const httplib::Request& req, httplib::Response& res) {
    int limit = k_default_limit;
    if (req.has_param("limit")) {
      try {
        limit = std::stoi(req.get_param_value("limit"));
      } catch (const std::exception&) {
        limit = 0;
      }
      if (limit < 1 || limit > k_max_limit) {
        return reply(res, 400, {{"error", "limit must be 1 to " + std::to_string(k_max_limit)}});
      }
    }
    const std::string status = req.get_param_value("status");
    if (!status.empty() && status != "pending" && status != "delivering" && status != "delivered" &&
        status != "failed") {
      return reply(res, 400, {{"error", "status must be pending, delivering, delivered or failed"}});
    }
    guarded(res, [&] {
      reply(res, 200, {{"notifications", store.list(req.get_param_value("merchant"), status, limit)}});
    });
  });
  http.Post(R"(/notifications/([^/]+)/resend)", [&n](const httplib::Request& req, httplib::Response& res) {
    guarded(res, [&] {
      const resend_result r = n.resend(req.matches[1]);
      reply(res, r.http_code, r.body);
    });
  });
  http.Get("/metrics", [&registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  http.Get("/readyz", [ready = std::move(ready)](const httplib::Request&, httplib::Response& res) {
    const metrics::readiness r = ready();
    res.status = r.ready ? 200 : 503;
    res.set_content(r.ready ? std::string("ready\n") : "not ready: " + r.reason + "\n", "text/plain");
  });
}

api_server::~api_server() { stop(); }

void api_server::start(const std::string& listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos) throw outbox_error("config", "metrics.listen: expected host:port, got " + listen);
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const int port = std::stoi(listen.substr(colon + 1));
  m_port = port == 0 ? m_server->http.bind_to_any_port(host) : (m_server->http.bind_to_port(host, port) ? port : -1);
  if (m_port <= 0) {
    throw outbox_error("config", "cannot listen on " + listen + " (metrics.listen): address in use or not local");
  }
  m_thread = std::thread([this] {
    m_server->http.listen_after_bind();
    m_server->finished = true;
  });
  log::info("merchant-notify", "serving /notifications, /metrics, /healthz, /readyz",
            {{"listen", host + ":" + std::to_string(m_port)}});
}

void api_server::stop() {
  if (!m_thread.joinable()) return;
  // httplib's stop() does nothing until the accept loop runs; a stop right after start() must retry.
  while (!m_server->finished) {
    if (m_server->http.is_running()) {
      m_server->http.stop();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  m_thread.join();
}

}  // namespace outbox::notify
