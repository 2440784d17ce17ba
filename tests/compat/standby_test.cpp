// The primary/standby infrastructure a failover test stands on, on every PostgreSQL version:
// a row written on the primary reaches the standby, the promoted standby takes writes, and on 17+
// a failover logical slot is synced to the standby and usable after promotion.
#include "outbox/test/environment.hpp"
#include "outbox/test/pg_standby.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <string>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;

std::string scalar(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  const auto r = tx.exec1(sql);
  return r[0].is_null() ? std::string() : r[0].c_str();
}

void exec(const std::string& dsn, const std::string& sql) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  tx.exec(sql);
}

class standby : public ::testing::TestWithParam<int> {};

TEST_P(standby, streams_rows_and_takes_writes_once_promoted) {
  pg_standby_pair pair(GetParam());
  pair.start();
  const auto primary = pair.primary_dsn();
  const auto replica = pair.standby_dsn();
  EXPECT_EQ(scalar(primary, "SHOW server_version_num").substr(0, 2), std::to_string(GetParam()));
  EXPECT_EQ(scalar(replica, "SELECT pg_is_in_recovery()"), "t");
  EXPECT_EQ(scalar(replica, "SHOW hot_standby_feedback"), "on");
  EXPECT_EQ(scalar(primary, "SELECT active FROM pg_replication_slots WHERE slot_name = '" +
                                pg_standby_pair::standby_slot() + "' AND slot_type = 'physical'"),
            "t");

  const std::string table = unique_name("standby_rows");
  exec(primary, "CREATE TABLE " + table + " (id int PRIMARY KEY, v text NOT NULL)");
  exec(primary, "INSERT INTO " + table + " VALUES (1, 'written on the primary')");
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          return scalar(replica, "SELECT v FROM " + table + " WHERE id = 1") == "written on the primary";
        } catch (const pqxx::sql_error&) {
          return false;  // the table itself has not been replayed yet
        }
      },
      30s, 100ms))
      << "the row never reached the standby";
  EXPECT_THROW(exec(replica, "INSERT INTO " + table + " VALUES (2, 'x')"), pqxx::sql_error) << "a standby is read-only";

  pair.promote();
  EXPECT_EQ(scalar(replica, "SELECT pg_is_in_recovery()"), "f");
  exec(replica, "INSERT INTO " + table + " VALUES (2, 'written after promotion')");
  EXPECT_EQ(scalar(replica, "SELECT string_agg(v, ',' ORDER BY id) FROM " + table),
            "written on the primary,written after promotion");
  pair.stop();
}

INSTANTIATE_TEST_SUITE_P(postgresql, standby, ::testing::Values(14, 15, 16, 17, 18),
                         [](const ::testing::TestParamInfo<int>& p) { return std::to_string(p.param); });

class failover_slot : public ::testing::TestWithParam<int> {};

TEST_P(failover_slot, is_synced_to_the_standby_and_usable_after_promotion) {
  pg_standby_pair pair(GetParam());
  pair.start();
  const auto primary = pair.primary_dsn();
  const auto replica = pair.standby_dsn();
  EXPECT_EQ(scalar(primary, "SHOW synchronized_standby_slots"), pg_standby_pair::standby_slot());
  EXPECT_EQ(scalar(replica, "SHOW sync_replication_slots"), "on");

  const std::string slot = unique_name("failover_slot");
  const std::string table = unique_name("failover_rows");
  exec(primary, "CREATE TABLE " + table + " (id serial PRIMARY KEY)");
  exec(primary, "SELECT pg_create_logical_replication_slot('" + slot + "', 'pgoutput', false, false, true)");
  EXPECT_EQ(scalar(primary, "SELECT failover FROM pg_replication_slots WHERE slot_name = '" + slot + "'"), "t");
  // The standby keeps a newly seen slot temporary until the primary's copy moves past what the standby
  // can guarantee; moving it along (as a consuming relay would) lets it persist.
  const bool synced = wait_until(
      [&] {
        exec(primary, "INSERT INTO " + table + " DEFAULT VALUES");
        exec(primary, "SELECT pg_replication_slot_advance('" + slot + "', pg_current_wal_lsn())");
        return scalar(replica,
                      "SELECT coalesce(bool_and(synced AND NOT temporary), false)::text FROM "
                      "pg_replication_slots WHERE slot_name = '" +
                          slot + "'") == "true";
      },
      120s, 500ms);
  ASSERT_TRUE(synced) << "slot " << slot << " not synced to the standby; standby log in " << pair.run_dir();
  EXPECT_EQ(scalar(replica, "SELECT failover FROM pg_replication_slots WHERE slot_name = '" + slot + "'"), "t");

  pair.promote();
  exec(replica, "INSERT INTO " + table + " DEFAULT VALUES");
  const auto lsn = scalar(replica, "SELECT pg_current_wal_lsn()::text");
  EXPECT_EQ(scalar(replica, "SELECT (pg_replication_slot_advance('" + slot + "', '" + lsn + "')).end_lsn >= '" + lsn +
                                "'::pg_lsn"),
            "t")
      << "the synced slot is not usable on the promoted standby";
  pair.stop();
}

INSTANTIATE_TEST_SUITE_P(postgresql, failover_slot, ::testing::Values(17, 18),
                         [](const ::testing::TestParamInfo<int>& p) { return std::to_string(p.param); });

}  // namespace
}  // namespace outbox::test
