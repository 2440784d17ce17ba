#include "outbox/relay/lsn_tracker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

namespace outbox::relay {
namespace {

using event_id = lsn_tracker::event_id;

/// The confirmation rule computed directly from the whole history, for comparison.
class reference_model {
 public:
  void begin() { m_txs.push_back(transaction{0, {}, false}); }
  void add_event(event_id id) { m_txs.back().events.push_back(id); }
  void commit(lsn_t end_lsn) {
    m_txs.back().end_lsn = end_lsn;
    m_txs.back().committed = true;
    m_last_committed = std::max(m_last_committed, end_lsn);
  }
  void ack(event_id id) { m_acked.insert(id); }
  void observe(lsn_t pos) { m_server = std::max(m_server, pos); }

  /// Recomputes the rule and folds it into the never-decreasing result.
  lsn_t confirmable() {
    lsn_t candidate = 0;
    bool all_acked = true;
    for (const auto& t : m_txs) {
      for (const auto id : t.events) all_acked = all_acked && m_acked.count(id) == 1;
      if (!all_acked || !t.committed) break;
      candidate = t.end_lsn;
    }
    const bool open = !m_txs.empty() && !m_txs.back().committed;
    if (!open && all_acked) candidate = std::max({candidate, m_server, m_last_committed});
    m_result = std::max(m_result, candidate);
    return m_result;
  }

  /// Invariant: nothing at or past the end of a transaction with an unacknowledged event is confirmed.
  [[nodiscard]] bool respects_unacked(lsn_t confirmed) const {
    return std::all_of(m_txs.begin(), m_txs.end(), [&](const transaction& t) {
      const bool unacked =
          std::any_of(t.events.begin(), t.events.end(), [&](event_id id) { return m_acked.count(id) == 0; });
      return !unacked || !t.committed || confirmed < t.end_lsn;
    });
  }

 private:
  struct transaction {
    lsn_t end_lsn;
    std::vector<event_id> events;
    bool committed;
  };
  std::vector<transaction> m_txs;
  std::set<event_id> m_acked;
  lsn_t m_server = 0;
  lsn_t m_last_committed = 0;
  lsn_t m_result = 0;
};

TEST(relay_lsn_tracker, starts_at_zero_and_idle) {
  const lsn_tracker t;
  EXPECT_EQ(t.confirmable(), 0U);
  EXPECT_EQ(t.inflight_events(), 0U);
  EXPECT_EQ(t.open_transactions(), 0U);
}

TEST(relay_lsn_tracker, confirms_a_transaction_only_after_all_its_events) {
  lsn_tracker t;
  t.begin(100);
  const auto a = t.add_event();
  const auto b = t.add_event();
  EXPECT_LT(a, b);
  t.commit(110);
  EXPECT_EQ(t.confirmable(), 0U);
  EXPECT_EQ(t.inflight_events(), 2U);
  t.ack(b);
  EXPECT_EQ(t.confirmable(), 0U);
  t.ack(a);
  EXPECT_EQ(t.confirmable(), 110U);
  EXPECT_EQ(t.inflight_events(), 0U);
  EXPECT_EQ(t.open_transactions(), 0U);
}

TEST(relay_lsn_tracker, acks_before_commit_wait_for_the_commit) {
  lsn_tracker t;
  t.begin(100);
  t.ack(t.add_event());
  EXPECT_EQ(t.confirmable(), 0U);
  EXPECT_EQ(t.open_transactions(), 1U);
  t.commit(110);
  EXPECT_EQ(t.confirmable(), 110U);
}

TEST(relay_lsn_tracker, later_transaction_acked_first_waits_for_earlier) {
  lsn_tracker t;
  t.begin(100);
  const auto a = t.add_event();
  t.commit(110);
  t.begin(200);
  const auto b = t.add_event();
  t.commit(210);
  t.begin(300);
  const auto c = t.add_event();
  t.commit(310);
  t.ack(c);
  t.ack(b);
  EXPECT_EQ(t.confirmable(), 0U);
  EXPECT_EQ(t.open_transactions(), 3U);
  t.ack(a);
  EXPECT_EQ(t.confirmable(), 310U);
  EXPECT_EQ(t.open_transactions(), 0U);
}

TEST(relay_lsn_tracker, zero_event_transactions) {
  lsn_tracker t;
  t.begin(50);
  t.commit(60);
  EXPECT_EQ(t.confirmable(), 60U) << "nothing before it: confirmable at once";
  t.begin(100);
  const auto a = t.add_event();
  t.commit(110);
  for (lsn_t l = 200; l < 200 + 1000 * 10; l += 10) {
    t.begin(l);
    t.commit(l + 5);
  }
  EXPECT_EQ(t.confirmable(), 60U) << "empty transactions wait for the one before them";
  EXPECT_LE(t.open_transactions(), 1U) << "a run of empty transactions costs no memory";
  t.ack(a);
  EXPECT_EQ(t.confirmable(), 200U + 999 * 10 + 5);
}

TEST(relay_lsn_tracker, server_position_only_used_when_idle) {
  lsn_tracker t;
  t.observe_server_position(1000);
  EXPECT_EQ(t.confirmable(), 1000U);
  t.begin(1100);
  t.observe_server_position(1200);
  EXPECT_EQ(t.confirmable(), 1000U) << "a transaction is open";
  const auto a = t.add_event();
  t.commit(1150);
  t.observe_server_position(1300);
  EXPECT_EQ(t.confirmable(), 1000U) << "an event is in flight";
  t.ack(a);
  EXPECT_EQ(t.confirmable(), 1300U) << "idle now: everything the server sent before 1300 is acknowledged";
  t.observe_server_position(1250);
  EXPECT_EQ(t.confirmable(), 1300U) << "never backwards";
  t.begin(1400);
  t.commit(1410);
  EXPECT_EQ(t.confirmable(), 1410U);
  t.observe_server_position(1500);
  EXPECT_EQ(t.confirmable(), 1500U);
}

TEST(relay_lsn_tracker, misuse_throws_logic_error) {
  lsn_tracker t;
  EXPECT_THROW(t.ack(1), std::logic_error);
  EXPECT_THROW(t.add_event(), std::logic_error);
  EXPECT_THROW(t.commit(10), std::logic_error);
  t.begin(5);
  EXPECT_THROW(t.begin(6), std::logic_error);
  const auto a = t.add_event();
  const auto b = t.add_event();
  EXPECT_THROW(t.ack(b + 1), std::logic_error);
  t.ack(b);
  EXPECT_THROW(t.ack(b), std::logic_error) << "double ack";
  t.commit(10);
  t.ack(a);
  EXPECT_THROW(t.ack(a), std::logic_error) << "double ack after the transaction was released";
  EXPECT_THROW(t.ack(0), std::logic_error);
  EXPECT_EQ(t.confirmable(), 10U);
  EXPECT_EQ(t.inflight_events(), 0U);
}

TEST(relay_lsn_tracker, can_be_reset_by_assignment) {
  lsn_tracker t;
  t.begin(5);
  static_cast<void>(t.add_event());
  t = lsn_tracker();
  t.observe_server_position(3);
  EXPECT_EQ(t.confirmable(), 3U);
  EXPECT_EQ(t.inflight_events(), 0U);
}

/// Random streams of transactions with random acknowledgement orders, checked step by step against the model.
TEST(relay_lsn_tracker, matches_reference_model_under_random_ack_orders) {
  std::mt19937 rng(0x5EED);
  for (int iteration = 0; iteration < 1000; ++iteration) {
    lsn_tracker t;
    reference_model model;
    std::vector<event_id> inflight;
    std::vector<event_id> handed_out;
    lsn_t cursor = 1 + rng() % 1000;
    bool open = false;
    lsn_t previous = 0;
    const int steps = 50 + static_cast<int>(rng() % 400);
    auto pick = [&](unsigned n) { return rng() % n; };

    for (int step = 0; step < steps || !inflight.empty() || open; ++step) {
      const bool draining = step >= steps;
      const unsigned action = pick(10);
      if (!draining && !open && action < 3) {
        cursor += 1 + pick(50);
        t.begin(cursor);
        model.begin();
        open = true;
      } else if (!draining && open && action < 5) {
        const event_id id = t.add_event();
        ASSERT_TRUE(handed_out.empty() || id > handed_out.back()) << "ids strictly increase";
        handed_out.push_back(id);
        inflight.push_back(id);
        model.add_event(id);
      } else if (open && (action < 6 || draining)) {
        cursor += 1 + pick(50);
        t.commit(cursor);
        model.commit(cursor);
        open = false;
      } else if (action == 6) {
        cursor += pick(20);
        t.observe_server_position(cursor);
        model.observe(cursor);
      } else if (!inflight.empty()) {
        // Mostly random order; sometimes the oldest, like a single partition would.
        const std::size_t i = pick(4) == 0 ? 0 : pick(static_cast<unsigned>(inflight.size()));
        const event_id id = inflight[i];
        inflight.erase(inflight.begin() + static_cast<std::ptrdiff_t>(i));
        t.ack(id);
        model.ack(id);
      }
      ASSERT_EQ(t.confirmable(), model.confirmable()) << "iteration " << iteration << " step " << step;
      ASSERT_TRUE(model.respects_unacked(t.confirmable())) << "iteration " << iteration << " step " << step;
      ASSERT_GE(t.confirmable(), previous);
      previous = t.confirmable();
      ASSERT_EQ(t.inflight_events(), inflight.size());
    }
    EXPECT_EQ(t.inflight_events(), 0U);
    EXPECT_EQ(t.open_transactions(), 0U) << "memory drops back once everything is acknowledged";
    EXPECT_EQ(t.confirmable(), model.confirmable());
    EXPECT_EQ(t.confirmable(), cursor) << "idle: the last commit or server position is confirmed";
    for (const auto id : handed_out) EXPECT_THROW(t.ack(id), std::logic_error);
  }
}

/// Confirmable never decreases, whatever is observed, and never passes the oldest unacknowledged event's transaction.
TEST(relay_lsn_tracker, monotonic_under_interleaved_acks_across_many_transactions) {
  std::mt19937 rng(42);
  lsn_tracker t;
  std::vector<std::pair<event_id, lsn_t>> inflight;  // event and its transaction's end LSN
  lsn_t cursor = 0;
  lsn_t last = 0;
  std::size_t peak_tracked = 0;
  for (int round = 0; round < 20'000; ++round) {
    cursor += 10;
    t.begin(cursor);
    const unsigned n = rng() % 4;
    std::vector<event_id> ids;
    for (unsigned i = 0; i < n; ++i) ids.push_back(t.add_event());
    cursor += 10;
    t.commit(cursor);
    for (const auto id : ids) inflight.emplace_back(id, cursor);
    if (rng() % 3 == 0) t.observe_server_position(cursor + rng() % 5);
    while (!inflight.empty() && rng() % 4 != 0) {
      const std::size_t i = rng() % inflight.size();
      t.ack(inflight[i].first);
      inflight.erase(inflight.begin() + static_cast<std::ptrdiff_t>(i));
    }
    ASSERT_GE(t.confirmable(), last);
    last = t.confirmable();
    for (const auto& [id, end] : inflight) ASSERT_LT(t.confirmable(), end);
    peak_tracked = std::max(peak_tracked, t.open_transactions());
  }
  for (const auto& [id, end] : inflight) t.ack(id);
  EXPECT_EQ(t.open_transactions(), 0U);
  EXPECT_GE(t.confirmable(), cursor);
  EXPECT_LT(peak_tracked, 1000U) << "tracked state follows the in-flight window, not the stream length";
}

}  // namespace
}  // namespace outbox::relay
