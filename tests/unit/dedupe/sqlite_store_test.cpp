#include "dedupe_test_util.hpp"

#include "outbox/base/error.hpp"
#include "outbox/dedupe/store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <string>

namespace outbox::dedupe {
namespace {

using namespace std::chrono_literals;
using test::event_id;
using test::wait_until;

/// A fresh directory per test, removed afterwards.
class sqlite_store_test : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::random_device rd;
    m_dir = std::filesystem::temp_directory_path() / ("outbox_dedupe_" + std::string(info->name()) + "_" +
                                                      std::to_string(::getpid()) + "_" + std::to_string(rd()));
    std::filesystem::create_directories(m_dir);
    m_path = (m_dir / "dedupe.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(m_dir); }

  std::unique_ptr<store> open(std::chrono::milliseconds retention = 24h, std::chrono::milliseconds lease = 60s) {
    return make_sqlite_store({.path = m_path, .retention = retention, .lease = lease});
  }

  std::filesystem::path m_dir;
  std::string m_path;
};

TEST_F(sqlite_store_test, keeps_the_store_contract) {
  int files = 0;
  test::check_store([&](std::chrono::milliseconds retention, std::chrono::milliseconds lease) {
    const std::string path = (m_dir / ("contract" + std::to_string(++files) + ".db")).string();
    return make_sqlite_store({.path = path, .retention = retention, .lease = lease});
  });
}

TEST_F(sqlite_store_test, holds_keep_the_contract_and_survive_a_reopen) {
  test::check_holds(
      [&](std::chrono::milliseconds lapse) { return make_sqlite_key_holds({.path = m_path, .retention = 1h}, lapse); },
      true);
}

TEST_F(sqlite_store_test, a_file_from_before_owner_tokens_gains_the_column_and_keeps_its_done_marks) {
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(m_path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(
        sqlite3_exec(db,
                     "CREATE TABLE outbox_dedupe (consumer_group TEXT NOT NULL, event_id TEXT NOT NULL,"
                     " state INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
                     " PRIMARY KEY (consumer_group, event_id)) WITHOUT ROWID;"
                     "INSERT INTO outbox_dedupe VALUES ('g', 'old', 1, CAST(strftime('%s','now') AS INTEGER) * 1000)",
                     nullptr, nullptr, nullptr),
        SQLITE_OK);
    sqlite3_close(db);
  }
  auto s = open();
  EXPECT_EQ(s->claim("g", "old", "w1"), claim_result::duplicate);
  EXPECT_EQ(s->claim("g", "new", "w1"), claim_result::claimed);
  EXPECT_EQ(s->claim("g", "new", "w2"), claim_result::in_progress);
}

TEST_F(sqlite_store_test, survives_close_and_reopen) {
  {
    auto s = open();
    ASSERT_EQ(s->claim("g", "done", "w1"), claim_result::claimed);
    s->complete("g", "done", "w1");
    ASSERT_EQ(s->claim("g", "working", "w1"), claim_result::claimed);
  }
  auto s = open();
  EXPECT_EQ(s->claim("g", "done", "w2"), claim_result::duplicate);
  EXPECT_EQ(s->claim("g", "working", "w2"), claim_result::in_progress);  // its lease still runs
  EXPECT_EQ(s->claim("g", "working", "w1"), claim_result::claimed);      // and is still w1's
  EXPECT_EQ(s->claim("g", "new", "w2"), claim_result::claimed);
}

TEST_F(sqlite_store_test, uses_wal_mode) {
  { auto s = open(); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(m_path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &stmt, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0))), "wal");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(sqlite_store_test, an_expired_lease_survives_a_restart_as_a_retry) {
  {
    auto s = open(24h, 100ms);
    ASSERT_EQ(s->claim("g", "e1", "w1"), claim_result::claimed);  // then "crash" before complete
  }
  auto s = open(24h, 100ms);
  EXPECT_TRUE(wait_until([&] { return s->claim("g", "e1", "w2") == claim_result::claimed; }, 5s));
}

TEST_F(sqlite_store_test, cleanup_deletes_expired_rows_up_to_the_limit) {
  auto s = open(150ms);
  for (std::size_t i = 0; i < 30; ++i) {
    ASSERT_EQ(s->claim("g", event_id(i), "w"), claim_result::claimed);
    s->complete("g", event_id(i), "w");
  }
  ASSERT_EQ(s->claim("g", "abandoned", "w"), claim_result::claimed);  // in progress and never finished: cleaned too
  s->complete("g", "probe", "w");  // written after all others: once it expired, so did they
  ASSERT_TRUE(wait_until([&] { return s->claim("g", "probe", "w") == claim_result::claimed; }, 5s));
  EXPECT_EQ(s->cleanup(0), 0u);
  EXPECT_EQ(s->cleanup(10), 10u);
  EXPECT_EQ(s->cleanup(100), 21u);  // the probe's fresh claim stays
  EXPECT_EQ(s->cleanup(100), 0u);
  EXPECT_EQ(s->claim("g", "probe", "other"), claim_result::in_progress);
}

TEST_F(sqlite_store_test, concurrent_claims_on_one_store_have_exactly_one_winner_per_id) {
  auto s = open();
  const auto counts = test::claim_concurrently({s.get()}, 4, 2000);
  EXPECT_TRUE(test::not_exactly_once(counts).empty()) << test::not_exactly_once(counts).size() << " ids";
}

TEST_F(sqlite_store_test, concurrent_claims_through_two_connections_have_exactly_one_winner_per_id) {
  auto a = open();
  auto b = open();
  const auto counts = test::claim_concurrently({a.get(), b.get()}, 4, 1000);
  EXPECT_TRUE(test::not_exactly_once(counts).empty()) << test::not_exactly_once(counts).size() << " ids";
}

TEST_F(sqlite_store_test, an_unusable_path_is_a_fatal_error_naming_it) {
  const std::string bad = (m_dir / "missing" / "dedupe.db").string();
  try {
    make_sqlite_store({.path = bad, .retention = 1h});
    FAIL() << "expected an outbox_error";
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().category, "dedupe");
    EXPECT_EQ(e.value().retry, retry_class::fatal);
    EXPECT_NE(e.value().message.find(bad), std::string::npos) << e.value().message;
  }
  EXPECT_THROW(make_sqlite_store({.path = m_path, .retention = 0ms}), outbox_error);
}

}  // namespace
}  // namespace outbox::dedupe
