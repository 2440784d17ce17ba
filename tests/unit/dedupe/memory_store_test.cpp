#include "dedupe_test_util.hpp"

#include "outbox/base/error.hpp"
#include "outbox/dedupe/key_holds.hpp"
#include "outbox/dedupe/store.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace outbox::dedupe {
namespace {

using namespace std::chrono_literals;
using test::event_id;
using test::wait_until;

TEST(memory_store, keeps_the_store_contract) {
  test::check_store([](std::chrono::milliseconds retention, std::chrono::milliseconds lease) {
    return make_memory_store({.ttl = retention, .lease = lease});
  });
}

TEST(memory_store, complete_without_claim_still_records_done) {
  auto s = make_memory_store({});
  EXPECT_TRUE(s->complete("g", "e1", "w1"));
  EXPECT_EQ(s->claim("g", "e1", "w2"), claim_result::duplicate);
}

TEST(memory_store, evicts_the_least_recently_used_entry_beyond_max_entries_and_counts_it) {
  auto s = make_memory_store({.max_entries = 100});
  for (std::size_t i = 0; i < 100; ++i) {
    ASSERT_EQ(s->claim("g", event_id(i), "w"), claim_result::claimed);
    s->complete("g", event_id(i), "w");
  }
  ASSERT_EQ(s->claim("g", event_id(0), "w"), claim_result::duplicate);  // 0 is now the most recently used
  for (std::size_t i = 100; i < 150; ++i) {
    ASSERT_EQ(s->claim("g", event_id(i), "w"), claim_result::claimed);
    s->complete("g", event_id(i), "w");
  }
  EXPECT_EQ(s->evicted(), 50u) << "done marks dropped before their time are counted";
  // Kept: 0 and 51..149 (100 entries); evicted: 1..50.
  EXPECT_EQ(s->claim("g", event_id(0), "w"), claim_result::duplicate);
  for (std::size_t i = 51; i < 150; ++i) EXPECT_EQ(s->claim("g", event_id(i), "w"), claim_result::duplicate) << i;
  EXPECT_EQ(s->claim("g", event_id(50), "w"), claim_result::claimed);
  EXPECT_EQ(s->claim("g", event_id(1), "w"), claim_result::claimed);
}

TEST(memory_store, stays_under_max_bytes) {
  constexpr std::size_t id_size = 1000;
  constexpr std::size_t max_bytes = std::size_t{64} * 1024;
  auto s = make_memory_store({.max_bytes = max_bytes});
  const auto id = [](std::size_t i) { return std::string(id_size - 8, 'x') + event_id(i); };
  constexpr std::size_t total = 1000;
  for (std::size_t i = 0; i < total; ++i) {
    ASSERT_EQ(s->claim("g", id(i), "w"), claim_result::claimed);
    s->complete("g", id(i), "w");
  }
  // What is kept is the newest suffix: count it from the newest down to the first forgotten id.
  std::size_t kept = 0;
  while (kept < total && s->claim("g", id(total - 1 - kept), "w") == claim_result::duplicate) ++kept;
  EXPECT_LE(kept * id_size, max_bytes);          // the bound holds even counting only the ids
  EXPECT_GE(kept, max_bytes / (id_size + 512));  // and the per-entry overhead estimate is not absurd
}

TEST(memory_store, evicts_expired_entries_before_live_ones) {
  auto s = make_memory_store({.max_entries = 3, .ttl = 1s});
  const auto t0 = std::chrono::steady_clock::now();
  s->complete("g", "old", "w");
  test::wait_past(t0, 500ms);
  s->complete("g", "a", "w");
  s->complete("g", "b", "w");
  ASSERT_EQ(s->claim("g", "old", "w"), claim_result::duplicate);  // "old" is now the most recently used
  // Once "old" expired (and "a", "b" not yet), a new entry must push out "old", not the least recently used "a".
  test::wait_past(t0, 1s);
  ASSERT_EQ(s->claim("g", "new", "w"), claim_result::claimed);
  EXPECT_EQ(s->claim("g", "a", "w"), claim_result::duplicate);
  EXPECT_EQ(s->claim("g", "b", "w"), claim_result::duplicate);
  EXPECT_EQ(s->evicted(), 0u) << "an expired entry leaving is not an eviction";
}

TEST(memory_store, cleanup_removes_expired_entries_up_to_the_limit) {
  auto s = make_memory_store({.ttl = 150ms});
  for (std::size_t i = 0; i < 30; ++i) {
    ASSERT_EQ(s->claim("g", event_id(i), "w"), claim_result::claimed);
    s->complete("g", event_id(i), "w");
  }
  s->complete("g", "probe", "w");  // stamped after all others: once it expired, so did they
  ASSERT_TRUE(wait_until([&] { return s->claim("g", "probe", "w") == claim_result::claimed; }, 5s));
  EXPECT_EQ(s->cleanup(0), 0u);
  EXPECT_EQ(s->cleanup(10), 10u);
  EXPECT_EQ(s->cleanup(100), 20u);  // the probe's fresh claim is not expired
  EXPECT_EQ(s->cleanup(100), 0u);
  EXPECT_EQ(s->claim("g", "probe", "other"), claim_result::in_progress);
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

TEST(memory_key_holds, keep_the_holds_contract_within_the_process) {
  test::check_holds([](std::chrono::milliseconds lapse) { return make_memory_key_holds(lapse); }, false);
}

}  // namespace
}  // namespace outbox::dedupe
