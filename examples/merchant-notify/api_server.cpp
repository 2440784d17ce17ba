#include "api_server.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"

#include <httplib.h>

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

api_server::api_server(status_store& store, notifier& n, const metrics::registry& registry,
                       std::function<metrics::readiness()> ready)
    : m_endpoint(registry, std::move(ready)) {
  m_endpoint.add_routes([&store, &n](httplib::Server& http) {
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
  });
}

void api_server::start(const std::string& listen) {
  try {
    m_endpoint.start(listen);
  } catch (const outbox_error& e) {
    throw outbox_error("config", e.what());  // metrics.listen is the service's API too: a config problem
  }
  log::info("merchant-notify", "serving /notifications beside /metrics, /healthz, /readyz",
            {{"port", m_endpoint.port()}});
}

}  // namespace outbox::notify
