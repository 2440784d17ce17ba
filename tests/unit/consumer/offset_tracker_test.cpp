#include "outbox/consumer/offset_tracker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace outbox::consumer {
namespace {

TEST(partition_offsets, commits_one_past_the_finished_prefix) {
  partition_offsets p;
  EXPECT_EQ(p.committable(), -1);
  for (std::int64_t o = 0; o < 5; ++o) ASSERT_TRUE(p.started(o));
  EXPECT_TRUE(p.finished(1));
  EXPECT_EQ(p.committable(), -1) << "offset 0 is still running";
  EXPECT_TRUE(p.finished(0));
  EXPECT_EQ(p.committable(), 2);
  EXPECT_TRUE(p.finished(3));
  EXPECT_EQ(p.committable(), 2);
  EXPECT_TRUE(p.finished(2));
  EXPECT_EQ(p.committable(), 4);
  EXPECT_EQ(p.in_flight(), 1u);
  EXPECT_TRUE(p.finished(4));
  EXPECT_EQ(p.committable(), 5);
  EXPECT_EQ(p.in_flight(), 0u);
}

TEST(partition_offsets, skips_offset_gaps_such_as_transaction_markers) {
  partition_offsets p;
  ASSERT_TRUE(p.started(10));
  ASSERT_TRUE(p.started(12));  // 11 is a control record the consumer never sees
  ASSERT_TRUE(p.started(20));
  EXPECT_TRUE(p.finished(12));
  EXPECT_EQ(p.committable(), -1);
  EXPECT_TRUE(p.finished(10));
  EXPECT_EQ(p.committable(), 13);
  EXPECT_TRUE(p.finished(20));
  EXPECT_EQ(p.committable(), 21);
}

TEST(partition_offsets, rejects_out_of_order_starts_and_unknown_finishes) {
  partition_offsets p;
  ASSERT_TRUE(p.started(5));
  EXPECT_FALSE(p.started(5)) << "a record seen twice (fetch overlapping a seek) is not started again";
  EXPECT_FALSE(p.started(3));
  EXPECT_FALSE(p.started(-1));
  EXPECT_FALSE(p.finished(4));
  EXPECT_TRUE(p.finished(5));
  EXPECT_FALSE(p.finished(5)) << "finishing twice";
  EXPECT_EQ(p.committable(), 6);
}

/// The reference: one past the largest started offset whose predecessors (and itself) are all finished.
std::int64_t expected_commit(const std::vector<std::int64_t>& started, const std::vector<bool>& done) {
  std::int64_t next = -1;
  for (std::size_t i = 0; i < started.size() && done[i]; ++i) next = started[i] + 1;
  return next;
}

TEST(partition_offsets, random_completion_orders_match_the_reference) {
  std::mt19937_64 rng(20240531);
  for (int round = 0; round < 200; ++round) {
    const std::size_t n = 1 + rng() % 300;
    std::vector<std::int64_t> offsets;
    std::int64_t o = static_cast<std::int64_t>(rng() % 1000);
    for (std::size_t i = 0; i < n; ++i) {
      offsets.push_back(o);
      o += 1 + static_cast<std::int64_t>(rng() % 3 == 0 ? rng() % 4 : 0);  // occasional gaps
    }
    partition_offsets p;
    std::vector<bool> done(n, false);
    std::vector<std::size_t> order(n);
    for (std::size_t i = 0; i < n; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    // Interleave starts and finishes: a record may finish only after it started.
    std::size_t started = 0;
    std::int64_t last_commit = -1;
    for (const std::size_t idx : order) {
      while (started <= idx) ASSERT_TRUE(p.started(offsets[started++]));
      ASSERT_TRUE(p.finished(offsets[idx]));
      done[idx] = true;
      const std::vector<std::int64_t> seen(offsets.begin(), offsets.begin() + static_cast<std::ptrdiff_t>(started));
      ASSERT_EQ(p.committable(), expected_commit(seen, done)) << "round " << round;
      ASSERT_GE(p.committable(), last_commit) << "the commit position never goes back";
      last_commit = p.committable();
    }
    EXPECT_EQ(p.committable(), offsets.back() + 1);
    EXPECT_EQ(p.in_flight(), 0u);
  }
}

TEST(offset_tracker, pending_positions_follow_sends_and_broker_answers) {
  offset_tracker t;
  const topic_partition a{"payments", 0};
  const topic_partition b{"payments", 1};
  t.assign(a);
  t.assign(b);
  EXPECT_TRUE(t.pending().empty());
  ASSERT_TRUE(t.started(a, 0));
  ASSERT_TRUE(t.started(b, 7));
  ASSERT_TRUE(t.finished(a, 0));
  auto p = t.pending();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].where, a);
  EXPECT_EQ(p[0].offset, 1);

  t.commit_sent(p[0]);
  EXPECT_TRUE(t.pending().empty()) << "sent, not answered yet: not sent again";
  t.commit_result(p[0], false);
  ASSERT_EQ(t.pending().size(), 1u) << "a failed commit is pending again";
  t.commit_sent(p[0]);
  t.commit_result(p[0], true);
  EXPECT_EQ(t.committed(a), 1);
  EXPECT_TRUE(t.pending().empty());

  ASSERT_TRUE(t.finished(b, 7));
  const std::vector<topic_partition> only_a{a};
  EXPECT_TRUE(t.pending(&only_a).empty());
  ASSERT_EQ(t.pending().size(), 1u);

  t.revoke(b);
  EXPECT_FALSE(t.assigned(b));
  EXPECT_TRUE(t.pending().empty());
  EXPECT_FALSE(t.started(b, 8)) << "records of a revoked partition are not processed";
  t.assign(b);
  EXPECT_TRUE(t.started(b, 3)) << "a re-assigned partition starts fresh from the committed offset";
}

}  // namespace
}  // namespace outbox::consumer

namespace outbox::consumer {
namespace {

// A lost batch of inbox records: the partition is read again from its first record, finished or not.
TEST(partition_offsets, rewind_forgets_from_an_offset_on_and_lets_those_records_start_again) {
  partition_offsets p;
  for (std::int64_t o = 0; o < 6; ++o) ASSERT_TRUE(p.started(o));
  ASSERT_TRUE(p.finished(0));
  ASSERT_TRUE(p.finished(1));
  ASSERT_TRUE(p.finished(4));  // finished, but after the rewind point
  EXPECT_EQ(p.committable(), 2);
  p.rewind(3);
  EXPECT_EQ(p.committable(), 2) << "nothing below the rewind point changes";
  EXPECT_EQ(p.in_flight(), 1u) << "only offset 2 is still in flight";
  EXPECT_FALSE(p.finished(4)) << "offset 4 is forgotten";
  EXPECT_FALSE(p.started(2)) << "offset 2 was never forgotten";
  EXPECT_TRUE(p.started(3));
  EXPECT_TRUE(p.started(4));
  ASSERT_TRUE(p.finished(2));
  ASSERT_TRUE(p.finished(3));
  EXPECT_EQ(p.committable(), 4);
}

}  // namespace
}  // namespace outbox::consumer
