#include "dedupe_test_util.hpp"

#include "outbox/base/error.hpp"
#include "outbox/dedupe/key_holds.hpp"
#include "outbox/dedupe/postgres_inbox.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/postgres.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <atomic>
#include <fstream>
#include <sstream>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace outbox::dedupe {
namespace {

using namespace std::chrono_literals;
using outbox::test::pg_exec;
using outbox::test::pg_scalar;
using outbox::test::require_services;
using outbox::test::unique_name;

/// An inbox table and a business table of this test's own; both dropped afterwards.
class postgres_inbox_test : public ::testing::Test {
 protected:
  void SetUp() override {
    m_inbox = unique_name("inbox");
    m_ledger = unique_name("ledger");
    pg_exec("CREATE TABLE " + m_ledger + " (event_id text NOT NULL, worker int NOT NULL)");
  }
  void TearDown() override {
    pg_exec("DROP TABLE IF EXISTS " + m_inbox + "_parked");
    pg_exec("DROP TABLE IF EXISTS " + m_inbox);
    pg_exec("DROP TABLE IF EXISTS " + m_inbox + "_dead");
    pg_exec("DROP TABLE IF EXISTS " + m_ledger);
  }

  postgres_inbox make(std::chrono::milliseconds retention = 24h, std::chrono::milliseconds keep_at_least = 0ms) {
    return postgres_inbox(require_services().pg_dsn, {.table = m_inbox,
                                                      .retention = retention,
                                                      .keep_at_least = keep_at_least,
                                                      .dead_letter_table = m_inbox + "_dead"});
  }

  /// One handler run: inbox row and business row in one transaction; true when it committed an effect.
  bool handle(postgres_inbox& inbox, pqxx::connection& c, const std::string& event_id, int worker) {
    pqxx::work tx(c);
    if (!inbox.claim_in(tx, "g", event_id)) return false;  // already done: nothing else, roll back
    tx.exec_params("INSERT INTO " + m_ledger + " (event_id, worker) VALUES ($1, $2)", event_id, worker);
    tx.commit();
    return true;
  }

  long count(const std::string& table, const std::string& where = "true") {
    return std::stol(pg_scalar("SELECT count(*) FROM " + table + " WHERE " + where));
  }

  std::string m_inbox;
  std::string m_ledger;
};

TEST_F(postgres_inbox_test, creates_the_table_and_its_index_once) {
  auto inbox = make();
  auto again = make();  // idempotent
  EXPECT_EQ(inbox.table(), m_inbox);
  EXPECT_EQ(pg_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = '" + m_inbox + "'"), "2");
  EXPECT_EQ(pg_scalar("SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM pg_index i"
                      " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)"
                      " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
                      " WHERE i.indrelid = '" +
                      m_inbox + "'::regclass AND i.indisprimary"),
            "consumer_group,event_id");
}

TEST_F(postgres_inbox_test, rollback_frees_the_claim_and_commit_makes_a_duplicate) {
  auto inbox = make();
  pqxx::connection c(require_services().pg_dsn);
  {
    pqxx::work tx(c);
    ASSERT_TRUE(inbox.claim_in(tx, "g", "e1"));
    tx.exec_params("INSERT INTO " + m_ledger + " (event_id, worker) VALUES ($1, 0)", "e1");
    tx.abort();  // the handler failed: neither the inbox row nor the effect stays
  }
  EXPECT_EQ(count(m_inbox), 0);
  EXPECT_EQ(count(m_ledger), 0);
  EXPECT_TRUE(handle(inbox, c, "e1", 1));
  EXPECT_FALSE(handle(inbox, c, "e1", 2));
  EXPECT_EQ(count(m_ledger), 1);
  EXPECT_EQ(count(m_inbox, "consumer_group = 'g' AND event_id = 'e1'"), 1);
  // Another group processes the same event on its own.
  pqxx::work tx(c);
  EXPECT_TRUE(inbox.claim_in(tx, "other", "e1"));
}

TEST_F(postgres_inbox_test, works_with_a_schema_qualified_table) {
  postgres_inbox inbox(require_services().pg_dsn,
                       {.table = "public." + m_inbox, .retention = 1h, .keep_at_least = {}, .dead_letter_table = {}});
  EXPECT_EQ(inbox.dead_letter_table(), "public.outbox_dead_letters") << "beside the inbox, in its schema";
  pqxx::connection c(require_services().pg_dsn);
  EXPECT_TRUE(handle(inbox, c, "e1", 1));
  EXPECT_FALSE(handle(inbox, c, "e1", 1));
}

TEST_F(postgres_inbox_test, two_workers_racing_commit_each_event_exactly_once) {
  auto inbox = make();
  constexpr int ids = 400;
  std::atomic<bool> go{false};
  std::vector<std::atomic<int>> wins(ids);
  std::vector<std::thread> workers;
  workers.reserve(2);
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&, w] {
      pqxx::connection c(require_services().pg_dsn);  // each worker its own connection, as in separate instances
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < ids; ++i) {
        if (handle(inbox, c, "evt-" + std::to_string(i), w)) wins[static_cast<std::size_t>(i)].fetch_add(1);
      }
    });
  }
  go = true;
  for (auto& t : workers) t.join();
  int not_once = 0;
  for (auto& n : wins) not_once += n.load() == 1 ? 0 : 1;
  EXPECT_EQ(not_once, 0);
  EXPECT_EQ(count(m_ledger), ids);
  EXPECT_EQ(pg_scalar("SELECT count(DISTINCT event_id) FROM " + m_ledger), std::to_string(ids));
  EXPECT_EQ(count(m_inbox), ids);
}

TEST_F(postgres_inbox_test, a_claim_waits_for_a_concurrent_transaction_on_the_same_event) {
  auto inbox = make();
  pqxx::connection c1(require_services().pg_dsn);
  pqxx::connection c2(require_services().pg_dsn);
  pqxx::work first(c1);
  ASSERT_TRUE(inbox.claim_in(first, "g", "e1"));
  std::atomic<int> second_result{-1};
  std::thread second([&] {
    pqxx::work tx(c2);
    second_result = inbox.claim_in(tx, "g", "e1") ? 1 : 0;
  });
  // The second insert blocks on the primary key while the first transaction is open.
  EXPECT_TRUE(outbox::test::wait_until(
      [&] {
        return pg_scalar(
                   "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE "
                   "'INSERT INTO %" +
                   m_inbox + "%'") == "1";
      },
      10s));
  EXPECT_EQ(second_result.load(), -1);  // (commit either way, so the thread always ends)
  first.commit();
  second.join();
  EXPECT_EQ(second_result.load(), 0);  // the first one committed: a duplicate
}

TEST_F(postgres_inbox_test, cleanup_deletes_rows_past_the_retention_in_bounded_batches) {
  auto inbox = make(24h);
  pg_exec("INSERT INTO " + m_inbox +
          " (consumer_group, event_id) SELECT 'g', 'evt-' || n FROM generate_series(1, 2500) n");
  pg_exec("UPDATE " + m_inbox +
          " SET processed_at = now() - interval '2 days' WHERE event_id <> ALL ("
          "SELECT 'evt-' || n FROM generate_series(1, 200) n)");
  ASSERT_EQ(count(m_inbox, "processed_at < now() - interval '1 day'"), 2300);
  EXPECT_EQ(inbox.cleanup(0), 0u);
  EXPECT_EQ(inbox.cleanup(10), 10u);
  EXPECT_EQ(inbox.cleanup(2100), 2100u);  // more than one batch
  EXPECT_EQ(inbox.cleanup(5000), 190u);
  EXPECT_EQ(inbox.cleanup(5000), 0u);
  EXPECT_EQ(count(m_inbox), 200);
  EXPECT_EQ(count(m_inbox, "processed_at < now() - interval '1 day'"), 0);
}

TEST_F(postgres_inbox_test, cleanup_never_deletes_rows_younger_than_the_floor_whatever_the_retention) {
  auto inbox = make(1h, 72h);
  pg_exec("INSERT INTO " + m_inbox +
          " (consumer_group, event_id, processed_at) VALUES ('g', 'two-days', now() - "
          "interval '2 days'), ('g', 'four-days', now() - interval '4 days')");
  pg_exec("INSERT INTO " + m_inbox +
          "_dead (consumer_group, event_id, topic, partition, \"offset\", error_class, "
          "error_message, dead_lettered_at) VALUES ('g', 'dl-two-days', 't', 0, 1, 'fatal', 'x', now() - interval "
          "'2 days'), ('g', 'dl-four-days', 't', 0, 2, 'fatal', 'x', now() - interval '4 days')");
  EXPECT_EQ(inbox.cleanup(100), 2U) << "only the rows older than 72h, past the 1h retention";
  EXPECT_EQ(pg_scalar("SELECT string_agg(event_id, ',') FROM " + m_inbox), "two-days");
  EXPECT_EQ(pg_scalar("SELECT string_agg(event_id, ',') FROM " + m_inbox + "_dead"), "dl-two-days");
}

TEST_F(postgres_inbox_test, a_dead_letter_is_one_row_per_event_and_group_and_a_replay_is_noted) {
  auto inbox = make();
  EXPECT_EQ(inbox.dead_letter_table(), m_inbox + "_dead");
  pqxx::connection c(require_services().pg_dsn);
  auto record = [&](const dead_letter_entry& e) {
    pqxx::work tx(c);
    inbox.record_dead_letter(tx, e);
    tx.commit();
  };
  const std::string dead = m_inbox + "_dead";
  record({"g", "e1", "pay", 2, 40, "fatal", "amount_cents < 0", false});
  record({"g2", "e1", "pay", 2, 40, "fatal", "another group's", false});
  EXPECT_EQ(count(dead), 2);
  EXPECT_EQ(pg_scalar("SELECT topic || '/' || partition || '/' || \"offset\" || ' ' || error_class || ' ' || "
                      "error_message || ' ' || (replayed_at IS NULL) FROM " +
                      dead + " WHERE consumer_group = 'g'"),
            "pay/2/40 fatal amount_cents < 0 true");
  // The replayed copy fails again: the same row, now with when it was replayed; a later plain redelivery keeps it.
  record({"g", "e1", "pay", 2, 40, "retry_exhausted", std::string(3000, 'x'), true});
  record({"g", "e1", "pay", 2, 40, "retry_exhausted", "again", false});
  EXPECT_EQ(count(dead, "consumer_group = 'g'"), 1);
  EXPECT_EQ(pg_scalar("SELECT error_class || ' ' || error_message || ' ' || (replayed_at IS NOT NULL) FROM " + dead +
                      " WHERE consumer_group = 'g'"),
            "retry_exhausted again true");
  record({"g", "e2", "pay", 0, 1, "fatal", std::string(3000, 'y'), false});
  EXPECT_EQ(pg_scalar("SELECT length(error_message) FROM " + dead + " WHERE event_id = 'e2'"), "1024")
      << "cut like the header";
  {
    pqxx::work tx(c);
    inbox.note_replay_applied(tx, "g", "e2");
    tx.commit();
  }
  EXPECT_EQ(count(dead, "event_id = 'e2' AND replayed_at IS NOT NULL"), 1);
  pqxx::work tx(c);
  EXPECT_THROW(inbox.record_dead_letter(tx, {"g", "", "pay", 0, 1, "fatal", "x", false}), outbox_error);
}

TEST_F(postgres_inbox_test, a_transaction_aborted_behind_the_callers_back_is_seen_before_commit) {
  auto inbox = make();
  pg_exec("CREATE UNIQUE INDEX ON " + m_ledger + " (event_id)");
  pg_exec("INSERT INTO " + m_ledger + " VALUES ('taken', 0)");
  pqxx::connection c(require_services().pg_dsn);
  {
    pqxx::work tx(c);
    ASSERT_TRUE(inbox.claim_in(tx, "g", "e1"));
    EXPECT_TRUE(inbox.still_claimed_in(tx, "g", "e1"));
    try {  // the "idempotent insert" idiom: catch the unique violation and carry on
      tx.exec0("INSERT INTO " + m_ledger + " VALUES ('taken', 1)");
    } catch (const pqxx::unique_violation&) {
    }
    bool alive = true;
    try {
      alive = inbox.still_claimed_in(tx, "g", "e1");
    } catch (const outbox_error& e) {
      alive = false;
      EXPECT_EQ(e.value().retry, retry_class::fatal) << e.what();
      EXPECT_NE(e.value().message.find("25P02"), std::string::npos) << e.value().message;
    }
    EXPECT_FALSE(alive) << "the aborted transaction must not look committable";
  }
  EXPECT_EQ(count(m_inbox), 0) << "nothing committed";
}

// What the SDK's batches do: the record's savepoint goes with its claim, the release with the check, one round trip
// each. The ids go as quoted literals there, so one with a quote in it must land as it is.
TEST_F(postgres_inbox_test, a_statement_sent_before_the_claim_or_the_check_runs_first_in_the_same_round_trip) {
  auto inbox = make();
  pqxx::connection c(require_services().pg_dsn);
  {
    pqxx::work tx(c);
    ASSERT_TRUE(inbox.claim_in(tx, "g'1", "it's-e1", "SAVEPOINT outbox_record"));
    EXPECT_FALSE(inbox.claim_in(tx, "g'1", "it's-e1", "SAVEPOINT outbox_record")) << "the same key twice";
    EXPECT_TRUE(inbox.still_claimed_in(tx, "g'1", "it's-e1", "RELEASE SAVEPOINT outbox_record"));
    EXPECT_TRUE(inbox.still_claimed_in(tx, "g'1", "it's-e1", "RELEASE SAVEPOINT outbox_record"))
        << "both savepoints existed: the statements before ran";
    EXPECT_THROW(inbox.still_claimed_in(tx, "g'1", "it's-e1", "RELEASE SAVEPOINT outbox_record"), outbox_error)
        << "a third release has no savepoint left: an error in the statement before is the call's error";
  }
  EXPECT_EQ(count(m_inbox), 0) << "nothing committed";
  {
    pqxx::work tx(c);
    ASSERT_TRUE(inbox.claim_in(tx, "g'1", "it's-e1", "SAVEPOINT outbox_record"));
    EXPECT_TRUE(inbox.still_claimed_in(tx, "g'1", "it's-e1", "RELEASE SAVEPOINT outbox_record"));
    tx.commit();
  }
  EXPECT_EQ(count(m_inbox, "consumer_group = 'g''1' AND event_id = 'it''s-e1'"), 1);
  {
    pqxx::work tx(c);
    EXPECT_FALSE(inbox.claim_in(tx, "g'1", "it's-e1", "SAVEPOINT outbox_record")) << "committed before";
    EXPECT_FALSE(inbox.still_claimed_in(tx, "g'1", "other", "RELEASE SAVEPOINT outbox_record"));
  }
}

TEST_F(postgres_inbox_test, a_claim_can_carry_the_check_of_the_key_claimed_before_it_in_one_statement) {
  auto inbox = make();
  pqxx::connection c(require_services().pg_dsn);
  {
    pqxx::work tx(c);
    ASSERT_TRUE(inbox.claim_in(tx, "g'1", "it's-e1", "SAVEPOINT outbox_record"));
    auto got =
        inbox.claim_after_in(tx, "g'1", "e2", "it's-e1", "RELEASE SAVEPOINT outbox_record; SAVEPOINT outbox_record");
    EXPECT_TRUE(got.claimed);
    EXPECT_TRUE(got.previous_held);
    got = inbox.claim_after_in(tx, "g'1", "e2", "e2", "RELEASE SAVEPOINT outbox_record; SAVEPOINT outbox_record");
    EXPECT_FALSE(got.claimed) << "the same key again";
    EXPECT_TRUE(got.previous_held) << "the check sees the row claimed before, not this statement's";
    // The record before undoes its own row (a handler rolling back to its savepoint): the next claim says so.
    tx.exec0("ROLLBACK TO SAVEPOINT outbox_record");
    ASSERT_TRUE(inbox.claim_in(tx, "g'1", "e3", "SAVEPOINT outbox_record"));
    tx.exec0("ROLLBACK TO SAVEPOINT outbox_record");
    got = inbox.claim_after_in(tx, "g'1", "e4", "e3", "RELEASE SAVEPOINT outbox_record; SAVEPOINT outbox_record");
    EXPECT_TRUE(got.claimed);
    EXPECT_FALSE(got.previous_held) << "e3's row was rolled back";
    tx.commit();
  }
  EXPECT_EQ(count(m_inbox, "consumer_group = 'g''1'"), 3) << "it's-e1, e2 and e4";
  {
    pqxx::work tx(c);
    try {
      tx.exec("SELECT 1 / 0");
    } catch (const pqxx::sql_error&) {  // NOLINT(bugprone-empty-catch): an aborted transaction is the case
    }
    EXPECT_THROW(inbox.claim_after_in(tx, "g'1", "e5", "e4", "RELEASE SAVEPOINT outbox_record"), outbox_error)
        << "in an aborted transaction the statement before fails, and the call throws";
  }
  EXPECT_EQ(count(m_inbox, "event_id = 'e5'"), 0);
}

TEST_F(postgres_inbox_test, bad_event_ids_are_fatal) {
  auto inbox = make();
  pqxx::connection c(require_services().pg_dsn);
  for (const std::string& bad : {std::string(), std::string("a\0b", 3), std::string(1025, 'x'), std::string("\xff")}) {
    pqxx::work tx(c);
    try {
      inbox.claim_in(tx, "g", bad);
      ADD_FAILURE() << "accepted a bad event id of " << bad.size() << " bytes";
    } catch (const outbox_error& e) {
      EXPECT_EQ(e.value().retry, retry_class::fatal);
      EXPECT_NE(e.value().message.find("event_id"), std::string::npos) << e.value().message;
    }
  }
}

TEST_F(postgres_inbox_test, holds_keep_the_contract_in_the_inbox_database) {
  auto inbox = make();
  test::check_holds(
      [&](std::chrono::milliseconds lapse) {
        return make_postgres_key_holds(require_services().pg_dsn, m_inbox, lapse);
      },
      true);
  EXPECT_EQ(pg_scalar("SELECT count(*) FROM pg_tables WHERE tablename = '" + m_inbox + "_parked'"), "1");
}

TEST_F(postgres_inbox_test, an_unreachable_database_is_a_retryable_error) {
  try {
    postgres_inbox inbox("host=127.0.0.1 port=1 dbname=outbox connect_timeout=2",
                         {.table = m_inbox, .retention = 1h, .keep_at_least = {}, .dead_letter_table = {}});
    FAIL() << "expected an outbox_error";
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().category, "dedupe");
    EXPECT_EQ(e.value().retry, retry_class::retryable);
    EXPECT_NE(e.value().message.find(m_inbox), std::string::npos) << e.value().message;
  }
}

/// A schema made from dedupe/schema.sql by the migrations' role, and an application role that may use its
/// tables but not create anything.
class least_privilege_inbox : public ::testing::Test {
 protected:
  void SetUp() override {
    m_schema = unique_name("migrated");
    m_role = unique_name("app_role");
    std::ifstream in(OUTBOX_INBOX_SCHEMA);
    std::stringstream sql;
    sql << in.rdbuf();
    ASSERT_FALSE(sql.str().empty()) << "cannot read " << OUTBOX_INBOX_SCHEMA;
    pg_exec("CREATE SCHEMA " + m_schema);
    pg_exec("SET search_path TO " + m_schema + "; " + sql.str());
    pg_exec("CREATE ROLE " + m_role + " LOGIN PASSWORD 'app-secret'");
    pg_exec("GRANT USAGE ON SCHEMA " + m_schema + " TO " + m_role);
    pg_exec("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + m_schema + " TO " + m_role);
    pg_exec("GRANT USAGE ON ALL SEQUENCES IN SCHEMA " + m_schema + " TO " + m_role);
    m_dsn = require_services().pg_dsn + " user=" + m_role + " password=app-secret options=-csearch_path=" + m_schema;
  }
  void TearDown() override {
    if (m_schema.empty()) return;
    pg_exec("DROP SCHEMA IF EXISTS " + m_schema + " CASCADE");
    pg_exec("DROP OWNED BY " + m_role);
    pg_exec("DROP ROLE IF EXISTS " + m_role);
  }
  static postgres_inbox::options opts(bool create) {
    return {.table = "outbox_inbox",
            .retention = 1h,
            .keep_at_least = 0ms,
            .dead_letter_table = {},
            .create_tables = create};
  }

  std::string m_schema;
  std::string m_role;
  std::string m_dsn;
};

TEST_F(least_privilege_inbox, a_role_that_may_not_create_tables_runs_on_the_tables_of_schema_sql) {
  EXPECT_THROW(postgres_inbox(m_dsn, opts(true)), outbox_error) << "CREATE on the schema is checked first";
  postgres_inbox inbox(m_dsn, opts(false));
  pqxx::connection c(m_dsn);
  {
    pqxx::work tx(c);
    EXPECT_TRUE(inbox.claim_in(tx, "ledger", "e1"));
    EXPECT_TRUE(inbox.still_claimed_in(tx, "ledger", "e1"));
    inbox.record_dead_letter(tx, {"ledger", "e2", "payments", 0, 7, "fatal", "bad amount", false});
    tx.commit();
  }
  {
    pqxx::work tx(c);
    EXPECT_FALSE(inbox.claim_in(tx, "ledger", "e1")) << "committed: a duplicate";
  }
  EXPECT_EQ(inbox.cleanup(100), 0u);
  EXPECT_EQ(pg_scalar("SELECT count(*) FROM " + m_schema + ".outbox_dead_letters"), "1");
  auto holds = make_postgres_key_holds(m_dsn, "outbox_inbox", 1h, false);
  holds->add("ledger", "payments", "k", {0, 1});
  EXPECT_EQ(pg_scalar("SELECT count(*) FROM " + m_schema + ".outbox_inbox_parked"), "1");
}

TEST_F(least_privilege_inbox, a_missing_table_without_create_table_fails_at_start_naming_it_and_schema_sql) {
  pg_exec("DROP TABLE " + m_schema + ".outbox_dead_letters");
  try {
    postgres_inbox inbox(m_dsn, opts(false));
    FAIL() << "started without its dead-letter table";
  } catch (const outbox_error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("outbox_dead_letters"), std::string::npos) << what;
    EXPECT_NE(what.find("schema.sql"), std::string::npos) << what;
    EXPECT_EQ(e.value().retry, retry_class::fatal);
  }
  EXPECT_EQ(pg_scalar("SELECT to_regclass('" + m_schema + ".outbox_dead_letters') IS NULL"), "t")
      << "nothing was created";
}

}  // namespace
}  // namespace outbox::dedupe
