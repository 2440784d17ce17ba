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

TEST_F(sqlite_store_test, claim_then_complete_makes_a_duplicate) {
  auto s = open();
  EXPECT_EQ(s->claim("g", "e1"), claim_result::claimed);
  EXPECT_EQ(s->claim("g", "e1"), claim_result::in_progress);
  s->complete("g", "e1");
  EXPECT_EQ(s->claim("g", "e1"), claim_result::duplicate);
  EXPECT_EQ(s->claim("other", "e1"), claim_result::claimed);
  EXPECT_EQ(s->claim("ge", "1"), claim_result::claimed);
}

TEST_F(sqlite_store_test, release_lets_the_event_be_claimed_again_but_never_undoes_done) {
  auto s = open();
  ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);
  s->release("g", "e1");
  EXPECT_EQ(s->claim("g", "e1"), claim_result::claimed);
  s->complete("g", "e1");
  s->release("g", "e1");
  EXPECT_EQ(s->claim("g", "e1"), claim_result::duplicate);
}

TEST_F(sqlite_store_test, survives_close_and_reopen) {
  {
    auto s = open();
    ASSERT_EQ(s->claim("g", "done"), claim_result::claimed);
    s->complete("g", "done");
    ASSERT_EQ(s->claim("g", "working"), claim_result::claimed);
  }
  auto s = open();
  EXPECT_EQ(s->claim("g", "done"), claim_result::duplicate);
  EXPECT_EQ(s->claim("g", "working"), claim_result::in_progress);  // its lease still runs
  EXPECT_EQ(s->claim("g", "new"), claim_result::claimed);
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

TEST_F(sqlite_store_test, an_expired_lease_can_be_claimed_again) {
  auto s = open(24h, 300ms);
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);
  ASSERT_TRUE(wait_until([&] { return s->claim("g", "e1") == claim_result::claimed; }, 5s));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  EXPECT_EQ(s->claim("g", "e1"), claim_result::in_progress);  // a fresh lease
}

TEST_F(sqlite_store_test, an_expired_lease_survives_a_restart_as_a_retry) {
  {
    auto s = open(24h, 100ms);
    ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);  // then "crash" before complete
  }
  auto s = open(24h, 100ms);
  EXPECT_TRUE(wait_until([&] { return s->claim("g", "e1") == claim_result::claimed; }, 5s));
}

TEST_F(sqlite_store_test, done_marks_expire_after_the_retention) {
  auto s = open(100ms);
  ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);
  s->complete("g", "e1");
  ASSERT_EQ(s->claim("g", "e1"), claim_result::duplicate);
  EXPECT_TRUE(wait_until([&] { return s->claim("g", "e1") == claim_result::claimed; }, 5s));
}

TEST_F(sqlite_store_test, cleanup_deletes_expired_rows_up_to_the_limit) {
  auto s = open(150ms);
  for (std::size_t i = 0; i < 30; ++i) {
    ASSERT_EQ(s->claim("g", event_id(i)), claim_result::claimed);
    s->complete("g", event_id(i));
  }
  ASSERT_EQ(s->claim("g", "abandoned"), claim_result::claimed);  // in progress and never finished: cleaned too
  s->complete("g", "probe");  // written after all others: once it expired, so did they
  ASSERT_TRUE(wait_until([&] { return s->claim("g", "probe") == claim_result::claimed; }, 5s));
  EXPECT_EQ(s->cleanup(0), 0u);
  EXPECT_EQ(s->cleanup(10), 10u);
  EXPECT_EQ(s->cleanup(100), 21u);  // the probe's fresh claim stays
  EXPECT_EQ(s->cleanup(100), 0u);
  EXPECT_EQ(s->claim("g", "probe"), claim_result::in_progress);
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
