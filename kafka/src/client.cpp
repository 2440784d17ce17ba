#include "outbox/kafka/client.hpp"

#include "outbox/base/error.hpp"

#include <array>

namespace outbox::kafka {

log::level level_of(int syslog_level) noexcept {
  if (syslog_level <= 2) return log::level::error;
  if (syslog_level <= 4) return log::level::warn;
  if (syslog_level <= 6) return log::level::info;
  return log::level::debug;
}

conf_builder::conf_builder() : m_conf(rd_kafka_conf_new()) {}

conf_builder& conf_builder::set(std::string_view key, std::string_view value, std::string_view origin) {
  char err[512];
  const std::string k(key);
  const std::string v(value);
  if (rd_kafka_conf_set(m_conf.get(), k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    std::string why = err;
    // librdkafka's reason may quote the value: never let a password or key through.
    if (secret_property(k) && !v.empty()) {
      for (auto at = why.find(v); at != std::string::npos; at = why.find(v, at + 5)) why.replace(at, v.size(), "*****");
    }
    throw outbox_error("config", std::string(origin) + k + ": " + why);
  }
  return *this;
}

conf_builder& conf_builder::set_all(const std::vector<std::pair<std::string, std::string>>& properties,
                                    std::string_view origin, const std::function<bool(std::string_view)>& keep) {
  for (const auto& [key, value] : properties) {
    if (!keep || keep(key)) set(key, value, origin);
  }
  return *this;
}

conf_builder& conf_builder::log_lines(bool quiet) {
  if (quiet) {
    rd_kafka_conf_set_log_cb(m_conf.get(), [](const rd_kafka_t*, int, const char*, const char*) {});
  } else {
    rd_kafka_conf_set_log_cb(m_conf.get(), [](const rd_kafka_t* rk, int level, const char* facility, const char* buf) {
      // The relay asks for the gap-less guarantee on purpose; librdkafka warns about it at every start.
      const bool expected =
          std::string_view(facility) == "CONFWARN" &&
          std::string_view(buf).find("enable.gapless.guarantee is experimental") != std::string_view::npos;
      log::write(expected ? log::level::debug : level_of(level), "kafka", buf,
                 {{"facility", facility}, {"client", rd_kafka_name(rk)}});
    });
  }
  return *this;
}

client_ptr conf_builder::create(rd_kafka_type_t type, std::string_view what) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, m_conf.get(), err, sizeof err);
  if (rk == nullptr) throw outbox_error("config", "cannot create " + std::string(what) + ": " + err);
  static_cast<void>(m_conf.release());  // rd_kafka_new took it over
  return client_ptr(rk);
}

bool secret_property(std::string_view key) noexcept {
  for (const auto word : {"password", "secret", "sasl.jaas", "key.pem", "certificate.pem", "token", "credentials"}) {
    if (key.find(word) != std::string_view::npos) return true;
  }
  return false;
}

bool consumer_only_property(std::string_view key) noexcept {
  static constexpr std::array<std::string_view, 12> k_prefixes{
      "group.",     "enable.auto.", "auto.",      "session.", "partition.assignment", "max.poll", "fetch.",
      "isolation.", "heartbeat.",   "check.crcs", "queued.",  "enable.partition.eof"};
  for (const auto p : k_prefixes) {
    if (key.starts_with(p)) return true;
  }
  return false;
}

}  // namespace outbox::kafka
