#include "dedupe_test_util.hpp"

#include "outbox/base/error.hpp"
#include "outbox/dedupe/store.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace outbox::dedupe {
namespace {

using namespace std::chrono_literals;
using test::event_id;
using test::wait_until;

TEST(memory_store, claim_then_complete_makes_a_duplicate) {
  auto s = make_memory_store({});
  EXPECT_EQ(s->claim("g", "e1"), claim_result::claimed);
  EXPECT_EQ(s->claim("g", "e1"), claim_result::in_progress);
  s->complete("g", "e1");
  EXPECT_EQ(s->claim("g", "e1"), claim_result::duplicate);
  EXPECT_EQ(s->claim("g", "e1"), claim_result::duplicate);
  // Another group, or a group/id split differently, is another key.
  EXPECT_EQ(s->claim("other", "e1"), claim_result::claimed);
  EXPECT_EQ(s->claim("ge", "1"), claim_result::claimed);
}

TEST(memory_store, release_lets_the_event_be_claimed_again_but_never_undoes_done) {
  auto s = make_memory_store({});
  ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);
  s->release("g", "e1");
  EXPECT_EQ(s->claim("g", "e1"), claim_result::claimed);
  s->complete("g", "e1");
  s->release("g", "e1");
  EXPECT_EQ(s->claim("g", "e1"), claim_result::duplicate);
  s->release("g", "never-claimed");  // harmless
}

TEST(memory_store, complete_without_claim_still_records_done) {
  auto s = make_memory_store({});
  s->complete("g", "e1");
  EXPECT_EQ(s->claim("g", "e1"), claim_result::duplicate);
}

TEST(memory_store, done_marks_expire_after_the_ttl) {
  auto s = make_memory_store({.ttl = 100ms});
  ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);
  s->complete("g", "e1");
  ASSERT_EQ(s->claim("g", "e1"), claim_result::duplicate);
  EXPECT_TRUE(wait_until([&] { return s->claim("g", "e1") == claim_result::claimed; }, 5s));
}

TEST(memory_store, an_abandoned_claim_can_be_taken_over_after_the_lease) {
  auto s = make_memory_store({.lease = 300ms});
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);
  ASSERT_TRUE(wait_until([&] { return s->claim("g", "e1") == claim_result::claimed; }, 5s));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
  // The new claim has a fresh lease.
  EXPECT_EQ(s->claim("g", "e1"), claim_result::in_progress);
}

TEST(memory_store, evicts_the_least_recently_used_entry_beyond_max_entries) {
  auto s = make_memory_store({.max_entries = 100});
  for (std::size_t i = 0; i < 100; ++i) {
    ASSERT_EQ(s->claim("g", event_id(i)), claim_result::claimed);
    s->complete("g", event_id(i));
  }
  ASSERT_EQ(s->claim("g", event_id(0)), claim_result::duplicate);  // 0 is now the most recently used
  for (std::size_t i = 100; i < 150; ++i) {
    ASSERT_EQ(s->claim("g", event_id(i)), claim_result::claimed);
    s->complete("g", event_id(i));
  }
  // Kept: 0 and 51..149 (100 entries); evicted: 1..50.
  EXPECT_EQ(s->claim("g", event_id(0)), claim_result::duplicate);
  for (std::size_t i = 51; i < 150; ++i) EXPECT_EQ(s->claim("g", event_id(i)), claim_result::duplicate) << i;
  EXPECT_EQ(s->claim("g", event_id(50)), claim_result::claimed);
  EXPECT_EQ(s->claim("g", event_id(1)), claim_result::claimed);
}

TEST(memory_store, stays_under_max_bytes) {
  constexpr std::size_t id_size = 1000;
  constexpr std::size_t max_bytes = std::size_t{64} * 1024;
  auto s = make_memory_store({.max_bytes = max_bytes});
  const auto id = [](std::size_t i) { return std::string(id_size - 8, 'x') + event_id(i); };
  constexpr std::size_t total = 1000;
  for (std::size_t i = 0; i < total; ++i) {
    ASSERT_EQ(s->claim("g", id(i)), claim_result::claimed);
    s->complete("g", id(i));
  }
  // What is kept is the newest suffix: count it from the newest down to the first forgotten id.
  std::size_t kept = 0;
  while (kept < total && s->claim("g", id(total - 1 - kept)) == claim_result::duplicate) ++kept;
  EXPECT_LE(kept * id_size, max_bytes);          // the bound holds even counting only the ids
  EXPECT_GE(kept, max_bytes / (id_size + 512));  // and the per-entry overhead estimate is not absurd
}

TEST(memory_store, evicts_expired_entries_before_live_ones) {
  auto s = make_memory_store({.max_entries = 3, .ttl = 1s});
  const auto t0 = std::chrono::steady_clock::now();
  s->complete("g", "old");
  ASSERT_TRUE(wait_until([&] { return std::chrono::steady_clock::now() - t0 >= 500ms; }, 5s));
  s->complete("g", "a");
  s->complete("g", "b");
  ASSERT_EQ(s->claim("g", "old"), claim_result::duplicate);  // "old" is now the most recently used
  // Once "old" expired (and "a", "b" not yet), a new entry must push out "old", not the least recently used "a".
  ASSERT_TRUE(wait_until([&] { return std::chrono::steady_clock::now() - t0 >= 1s; }, 5s));
  ASSERT_EQ(s->claim("g", "new"), claim_result::claimed);
  EXPECT_EQ(s->claim("g", "a"), claim_result::duplicate);
  EXPECT_EQ(s->claim("g", "b"), claim_result::duplicate);
}

TEST(memory_store, cleanup_removes_expired_entries_up_to_the_limit) {
  auto s = make_memory_store({.ttl = 150ms});
  for (std::size_t i = 0; i < 30; ++i) {
    ASSERT_EQ(s->claim("g", event_id(i)), claim_result::claimed);
    s->complete("g", event_id(i));
  }
  s->complete("g", "probe");  // stamped after all others: once it expired, so did they
  ASSERT_TRUE(wait_until([&] { return s->claim("g", "probe") == claim_result::claimed; }, 5s));
  EXPECT_EQ(s->cleanup(0), 0u);
  EXPECT_EQ(s->cleanup(10), 10u);
  EXPECT_EQ(s->cleanup(100), 20u);  // the probe's fresh claim is not expired
  EXPECT_EQ(s->cleanup(100), 0u);
  EXPECT_EQ(s->claim("g", "probe"), claim_result::in_progress);
}

TEST(memory_store, concurrent_claims_have_exactly_one_winner_per_id) {
  auto s = make_memory_store({});
  const auto counts = test::claim_concurrently({s.get()}, 4, 5000);
  EXPECT_TRUE(test::not_exactly_once(counts).empty()) << test::not_exactly_once(counts).size() << " ids";
}

TEST(memory_store, rejects_zero_bounds) {
  EXPECT_THROW(make_memory_store({.max_entries = 0}), outbox_error);
  EXPECT_THROW(make_memory_store({.ttl = 0ms}), outbox_error);
}

}  // namespace
}  // namespace outbox::dedupe
