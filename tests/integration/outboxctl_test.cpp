// outboxctl slot status against a real slot, with and without a relay attached.
#include "outbox/test/environment.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;

class outboxctl_slot : public relay_fixture {
 protected:
  static command_result ctl(std::vector<std::string> args) {
    args.insert(args.begin(), OUTBOX_OUTBOXCTL_BIN);
    return run_command(args, 60s);
  }
};

TEST_F(outboxctl_slot, status_shows_the_attached_relay_and_retained_wal) {
  const auto t = create_table("ob_ctl");
  start_relay(config(tables({t})));
  const auto& dsn = require_services().pg_dsn;
  const auto attached = ctl({"slot", "status", "--dsn", dsn, "--slot", m_slot});
  ASSERT_EQ(attached.exit_code, 0) << attached.output;
  EXPECT_NE(attached.output.find("slot " + m_slot + " (pgoutput, database outbox)"), std::string::npos)
      << attached.output;
  EXPECT_NE(attached.output.find("attached:            yes"), std::string::npos) << attached.output;
  EXPECT_NE(attached.output.find("outbox-relay"), std::string::npos) << attached.output;
  EXPECT_EQ(attached.output.find(std::getenv("OUTBOX_PG_PASSWORD")), std::string::npos);

  ASSERT_EQ(m_relay->stop(SIGTERM, 30s), 0);
  ASSERT_TRUE(wait_until(
      [&] { return pg_scalar("SELECT active FROM pg_replication_slots WHERE slot_name = '" + m_slot + "'") == "f"; },
      10s));
  const auto detached = ctl({"slot", "status", "--dsn", dsn, "--slot", m_slot, "--json"});
  ASSERT_EQ(detached.exit_code, 0) << detached.output;
  const auto j = nlohmann::json::parse(detached.output);
  ASSERT_EQ(j.size(), 1U);
  EXPECT_EQ(j[0]["slot"], m_slot);
  EXPECT_EQ(j[0]["relay_attached"], false);
  EXPECT_EQ(j[0]["confirmed_flush_lsn"],
            pg_scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '" + m_slot + "'"));
  EXPECT_GE(j[0]["retained_wal_bytes"].get<double>(), 0.0);
}

TEST_F(outboxctl_slot, a_missing_slot_and_bad_usage_are_reported) {
  const auto missing = ctl({"slot", "status", "--dsn", require_services().pg_dsn, "--slot", "no_such_slot_here"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("no logical replication slot named no_such_slot_here"), std::string::npos)
      << missing.output;
  EXPECT_EQ(ctl({"slot", "status"}).exit_code, 2);
  EXPECT_EQ(ctl({"slot", "frobnicate"}).exit_code, 2);
  const auto unreachable = ctl({"slot", "status", "--dsn", "host=127.0.0.1 port=1 user=x password=hunter2"});
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_NE(unreachable.output.find("cannot connect to PostgreSQL"), std::string::npos) << unreachable.output;
  EXPECT_EQ(unreachable.output.find("hunter2"), std::string::npos) << "password leaked: " << unreachable.output;
}

}  // namespace
}  // namespace outbox::test
