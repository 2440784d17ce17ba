#include "outbox/test/pg_standby.hpp"

#include "outbox/test/process.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

int first_pair_port() {
  if (const char* p = std::getenv("OUTBOX_PG_PAIR_PORT"); p != nullptr && *p != '\0') return std::atoi(p);
  return std::atoi(env_or("OUTBOX_PG_PORT", "15432").c_str()) + 40;
}

}  // namespace

pg_standby_pair::pg_standby_pair(int major, int index) : m_major(major), m_port(first_pair_port() + 2 * index) {
  if (index < 0 || index > 4) throw std::invalid_argument("pg_standby_pair: index must be 0-4");
  const std::string base = env_or("OUTBOX_RUN_DIR", std::filesystem::temp_directory_path() / "outbox-tests");
  m_run_dir = base + "/pairs/" + std::to_string(m_port);
}

pg_standby_pair::~pg_standby_pair() {
  try {
    if (m_started) stop();
  } catch (...) {  // a destructor must not throw; the next start() cleans up again
  }
}

std::string pg_standby_pair::dsn(int port) const {
  return "host=127.0.0.1 port=" + std::to_string(port) +
         " user=postgres password=" + env_or("OUTBOX_PG_PASSWORD", "outbox-local") + " dbname=outbox";
}

void pg_standby_pair::services(const std::vector<std::string>& args) const {
  const std::string v = std::to_string(m_major);
  std::vector<std::string> argv{"/usr/bin/env",
                                "OUTBOX_RUN_DIR=" + m_run_dir,
                                "OUTBOX_PG_VERSION=" + v,
                                "OUTBOX_PG" + v + "_PORT=" + std::to_string(primary_port()),
                                "OUTBOX_PG" + v + "_STANDBY_PORT=" + std::to_string(standby_port()),
                                "/bin/bash",
                                OUTBOX_SERVICES_SCRIPT_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto r = run_command(argv, 180s);
  if (r.exit_code != 0) {
    std::string cmd;
    for (const auto& a : args) cmd += " " + a;
    throw std::runtime_error("scripts/services.sh" + cmd + " (PostgreSQL " + v + ", ports " +
                             std::to_string(primary_port()) + "/" + std::to_string(standby_port()) + ") exited " +
                             std::to_string(r.exit_code) + ":\n" + r.output);
  }
}

void pg_standby_pair::start() {
  services({"stop", "postgres"});  // whatever an interrupted run of this pair left behind
  std::filesystem::remove_all(m_run_dir);
  std::filesystem::create_directories(m_run_dir);
  m_started = true;
  services({"start", "postgres"});
  services({"start-standby"});
}

void pg_standby_pair::promote() { services({"promote-standby"}); }

void pg_standby_pair::crash_primary() { services({"crash-primary"}); }

void pg_standby_pair::stop() {
  services({"stop", "postgres"});
  m_started = false;
}

}  // namespace outbox::test
