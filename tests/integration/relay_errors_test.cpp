// Bad config and bad environments: the exit code and message SPEC §4 promises.
#include "outbox/test/environment.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;

class relay_errors : public relay_fixture {
 protected:
  command_result run_relay(std::string_view yaml, bool check) {
    write_config(yaml);
    std::vector<std::string> argv{relay_binary(), "--config", m_config_path};
    if (check) argv.emplace_back("--check");
    return run_command(argv, 90s);
  }
};

TEST_F(relay_errors, bad_config_exits_2_naming_key_and_line) {
  const auto r = run_relay("source:\n  dsn: x\n  tabels: []\nsink:\n  delivery: exactly_twice\n", false);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find(":3:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tabels"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("tables"), std::string::npos) << "expected a did-you-mean: " << r.output;
  EXPECT_NE(r.output.find("exactly_twice"), std::string::npos) << r.output;
}

TEST_F(relay_errors, bad_usage_exits_2) {
  EXPECT_EQ(run_command({relay_binary(), "--frobnicate"}, 30s).exit_code, 2);
  EXPECT_EQ(run_command({relay_binary()}, 30s).exit_code, 2);
  const auto v = run_command({relay_binary(), "--version"}, 30s);
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.output.find("outbox-relay"), std::string::npos);
}

TEST_F(relay_errors, missing_table_exits_1_naming_it) {
  const auto missing = unique_name("no_such_table");
  const auto r = run_relay(config(tables({missing})), false);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("public." + missing), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
}

TEST_F(relay_errors, role_without_replication_is_told_the_fix) {
  const auto t = create_table("ob_norepl");
  const auto role = unique_name("norepl");
  pg_exec("DROP ROLE IF EXISTS " + role);
  pg_exec("CREATE ROLE " + role + " LOGIN PASSWORD 'pw-" + role + "'");
  pg_exec("GRANT SELECT ON " + t + " TO " + role);
  const auto& s = require_services();
  const std::string dsn = "host=127.0.0.1 port=" + std::string(std::getenv("OUTBOX_PG_PORT")) +
                          " dbname=outbox user=" + role + " password=pw-" + role;
  std::string yaml = config(tables({t}));
  yaml.replace(yaml.find("${OUTBOX_PG_DSN}"), 16, "\"" + dsn + "\"");
  const auto r = run_relay(yaml, false);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("ALTER ROLE " + role + " WITH REPLICATION"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("pw-" + role), std::string::npos) << "password leaked: " << r.output;
  const auto c = run_relay(yaml, true);
  EXPECT_EQ(c.exit_code, 1) << c.output;
  EXPECT_NE(c.output.find("REPLICATION"), std::string::npos) << c.output;
  EXPECT_EQ(c.output.find("pw-" + role), std::string::npos) << "password leaked: " << c.output;
  static_cast<void>(s);
  pg_exec("DROP OWNED BY " + role);
  pg_exec("DROP ROLE " + role);
}

TEST_F(relay_errors, check_reports_an_unreachable_broker) {
  const auto t = create_table("ob_nobroker");
  std::string yaml = config(tables({t}));
  yaml.replace(yaml.find("${OUTBOX_KAFKA_BROKERS}"), 23, "127.0.0.1:1");
  const auto r = run_relay(yaml, true);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("kafka: 127.0.0.1:1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("PROBLEM: cannot reach the Kafka brokers"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("wal_level: logical"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(std::getenv("OUTBOX_PG_PASSWORD")), std::string::npos) << "password leaked: " << r.output;
}

TEST_F(relay_errors, check_passes_on_a_good_setup_without_creating_anything) {
  const auto t = create_table("ob_check");
  const auto r = run_relay(config(tables({t})), true);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("check: ok"), std::string::npos) << r.output;
  const char* major = std::getenv("OUTBOX_PG_VERSION");  // the server under test (compat runs 14-18)
  EXPECT_NE(r.output.find("PostgreSQL " + std::string(major != nullptr ? major : "15")), std::string::npos) << r.output;
  EXPECT_EQ(pg_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + m_slot + "'"), "0");
}

/// A second, throwaway PostgreSQL with wal_level=replica, started by the test itself.
TEST_F(relay_errors, wal_level_replica_is_refused_with_the_fix) {
  const char* bin_env = std::getenv("OUTBOX_PG_BIN");  // the version under test
  const std::string bin = std::string(bin_env != nullptr ? bin_env : "/usr/lib/postgresql/15/bin") + "/";
  const char* port_env = std::getenv("OUTBOX_PG_SCRATCH_PORT");  // a port of this checkout's own
  const std::string port = port_env != nullptr ? port_env : "15499";
  const std::string dir = scratch_dir("pg_replica");
  const bool root = ::geteuid() == 0;
  auto as_pg = [&](std::vector<std::string> argv) {
    if (root) argv.insert(argv.begin(), {"/usr/sbin/runuser", "-u", "postgres", "--"});
    return run_command(argv, 120s);
  };
  if (root) {
    ASSERT_EQ(std::system(("chown postgres " + dir).c_str()), 0);
  }
  ASSERT_EQ(as_pg({bin + "initdb", "-D", dir + "/data", "-U", "postgres", "--auth=trust"}).exit_code, 0);
  std::ofstream(dir + "/data/postgresql.conf", std::ios::app)
      << "wal_level = replica\nport = " << port << "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n";
  const auto started = as_pg({bin + "pg_ctl", "-D", dir + "/data", "-l", dir + "/log", "-w", "start"});
  ASSERT_EQ(started.exit_code, 0) << started.output;
  std::string yaml = config("", "  logical_messages: {prefix: x}\n");
  yaml.replace(yaml.find("${OUTBOX_PG_DSN}"), 16, "\"host=127.0.0.1 port=" + port + " user=postgres dbname=postgres\"");
  const auto r = run_relay(yaml, false);
  as_pg({bin + "pg_ctl", "-D", dir + "/data", "-m", "immediate", "-w", "stop"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("wal_level is 'replica'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("wal_level = logical"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace outbox::test
