// The deploy files as a user runs them: deploy/postgres/init.sh on an empty PostgreSQL (what the postgres image
// runs from /docker-entrypoint-initdb.d in compose.yaml and in the Kubernetes sidecar), then the HA pair of
// compose.yaml (`relay` and `relay-standby`: two relays with deploy/config/relay.yaml) as the outbox_relay role
// the script made. One leads, the other waits; the leader killed -9, the standby takes over; every event arrives.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/stream_check.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <unistd.h>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;

/// A throwaway PostgreSQL (wal_level=logical, trust on loopback) of the version under test, on a port of this
/// checkout's own (OUTBOX_PG_SCRATCH_PORT + 1), stopped when the test ends.
class scratch_postgres {
 public:
  scratch_postgres() {
    const char* bin_env = std::getenv("OUTBOX_PG_BIN");
    m_bin = std::string(bin_env != nullptr ? bin_env : "/usr/lib/postgresql/15/bin") + "/";
    const char* port_env = std::getenv("OUTBOX_PG_SCRATCH_PORT");
    m_port = std::to_string((port_env != nullptr ? std::atoi(port_env) : 15499) + 1);
    m_dir = scratch_dir("deploy_postgres");
    if (::geteuid() == 0) {
      const auto own = run_command({"/bin/chown", "postgres", m_dir}, 30s);
      if (own.exit_code != 0) throw std::runtime_error(own.output);
    }
    const auto init = as_pg({m_bin + "initdb", "-D", m_dir + "/data", "-U", "postgres", "--auth=trust"});
    if (init.exit_code != 0) throw std::runtime_error("initdb: " + init.output);
    std::ofstream(m_dir + "/data/postgresql.conf", std::ios::app)
        << "wal_level = logical\nport = " << m_port
        << "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nmax_wal_senders = 10\n"
           "max_replication_slots = 10\n";
    const auto started = as_pg({m_bin + "pg_ctl", "-D", m_dir + "/data", "-l", m_dir + "/log", "-w", "start"});
    if (started.exit_code != 0) throw std::runtime_error("pg_ctl start: " + started.output);
  }
  ~scratch_postgres() { as_pg({m_bin + "pg_ctl", "-D", m_dir + "/data", "-m", "immediate", "-w", "stop"}); }
  scratch_postgres(const scratch_postgres&) = delete;
  scratch_postgres& operator=(const scratch_postgres&) = delete;

  [[nodiscard]] const std::string& port() const { return m_port; }
  [[nodiscard]] std::string dsn(const std::string& db) const {
    return "host=127.0.0.1 port=" + m_port + " user=postgres dbname=" + db;
  }

 private:
  command_result as_pg(std::vector<std::string> argv) const {
    if (::geteuid() == 0) argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
    return run_command(argv, 120s);
  }

  std::string m_bin;
  std::string m_port;
  std::string m_dir;
};

std::string source_path(const std::string& rel) { return std::string(OUTBOX_SOURCE_DIR) + "/" + rel; }

TEST(deploy_files, init_sh_and_the_compose_relay_pair_publish_every_event_across_a_kill_9_of_the_leader) {
  require_services();
  scratch_postgres pg;

  // init.sh as the postgres image runs it: psql as the superuser, OUTBOX_PG_PASSWORD for the relay's role.
  const auto init =
      run_command({"/usr/bin/env", "PGHOST=127.0.0.1", "PGPORT=" + pg.port(), "POSTGRES_USER=postgres",
                   "OUTBOX_PG_PASSWORD=relay-secret", "/bin/bash", source_path("deploy/postgres/init.sh")},
                  120s);
  ASSERT_EQ(init.exit_code, 0) << init.output;

  // compose.yaml's environment for relay and relay-standby, pointed at this server and the test broker.
  ::setenv("OUTBOX_PG_HOST", "127.0.0.1", 1);
  ::setenv("OUTBOX_PG_PORT", pg.port().c_str(), 1);
  ::setenv("OUTBOX_PG_DATABASE", "app", 1);
  ::setenv("OUTBOX_PG_PASSWORD", "relay-secret", 1);
  ::setenv("OUTBOX_KAFKA_BROKERS", require_services().kafka_brokers.c_str(), 1);
  ::setenv("OUTBOX_METRICS_LISTEN", "127.0.0.1:0", 1);
  const std::string dir = scratch_dir("deploy_pair");
  const std::string config = source_path("deploy/config/relay.yaml");
  auto launch = [&](const std::string& name) {
    auto p = std::make_unique<child_process>(
        std::vector<std::string>{std::string(OUTBOX_RELAY_BIN), "--config", config}, dir + "/" + name + ".log");
    p->start();
    return p;
  };
  auto relay = launch("relay");
  ASSERT_TRUE(relay->wait_for_log("\"msg\":\"streaming\"", 60s)) << relay->log();
  auto standby = launch("relay-standby");
  ASSERT_TRUE(standby->wait_for_log("standby: another relay leads slot", 60s)) << standby->log();

  const std::string topic = unique_name("deploy");
  std::vector<expected_event> expected;
  pqxx::connection app(pg.dsn("app"));
  auto insert = [&](const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i) {
      char id[40];
      std::snprintf(id, sizeof id, "%08x-0000-4000-8000-%012x", static_cast<unsigned>(std::hash<std::string>{}(prefix)),
                    static_cast<unsigned>(i));
      const std::string key = "order-" + std::to_string(i % 7);
      pqxx::work w(app);
      w.exec("INSERT INTO public.outbox (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('" +
             std::string(id) + "', '" + topic + "', '" + key + "', 'order.paid', '{\"amount\": 1}')");
      w.commit();
      expected.push_back({key, id});
    }
  };
  insert("before", 20);
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 20; }, 60s)) << relay->log();

  // The leader dies; the standby (restart: unless-stopped would bring the first back as the new standby) leads.
  EXPECT_EQ(relay->stop(SIGKILL, 10s), 128 + SIGKILL);
  ASSERT_TRUE(standby->wait_for_log("\"msg\":\"streaming\"", 60s)) << standby->log();
  insert("after", 20);

  const auto records = consume_until_complete(topic, expected, 60s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok(true)) << v.detail << "\n" << standby->log();
  // The role init.sh made may do all the relay needs: no problem at start on the state table or the slot.
  EXPECT_EQ(standby->log().find("cannot add the leader_epoch column"), std::string::npos) << standby->log();
  std::cout << "[ deploy   ] init.sh + relay pair: " << expected.size() << " events, " << v.missing << " missing, "
            << v.duplicated << " extra copies after the takeover\n";
  EXPECT_EQ(standby->stop(SIGTERM, 30s), 0);
}

}  // namespace
}  // namespace outbox::test
