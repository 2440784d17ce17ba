#include "merchants.hpp"

namespace outbox::notify {

const std::vector<config::key_spec>& notify_section() {
  using namespace config;
  static const std::vector<key_spec> keys = {
      section(
          "notify",
          {string_key("dsn").required().describe(
               "PostgreSQL database of the status table; the inbox lives there too (same text as dedupe.dsn)"),
           string_key("table").defaults("merchant_notifications").describe("The status table (see schema.sql)"),
           duration_key("connect_timeout").defaults("2s").describe("TCP and TLS connect timeout of one request"),
           duration_key("request_timeout").defaults("5s").describe("Whole-request timeout; past it, retry"),
           int_key("breaker_failures")
               .defaults("5")
               .between(1, 1000)
               .describe("Consecutive failed attempts that open a merchant's circuit"),
           duration_key("breaker_cooldown")
               .defaults("30s")
               .describe("How long an open circuit sends nothing (attempts retry without a request)"),
           int_key("max_in_flight").defaults("4").between(1, 1000).describe("Requests to one merchant at a time"),
           string_key("expected_body").defaults("SUCCESS").describe("Default body of a 2xx that means accepted"),
           object_list_key(
               "merchants",
               {string_key("id").required().describe("The merchant id of the payment events (the record key)"),
                string_key("url").required().describe("Where notifications are POSTed"),
                string_key("key").required().secret().describe("HMAC-SHA256 signing key shared with the merchant"),
                string_key("expected_body").optional().describe("This merchant's success body"),
                duration_list_key("schedule")
                    .optional()
                    .describe(
                        "This merchant's delays after each failure; each maps onto the first remaining retry.topics "
                        "tier at least that long, and the list's end dead-letters")})
               .required()
               .describe("The merchants notified")})
          .describe("merchant-notify: the status table, HTTP timeouts, per-merchant isolation and the merchants")};
  return keys;
}

notify_settings settings_from(const config::values& tree) {
  notify_settings s;
  s.dsn = tree.get<std::string>("notify.dsn");
  s.table = tree.get<std::string>("notify.table");
  s.connect_timeout = tree.get<std::chrono::milliseconds>("notify.connect_timeout");
  s.request_timeout = tree.get<std::chrono::milliseconds>("notify.request_timeout");
  s.breaker_failures = static_cast<int>(tree.get<std::int64_t>("notify.breaker_failures"));
  s.breaker_cooldown = tree.get<std::chrono::milliseconds>("notify.breaker_cooldown");
  s.max_in_flight = static_cast<int>(tree.get<std::int64_t>("notify.max_in_flight"));
  const auto& default_body = tree.get<std::string>("notify.expected_body");
  for (const auto& item : tree.get<std::vector<config::values>>("notify.merchants")) {
    merchant m;
    m.id = item.get<std::string>("id");
    m.url = item.get<std::string>("url");
    m.key = item.get<std::string>("key");
    const auto* body = item.find<std::string>("expected_body");
    m.expected_body = body != nullptr ? *body : default_body;
    if (const auto* schedule = item.find<std::vector<std::chrono::milliseconds>>("schedule")) m.schedule = *schedule;
    s.merchants.emplace(m.id, std::move(m));
  }
  return s;
}

}  // namespace outbox::notify
