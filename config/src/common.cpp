#include "common.hpp"

#include "validators.hpp"

namespace outbox::config::detail {

key_spec metrics_section(std::string default_listen) {
  return section("metrics", {string_key("listen")
                                 .defaults(std::move(default_listen))
                                 .check(listen_address())
                                 .describe("`host:port` serving `GET /metrics`, `/healthz` and `/readyz`")})
      .describe("Prometheus endpoint");
}

key_spec log_section() {
  return section("log", {enum_key("level", {"trace", "debug", "info", "warn", "error"})
                             .defaults("info")
                             .describe("Lowest level written to stderr"),
                         enum_key("format", {"json", "text"})
                             .defaults("json")
                             .describe("One JSON object per line, or text for people")})
      .describe("Log lines on stderr");
}

std::vector<std::string> kafka_secret_properties() {
  return {"*password*",     "*secret*",      "ssl.key.*",          "ssl_key",
          "ssl.keystore.*", "sasl.password", "sasl.oauthbearer.*", "sasl.kerberos.keytab"};
}

metrics_config read_metrics(const values& v) { return metrics_config{v.get<std::string>("metrics.listen")}; }

log_config read_log(const values& v) {
  log_config out;
  out.level = outbox::log::parse_level(v.get<std::string>("log.level")).value_or(outbox::log::level::info);
  out.format = v.get<std::string>("log.format") == "text" ? outbox::log::format::text : outbox::log::format::json;
  return out;
}

}  // namespace outbox::config::detail
