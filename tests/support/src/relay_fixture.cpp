#include "outbox/test/relay_fixture.hpp"

#include "outbox/test/postgres.hpp"

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include <httplib.h>

namespace outbox::test {

using namespace std::chrono_literals;

#ifdef OUTBOX_SANITIZED
constexpr bool k_sanitized = true;
#else
constexpr bool k_sanitized = false;
#endif

std::string relay_fixture::relay_binary() { return OUTBOX_RELAY_BIN; }

void relay_fixture::SetUp() {
  require_services();
  m_dir = scratch_dir("relay");
  m_slot = unique_name("slot");
  m_publication = unique_name("pub");
  pg_drop_slot(m_slot);
  pg_exec("DROP PUBLICATION IF EXISTS " + m_publication);
}

void relay_fixture::TearDown() {
  if (m_relay && m_relay->running()) {
    // In a sanitizer build the relay gets a clean stop, so that its shutdown runs instrumented and LeakSanitizer
    // checks it at exit; elsewhere the kill is quicker.
    if (!k_sanitized || m_relay->stop(SIGTERM, 30s) == -1) m_relay->stop(SIGKILL, 10s);
  }
  if (HasFailure() && m_relay) {
    std::cerr << "---- relay log (" << m_dir << ") ----\n" << m_relay->log().substr(0, 20000) << "\n";
  }
  m_relay.reset();
  pg_drop_slot(m_slot);
  pg_exec("DROP PUBLICATION IF EXISTS " + m_publication);
  for (const auto& t : m_tables) pg_exec("DROP TABLE IF EXISTS " + t + " CASCADE");
  pg_exec(
      "DO $$ BEGIN IF to_regclass('public.outbox_relay_state') IS NOT NULL THEN "
      "DELETE FROM public.outbox_relay_state WHERE slot_name = '" +
      m_slot + "'; END IF; END $$");
}

std::string relay_fixture::create_table(std::string_view prefix, std::string_view columns) {
  const std::string name = unique_name(prefix);
  pg_exec("DROP TABLE IF EXISTS " + name);
  pg_exec("CREATE TABLE " + name + " (" + std::string(columns) + ")");
  m_tables.push_back(name);
  return name;
}

std::string relay_fixture::tables(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += "    - name: public." + n + "\n";
  return out;
}

std::string relay_fixture::config(std::string_view tables_yaml, std::string_view source_extra,
                                  std::string_view top_extra, std::string_view sink_extra) const {
  std::string y = "source:\n  dsn: ${OUTBOX_PG_DSN}\n  slot: " + m_slot + "\n  publication: " + m_publication + "\n";
  if (!tables_yaml.empty()) y += "  tables:\n" + std::string(tables_yaml);
  y += source_extra;
  y += "sink:\n  brokers: ${OUTBOX_KAFKA_BROKERS}\n";
  y += sink_extra;
  y += "relay:\n  status_interval: 200ms\n  shutdown_timeout: 20s\n";
  const char* level = std::getenv("OUTBOX_TEST_RELAY_LOG_LEVEL");  // e.g. debug, when chasing a failure
  y += "log:\n  level: " + std::string(level != nullptr && *level != '\0' ? level : "info") + "\n";
  y += "metrics:\n  listen: 127.0.0.1:0\n";  // any free port: tests never collide on 9187
  y += top_extra;
  return y;
}

std::string relay_fixture::write_config(std::string_view yaml) {
  m_config_path = m_dir + "/relay.yaml";
  std::ofstream(m_config_path) << yaml;
  return m_config_path;
}

child_process& relay_fixture::launch_relay(std::string_view yaml, const std::vector<std::string>& args) {
  write_config(yaml);
  m_args = args;
  std::vector<std::string> argv{relay_binary(), "--config", m_config_path};
  argv.insert(argv.end(), args.begin(), args.end());
  m_relay = std::make_unique<child_process>(argv, m_dir + "/relay.log");
  m_relay->start();
  return *m_relay;
}

child_process& relay_fixture::start_relay(std::string_view yaml, const std::vector<std::string>& args) {
  launch_relay(yaml, args);
  if (!m_relay->wait_for_log("\"msg\":\"streaming\"", 60s)) {
    ADD_FAILURE() << "the relay did not start streaming within 60 s; log:\n" << m_relay->log();
  }
  return *m_relay;
}

void relay_fixture::restart_relay(std::optional<std::vector<std::string>> args) {
  if (args) {
    const std::string log_before = m_relay ? m_relay->log() : std::string();
    std::vector<std::string> argv{relay_binary(), "--config", m_config_path};
    argv.insert(argv.end(), args->begin(), args->end());
    m_args = *args;
    m_relay = std::make_unique<child_process>(argv, m_dir + "/relay.log");
  }
  const std::size_t streams_before = [&] {
    const std::string log = m_relay->log();
    std::size_t n = 0;
    for (std::size_t at = log.find("\"msg\":\"streaming\""); at != std::string::npos;
         at = log.find("\"msg\":\"streaming\"", at + 1))
      ++n;
    return n;
  }();
  m_relay->start();
  const bool streaming = wait_until(
      [&] {
        const std::string log = m_relay->log();
        std::size_t n = 0;
        for (std::size_t at = log.find("\"msg\":\"streaming\""); at != std::string::npos;
             at = log.find("\"msg\":\"streaming\"", at + 1))
          ++n;
        return n > streams_before || !m_relay->running();
      },
      60s, 50ms);
  if (!streaming || !m_relay->running()) {
    ADD_FAILURE() << "the relay did not start streaming again within 60 s; log:\n" << m_relay->log();
  }
}

std::pair<int, std::string> relay_fixture::http_get(const std::string& path) const {
  const int port = metrics_port();
  if (port == 0) return {0, {}};
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  client.set_read_timeout(5);
  auto res = client.Get(path.c_str());
  if (!res) return {0, {}};
  return {res->status, res->body};
}

std::optional<double> relay_fixture::metric(const std::string& series) const {
  const auto [status, body] = http_get("/metrics");
  if (status != 200) return std::nullopt;
  const std::string needle = series + " ";
  for (std::size_t at = 0; at < body.size();) {
    const std::size_t end = std::min(body.find('\n', at), body.size());
    const std::string_view line(body.data() + at, end - at);
    if (line.starts_with(needle)) return std::stod(std::string(line.substr(needle.size())));
    at = end + 1;
  }
  return std::nullopt;
}

int relay_fixture::metrics_port() const {
  const std::string log = m_relay->log();
  const std::string marker = "\"listen\":\"127.0.0.1:";
  const auto at = log.rfind(marker);  // the latest start's port
  return at == std::string::npos ? 0 : std::stoi(log.substr(at + marker.size()));
}

}  // namespace outbox::test
