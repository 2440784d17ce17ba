#pragma once
// What every dedupe store and every key_holds backend must do, written once and run against each of them
// (memory and SQLite in the unit tests, Redis and PostgreSQL in the integration tests).

#include "outbox/base/error.hpp"
#include "outbox/dedupe/key_holds.hpp"
#include "outbox/dedupe/store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace outbox::dedupe::test {

using namespace std::chrono_literals;

/// Polls `done` until it is true or `timeout` passes; returns the last result.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval, bounded by the deadline
  }
  return true;
}

/// Waits until `d` has passed since `t0` (a condition on the clock, bounded).
inline void wait_past(std::chrono::steady_clock::time_point t0, std::chrono::milliseconds d) {
  ASSERT_TRUE(wait_until([&] { return std::chrono::steady_clock::now() - t0 >= d; }, d + 5s));
}

/// "evt-<n>".
inline std::string event_id(std::size_t n) { return "evt-" + std::to_string(n); }

/// Opens a store with this retention and lease.
using store_factory =
    std::function<std::unique_ptr<store>(std::chrono::milliseconds retention, std::chrono::milliseconds lease)>;

/// `threads` workers (tokens `w<t>`) each run through all `ids` event ids (each from its own starting point) on
/// the stores given round-robin, completing what they claim; returns how often each id was claimed.
inline std::vector<int> claim_concurrently(const std::vector<store*>& stores, std::size_t threads, std::size_t ids) {
  std::vector<std::atomic<int>> claimed(ids);
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (std::size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      store& s = *stores[t % stores.size()];
      const std::string token = "w" + std::to_string(t);
      while (!go.load()) std::this_thread::yield();
      for (std::size_t i = 0; i < ids; ++i) {
        const std::size_t id = (i + t * 7) % ids;
        if (s.claim("g", event_id(id), token) == claim_result::claimed) {
          claimed[id].fetch_add(1);
          s.complete("g", event_id(id), token);
        }
      }
    });
  }
  go = true;
  for (auto& w : workers) w.join();
  std::vector<int> out;
  out.reserve(ids);
  for (auto& c : claimed) out.push_back(c.load());
  return out;
}

/// The ids in `counts` not claimed exactly once (empty is the invariant).
inline std::vector<std::size_t> not_exactly_once(const std::vector<int>& counts) {
  std::vector<std::size_t> bad;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] != 1) bad.push_back(i);
  }
  return bad;
}

/// Claimed, in progress for others, claimed again by its owner (a repeated call after a lost reply), done.
inline void check_claim_protocol(const store_factory& open) {
  auto s = open(1h, 60s);
  EXPECT_EQ(s->claim("g", "e1", "w1"), claim_result::claimed);
  EXPECT_EQ(s->claim("g", "e1", "w2"), claim_result::in_progress);
  EXPECT_EQ(s->claim("g", "e1", "w1"), claim_result::claimed) << "a retried claim finds its own token";
  EXPECT_TRUE(s->complete("g", "e1", "w1"));
  EXPECT_EQ(s->claim("g", "e1", "w2"), claim_result::duplicate);
  EXPECT_EQ(s->claim("g", "e1", "w1"), claim_result::duplicate);
  EXPECT_TRUE(s->complete("g", "e1", "w1")) << "completing twice is harmless";
  // Another group, or a group/id split differently, is another key.
  EXPECT_EQ(s->claim("other", "e1", "w2"), claim_result::claimed);
  EXPECT_EQ(s->claim("ge", "1", "w2"), claim_result::claimed);
  EXPECT_EQ(s->retention(), 1h);
  EXPECT_EQ(s->lease(), 60s);
}

/// Only the token that holds a claim completes or releases it; a done mark is never released.
inline void check_only_the_owner_touches_a_claim(const store_factory& open) {
  auto s = open(1h, 60s);
  ASSERT_EQ(s->claim("g", "e1", "w1"), claim_result::claimed);
  EXPECT_FALSE(s->release("g", "e1", "w2"));
  EXPECT_EQ(s->claim("g", "e1", "w3"), claim_result::in_progress) << "a foreign release must not free the claim";
  EXPECT_FALSE(s->complete("g", "e1", "w2"));
  EXPECT_EQ(s->claim("g", "e1", "w3"), claim_result::in_progress) << "a foreign complete must not mark it done";
  EXPECT_TRUE(s->release("g", "e1", "w1"));
  EXPECT_EQ(s->claim("g", "e1", "w2"), claim_result::claimed) << "released: claimable at once";
  EXPECT_TRUE(s->complete("g", "e1", "w2"));
  EXPECT_FALSE(s->release("g", "e1", "w2"));
  EXPECT_EQ(s->claim("g", "e1", "w3"), claim_result::duplicate) << "release never undoes done";
  EXPECT_FALSE(s->release("g", "never-claimed", "w1"));
}

/// A renewed claim keeps a second worker out past the lease; an unrenewed one is taken over, after which the
/// first worker can neither renew nor complete it.
inline void check_leases(const store_factory& open) {
  // A lease ten times the renewal cadence: a loaded machine that oversleeps a renewal does not lapse it.
  auto s = open(1h, 1000ms);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(s->claim("g", "e1", "w1"), claim_result::claimed);
  while (std::chrono::steady_clock::now() - t0 < 3000ms) {
    ASSERT_TRUE(s->renew("g", "e1", "w1"));
    ASSERT_EQ(s->claim("g", "e1", "w2"), claim_result::in_progress) << "renewed for three leases";
    std::this_thread::sleep_for(100ms);  // renewal cadence of a tenth of the lease
  }
  const auto stopped = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return s->claim("g", "e1", "w2") == claim_result::claimed; }, 5s));
  EXPECT_GE(std::chrono::steady_clock::now() - stopped, 800ms) << "taken over only after the lease";
  EXPECT_FALSE(s->renew("g", "e1", "w1"));
  EXPECT_FALSE(s->complete("g", "e1", "w1"));
  EXPECT_EQ(s->claim("g", "e1", "w3"), claim_result::in_progress);
  // A claim that ran out with nobody taking over may still be completed by its worker.
  ASSERT_EQ(s->claim("g", "e2", "w1"), claim_result::claimed);
  wait_past(std::chrono::steady_clock::now(), 1200ms);
  EXPECT_TRUE(s->complete("g", "e2", "w1"));
  EXPECT_EQ(s->claim("g", "e2", "w2"), claim_result::duplicate);
}

/// Empty, NUL-containing, oversized and non-UTF-8 event ids are fatal in every call.
inline void check_bad_event_ids(const store_factory& open) {
  auto s = open(1h, 60s);
  for (const std::string& bad :
       {std::string(), std::string("a\0b", 3), std::string(1025, 'x'), std::string("\xff\xfe")}) {
    try {
      s->claim("g", bad, "w1");
      ADD_FAILURE() << "claim accepted a bad event id of " << bad.size() << " bytes";
    } catch (const outbox_error& e) {
      EXPECT_EQ(e.value().retry, retry_class::fatal);
      EXPECT_NE(e.value().message.find("event_id"), std::string::npos) << e.value().message;
    }
    EXPECT_THROW(s->complete("g", bad, "w1"), outbox_error);
    EXPECT_THROW(s->release("g", bad, "w1"), outbox_error);
  }
  EXPECT_EQ(s->claim("g", std::string(1024, 'x'), "w1"), claim_result::claimed) << "1 KiB is allowed";
  EXPECT_EQ(s->claim("g", "z\xc3\xa4hler", "w1"), claim_result::claimed) << "UTF-8 is allowed";
}

/// Done marks expire after the retention.
inline void check_retention(const store_factory& open) {
  auto s = open(300ms, 60s);
  ASSERT_EQ(s->claim("g", "e1", "w1"), claim_result::claimed);
  ASSERT_TRUE(s->complete("g", "e1", "w1"));
  ASSERT_EQ(s->claim("g", "e1", "w2"), claim_result::duplicate);
  EXPECT_TRUE(wait_until([&] { return s->claim("g", "e1", "w2") == claim_result::claimed; }, 5s));
}

/// Every store's whole contract.
inline void check_store(const store_factory& open) {
  {
    SCOPED_TRACE("claim protocol");
    check_claim_protocol(open);
  }
  {
    SCOPED_TRACE("owner");
    check_only_the_owner_touches_a_claim(open);
  }
  {
    SCOPED_TRACE("leases");
    check_leases(open);
  }
  {
    SCOPED_TRACE("bad event ids");
    check_bad_event_ids(open);
  }
  {
    SCOPED_TRACE("retention");
    check_retention(open);
  }
}

/// Opens key holds with this lapse; two opens with the same arguments see the same holds when durable.
using holds_factory = std::function<std::unique_ptr<key_holds>(std::chrono::milliseconds lapse)>;

/// The oldest entry of a key is its head; adding again keeps the place; keys and groups are apart; entries
/// lapse; `durable`: a second instance sees the first's entries.
inline void check_holds(const holds_factory& open, bool durable) {
  auto h = open(1h);
  const std::string key("k\0\xff", 3);  // keys are bytes
  EXPECT_FALSE(h->head("g", "t", key));
  h->add("g", "t", key, {0, 5});
  h->add("g", "t", key, {0, 9});
  h->add("g", "t", key, {0, 7});
  h->add("g", "t", key, {0, 5});  // again: keeps its place
  EXPECT_EQ(h->head("g", "t", key), (held_record{0, 5}));
  EXPECT_FALSE(h->head("g2", "t", key)) << "groups are apart";
  EXPECT_FALSE(h->head("g", "t2", key)) << "topics are apart";
  EXPECT_FALSE(h->head("g", "t", "k")) << "keys are apart";
  if (durable) {
    auto other = open(1h);
    EXPECT_EQ(other->head("g", "t", key), (held_record{0, 5})) << "another instance sees the holds";
  }
  h->remove("g", "t", key, {0, 5});
  EXPECT_EQ(h->head("g", "t", key), (held_record{0, 9})) << "then the next in the order they were added";
  h->remove("g", "t", key, {0, 1});  // not there: nothing
  h->remove("g", "t", key, {0, 9});
  EXPECT_EQ(h->head("g", "t", key), (held_record{0, 7}));
  h->remove("g", "t", key, {0, 7});
  EXPECT_FALSE(h->head("g", "t", key));

  auto short_lived = open(300ms);
  short_lived->add("g", "lapse", "k", {1, 1});
  EXPECT_EQ(short_lived->head("g", "lapse", "k"), (held_record{1, 1}));
  EXPECT_TRUE(wait_until([&] { return !short_lived->head("g", "lapse", "k"); }, 5s)) << "an entry lapses";
}

}  // namespace outbox::dedupe::test
