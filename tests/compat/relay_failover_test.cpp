// outbox-relay through a PostgreSQL failover on 17: a primary and a streaming standby that syncs failover slots,
// the relay on a multi-host DSN (target_session_attrs=read-write) with the failover slot it made. The primary
// crashes mid-stream and the standby is promoted: the relay follows the synchronized slot to the new primary and
// timeline, and every row the surviving database holds, before and after the promotion, is in Kafka.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/pg_standby.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"
#include "outbox/test/stream_check.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

std::string scalar(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  const auto r = tx.exec(sql);
  return r.empty() || r[0][0].is_null() ? std::string() : r[0][0].as<std::string>();
}

void exec(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  tx.exec(sql);
}

/// `n` rows in transactions of 5, keys k0..k9, ids from `prefix`.
void insert(const std::string& dsn, const std::string& table, const std::string& topic, const std::string& prefix,
            int n) {
  pqxx::connection c(dsn);
  for (int i = 0; i < n; i += 5) {
    std::string sql = "INSERT INTO " + table + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ";
    for (int j = i; j < std::min(n, i + 5); ++j) {
      char id[40];
      std::snprintf(id, sizeof id, "%08x-0000-4000-8000-%012x", static_cast<unsigned>(std::hash<std::string>{}(prefix)),
                    static_cast<unsigned>(j));
      sql += (j > i ? ", ('" : "('") + std::string(id) + "', '" + topic + "', 'k" + std::to_string(j % 10) +
             "', 'e', '{}')";
    }
    pqxx::work w(c);
    w.exec(sql);
    w.commit();
  }
}

/// A relay config in `dir` whose DSN lists both servers of `pair` (target_session_attrs=read-write, so it follows a
/// promotion), quick to notice a lost server; `extra_sink` is added to `sink:`. Returns the file's path.
std::string failover_config(const pg_standby_pair& pair, const std::string& dir, const std::string& table,
                            const std::string& slot, const std::string& extra_sink) {
  const char* password = std::getenv("OUTBOX_PG_PASSWORD");
  const std::string dsn = "host=127.0.0.1,127.0.0.1 port=" + std::to_string(pair.primary_port()) + "," +
                          std::to_string(pair.standby_port()) +
                          " user=postgres password=" + (password != nullptr ? password : "outbox-local") +
                          " dbname=outbox target_session_attrs=read-write";
  const std::string config = dir + "/relay.yaml";
  std::ofstream(config) << "source:\n  dsn: \"" << dsn << "\"\n  slot: " << slot
                        << "\n  publication: " << unique_name("pub_failover") << "\n  tables:\n    - name: public."
                        << table << "\n  connect_timeout: 2s\n  stream_timeout: 5s\nsink:\n  brokers: "
                        << require_services().kafka_brokers << extra_sink
                        << "\nrelay:\n  status_interval: 200ms\nmetrics:\n  listen: 127.0.0.1:0\n";
  return config;
}

/// The failover of the tests below, with the relay at_least_once (`exactly_once` false: copies allowed) or
/// exactly_once (no copy for a read_committed consumer either).
void fail_over_mid_stream(bool exactly_once) {
  require_services();
  pg_standby_pair pair(17, exactly_once ? 2 : 1);
  pair.start();
  const auto primary = pair.primary_dsn();
  const auto standby = pair.standby_dsn();
  const std::string table = unique_name("ob_failover");
  const std::string topic = unique_name("failover");
  const std::string slot = unique_name("slot_failover");
  exec(primary, "CREATE TABLE " + table + " (" + std::string(k_outbox_columns) + ")");

  const std::string dir = scratch_dir("relay_failover");
  const std::string config = failover_config(
      pair, dir, table, slot,
      exactly_once ? "\n  delivery: exactly_once\n  checkpoint_topic: " + unique_name("checkpoints") : "");
  child_process relay({OUTBOX_RELAY_BIN, "--config", config}, dir + "/relay.log");
  relay.start();
  ASSERT_TRUE(relay.wait_for_log("\"msg\":\"streaming\"", 60s)) << relay.log();
  EXPECT_EQ(scalar(primary, "SELECT failover FROM pg_replication_slots WHERE slot_name = '" + slot + "'"), "t");
  EXPECT_THAT(relay.log(), ::testing::Not(HasSubstr("synchronized_standby_slots is empty")))
      << "the primary names the standby's slot";

  insert(primary, table, topic, "before", 50);
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 50; }, 60s)) << relay.log();
  // The standby's copy of the slot persists once the relay moved the primary's copy along.
  ASSERT_TRUE(wait_until(
      [&] {
        exec(primary, "SELECT pg_logical_emit_message(false, 'failover-test', 'x')");
        return scalar(standby,
                      "SELECT coalesce(bool_and(synced AND NOT temporary), false)::text FROM pg_replication_slots "
                      "WHERE slot_name = '" +
                          slot + "'") == "true";
      },
      120s, 500ms))
      << "slot not synced to the standby; logs in " << pair.run_dir();

  insert(primary, table, topic, "during", 50);
  pair.crash_primary();
  pair.promote();
  insert(standby, table, topic, "after", 50);

  // Every row the surviving database holds, in its commit order per key.
  const auto expected = expected_rows(standby, table);
  EXPECT_GE(expected.size(), 100U);
  const auto records = consume_until_complete(topic, expected, 120s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok(!exactly_once)) << v.detail << "\n" << relay.log();
  std::cout << "[ failover ] " << (exactly_once ? "exactly_once: " : "") << expected.size()
            << " rows on the promoted standby, " << v.duplicated << " extra copies\n";
  EXPECT_THAT(relay.log(), HasSubstr("followed failover slot " + slot + " to timeline 2"));
  EXPECT_TRUE(relay.running()) << relay.log();
  EXPECT_EQ(relay.stop(SIGTERM, 30s), 0);
  pair.stop();
}

TEST(relay_failover, follows_the_failover_slot_to_the_promoted_standby_on_postgresql_17) {
  fail_over_mid_stream(false);
}

TEST(relay_failover, in_exactly_once_mode_follows_the_promotion_with_no_duplicate_for_read_committed_consumers) {
  fail_over_mid_stream(true);
}

TEST(relay_failover, before_postgresql_17_the_promoted_standby_has_no_slot_and_the_relay_stops_until_recreate_slot) {
  require_services();
  pg_standby_pair pair(16, 3);
  pair.start();
  const auto primary = pair.primary_dsn();
  const auto standby = pair.standby_dsn();
  const std::string table = unique_name("ob_failover16");
  const std::string topic = unique_name("failover16");
  const std::string slot = unique_name("slot_failover16");
  exec(primary, "CREATE TABLE " + table + " (" + std::string(k_outbox_columns) + ")");
  const std::string dir = scratch_dir("relay_failover16");
  const std::string config = failover_config(pair, dir, table, slot, "");
  child_process relay({OUTBOX_RELAY_BIN, "--config", config}, dir + "/relay.log");
  relay.start();
  ASSERT_TRUE(relay.wait_for_log("\"msg\":\"streaming\"", 60s)) << relay.log();
  insert(primary, table, topic, "before", 50);
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 50; }, 60s)) << relay.log();

  // Logical slots are not copied to a physical standby before 17: the promoted server has the state table (it is
  // replicated with the database) but not the slot. The relay follows the DSN to it and refuses to make a new
  // slot, which would skip what the old primary committed after the slot's last confirmed LSN.
  pair.crash_primary();
  pair.promote();
  insert(standby, table, topic, "after", 50);
  // Running, it halts (up, not ready, outbox_relay_halted 1) and exits 1 when stopped.
  ASSERT_TRUE(relay.wait_for_log("halted; waiting for an operator", 120s)) << relay.log();
  EXPECT_THAT(relay.log(), HasSubstr("replication slot " + slot + " is gone"));
  EXPECT_THAT(relay.log(), HasSubstr("--recreate-slot"));
  EXPECT_EQ(relay.stop(SIGTERM, 30s), 1) << relay.log();

  // The way out the message names: --recreate-slot makes a slot and publishes what the table holds first.
  child_process again({OUTBOX_RELAY_BIN, "--config", config, "--recreate-slot"}, dir + "/relay-again.log");
  again.start();
  ASSERT_TRUE(again.wait_for_log("\"msg\":\"streaming\"", 60s)) << again.log();
  const auto expected = expected_rows(standby, table);
  EXPECT_EQ(expected.size(), 100U);
  const auto records = consume_until_complete(topic, expected, 120s);
  const auto v = check_stream(records, expected);
  EXPECT_EQ(v.missing, 0U) << v.detail << "\n" << again.log();
  std::cout << "[ failover ] PostgreSQL 16: " << expected.size() << " rows on the promoted standby, all in Kafka after "
            << "--recreate-slot, " << v.duplicated << " published again by its backfill\n";
  EXPECT_EQ(again.stop(SIGTERM, 30s), 0);
  pair.stop();
}

}  // namespace
}  // namespace outbox::test
