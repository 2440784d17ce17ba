// The retry flow without a broker: where a record goes after each attempt, dependency waits, refused copies,
// the breaker's halt and probe, per-key holds, replays and another group's copies.
#include "flow_context.hpp"

#include <gtest/gtest.h>

#include <set>

namespace outbox::consumer::detail::test {
namespace {

using namespace std::chrono_literals;

TEST(retry_flow, a_repeated_delay_is_one_attempt_per_entry_and_every_attempt_reaches_the_dead_letter) {
  flow_context ctx({.tiers = {1s, 1s, 2s}, .in_process_attempts = 1});
  ctx.handler = [](const record&) { return outcome::retry("unknown account a9"); };
  EXPECT_FALSE(ctx.arrive(flow_context::source("e1", 5)).has_value()) << "parked: its offset may move on";
  ASSERT_EQ(ctx.sink.sent.size(), 1u);
  EXPECT_EQ(ctx.sink.sent[0].topic, "payments.g.retry.1s");
  EXPECT_EQ(ctx.header(0, "retry_tier"), "0");
  EXPECT_EQ(ctx.header(0, "retry_attempt"), "1");
  EXPECT_EQ(ctx.header(0, "retry_consumer_group"), "g");
  EXPECT_EQ(ctx.header(0, "retry_original_offset"), "5");
  EXPECT_EQ(ctx.header(0, "trace"), "t-e1") << "the record's own headers travel along";

  // The copy comes back from the 1s topic as entry 0; it fails and goes to entry 1, the same topic again.
  auto p = ctx.come_due(0, 1s);
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(ctx.sink.sent.size(), 2u);
  EXPECT_EQ(ctx.sink.sent[1].topic, "payments.g.retry.1s");
  EXPECT_EQ(ctx.header(1, "retry_tier"), "1") << "not collapsed onto entry 0";
  EXPECT_EQ(ctx.header(1, "retry_attempt"), "2");

  p = ctx.come_due(1, 1s);
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(ctx.sink.sent.size(), 3u);
  EXPECT_EQ(ctx.sink.sent[2].topic, "payments.g.retry.2s");
  EXPECT_EQ(ctx.header(2, "retry_tier"), "2");

  p = ctx.come_due(2, 2s);
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(ctx.sink.sent.size(), 4u);
  EXPECT_EQ(ctx.sink.sent[3].topic, "payments.g.dlq");
  EXPECT_EQ(ctx.header(3, "dlq_attempts"), "4") << "1 in process + 3 tier entries";
  EXPECT_EQ(ctx.header(3, "dlq_error_class"), "retry_exhausted");
  EXPECT_EQ(ctx.header(3, "dlq_original_offset"), "5");
  EXPECT_EQ(ctx.header(3, "retry_tier"), "(none)") << "retry bookkeeping is not a dead letter's";
  EXPECT_EQ(ctx.calls.size(), 4u);
  EXPECT_EQ(ctx.stats().parked, 3u);
  EXPECT_EQ(ctx.stats().dead_lettered, 1u);
}

TEST(retry_flow, the_handler_of_a_tier_copy_sees_the_original_topic_partition_and_offset) {
  flow_context ctx({.tiers = {1s}});
  std::vector<record> seen;
  ctx.handler = [&](const record& r) {
    seen.push_back(r);
    return seen.size() == 1 ? outcome::retry("later") : outcome::done();
  };
  ASSERT_FALSE(ctx.arrive(flow_context::source("e1", 9)));
  auto p = ctx.come_due(0, 1s);
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].topic, "payments");
  EXPECT_EQ(seen[1].partition, 0);
  EXPECT_EQ(seen[1].offset, 9);
  EXPECT_EQ(ctx.stats().processed, 1u);
}

TEST(retry_flow, a_copy_due_in_the_far_future_waits_no_longer_than_its_tier) {
  flow_context ctx({.tiers = {1s}});
  ctx.handler = [](const record&) { return outcome::retry("later"); };
  ASSERT_FALSE(ctx.arrive(flow_context::source("e1", 0)));
  record copy = ctx.sink.sent[0].rec;
  for (auto& h : copy.headers) {
    if (h.first == "retry_due_ms") h.second = "9999999999999";  // a clock far ahead, or a hand-made record
  }
  const auto before = flow_clock::now();
  auto p = ctx.flow().from_tier(copy, {copy.topic, 0}, "payments", 1s);
  ASSERT_TRUE(p.has_value());
  EXPECT_LE(p->due, before + 1s + 100ms);
  EXPECT_TRUE(ctx.calls.size() == 1) << "not run before it is due";
}

TEST(retry_flow, another_groups_copy_is_skipped_without_running_the_handler) {
  flow_context ctx({.tiers = {1s}});
  ctx.handler = [](const record&) { return outcome::retry("later"); };
  ASSERT_FALSE(ctx.arrive(flow_context::source("e1", 0)));
  record copy = ctx.sink.sent[0].rec;
  for (auto& h : copy.headers) {
    if (h.first == "retry_consumer_group") h.second = "notifier";
  }
  EXPECT_FALSE(ctx.flow().from_tier(copy, {copy.topic, 0}, "payments", 1s).has_value());
  EXPECT_EQ(ctx.calls.size(), 1u);
  EXPECT_EQ(ctx.stats().foreign_copies, 1u);
}

TEST(retry_flow, an_unreachable_store_waits_without_spending_attempts_dead_lettering_or_tripping_the_breaker) {
  flow_context ctx({.tiers = {}, .in_process_attempts = 1, .max_ratio = 0.1, .window = 10});
  ctx.store.fail_claims = 6;
  auto p = ctx.arrive(flow_context::source("e1", 0));
  ASSERT_TRUE(p.has_value()) << "it waits";
  EXPECT_EQ(p->waiting_on, "dedupe");
  EXPECT_EQ(p->attempts, 0);
  EXPECT_TRUE(ctx.settle(*p));
  EXPECT_EQ(ctx.calls.size(), 1u) << "the handler ran once the store answered";
  EXPECT_EQ(ctx.stats().processed, 1u);
  EXPECT_EQ(ctx.stats().dependency_errors, 6u);
  EXPECT_EQ(ctx.stats().retried, 0u);
  EXPECT_TRUE(ctx.sink.sent.empty()) << "nothing dead-lettered";
  EXPECT_FALSE(ctx.flow().halted());
}

TEST(retry_flow, a_failed_complete_is_tried_again_without_running_the_handler_again) {
  flow_context ctx;
  ctx.store.fail_completes = 2;
  auto p = ctx.arrive(flow_context::source("e1", 0));
  ASSERT_TRUE(p.has_value()) << "the offset waits until the outcome is recorded";
  EXPECT_TRUE(p->claim.complete_pending);
  EXPECT_TRUE(ctx.settle(*p));
  EXPECT_EQ(ctx.calls.size(), 1u);
  EXPECT_EQ(ctx.stats().processed, 1u);
  // Recorded: a redelivery of the event is a duplicate.
  EXPECT_FALSE(ctx.arrive(flow_context::source("e1", 1)).has_value());
  EXPECT_EQ(ctx.calls.size(), 1u);
  EXPECT_EQ(ctx.stats().duplicate, 1u);
}

TEST(retry_flow, a_claim_is_kept_across_in_process_attempts_and_given_up_when_the_record_leaves) {
  flow_context ctx({.tiers = {}, .in_process_attempts = 3});
  int n = 0;
  ctx.handler = [&](const record&) {
    ++n;
    EXPECT_EQ(ctx.store.claim("g", "e1", "another-worker"), dedupe::claim_result::in_progress) << "attempt " << n;
    return outcome::retry("not yet");
  };
  auto p = ctx.arrive(flow_context::source("e1", 0));
  ASSERT_TRUE(!p || ctx.settle(*p));
  EXPECT_EQ(n, 3);
  EXPECT_EQ(ctx.header(0, "dlq_attempts"), "3");
  EXPECT_EQ(ctx.store.claim("g", "e1", "another-worker"), dedupe::claim_result::claimed)
      << "dead-lettered: the claim is released so a replay can run it";
}

TEST(retry_flow, bad_event_ids_are_dead_lettered_at_once_without_the_handler) {
  flow_context ctx;
  for (const std::string& bad : {std::string(), std::string("a\0b", 3), std::string(1025, 'x'), std::string("\xff")}) {
    auto r = flow_context::source(bad, 0);
    auto p = ctx.arrive(r);
    ASSERT_TRUE(!p || ctx.settle(*p));
  }
  auto missing = flow_context::source("x", 0);
  missing.headers.clear();
  auto p = ctx.arrive(missing);
  ASSERT_TRUE(!p || ctx.settle(*p));
  EXPECT_TRUE(ctx.calls.empty());
  ASSERT_EQ(ctx.sink.sent.size(), 5u);
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(ctx.header(i, "dlq_error_class"), "bad_event_id") << i;
  EXPECT_EQ(ctx.header(4, "dlq_error_class"), "missing_event_id");
  EXPECT_NE(ctx.header(1, "dlq_error_message").find("NUL"), std::string::npos);
}

TEST(retry_flow, a_tier_copy_kafka_refuses_is_dead_lettered_with_the_reason) {
  flow_context ctx({.tiers = {1s}});
  ctx.handler = [](const record&) { return outcome::retry("unknown account"); };
  ctx.sink.answers = {send_status::refused};
  auto p = ctx.arrive(flow_context::source("e1", 0));
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(ctx.sink.sent.size(), 1u);
  EXPECT_EQ(ctx.sink.sent[0].topic, "payments.g.dlq");
  EXPECT_EQ(ctx.header(0, "dlq_error_class"), "retry_refused");
  EXPECT_NE(ctx.header(0, "dlq_error_message").find("Kafka refused the retry copy"), std::string::npos);
  EXPECT_NE(ctx.header(0, "dlq_error_message").find("unknown account"), std::string::npos);
}

TEST(retry_flow, kafka_down_waits_and_a_refused_dead_letter_halts_until_a_probe_gets_through) {
  flow_context ctx({.tiers = {}, .probe_interval = 20ms});
  ctx.handler = [](const record&) { return outcome::fatal("amount is negative"); };
  ctx.sink.answers = {send_status::retry_later, send_status::retry_later, send_status::refused};
  auto p = ctx.arrive(flow_context::source("e1", 0));
  ASSERT_TRUE(p.has_value());
  EXPECT_FALSE(ctx.settle(*p)) << "halted: waits for the probe";
  EXPECT_EQ(ctx.stats().dependency_errors, 2u) << "Kafka unreachable twice: waited";
  EXPECT_TRUE(ctx.flow().halted());
  EXPECT_NE(ctx.flow().halt_reason().find("Kafka refuses the dead letter"), std::string::npos);
  EXPECT_TRUE(ctx.sink.sent.empty());
  flow_context::pass_time(*p);
  EXPECT_TRUE(ctx.settle(*p)) << "the probe: the handler runs again and Kafka takes the dead letter now";
  EXPECT_FALSE(ctx.flow().halted());
  EXPECT_EQ(ctx.calls.size(), 2u);
  EXPECT_EQ(ctx.sink.sent.size(), 1u);
}

TEST(retry_flow, the_breaker_halts_instead_of_dead_lettering_and_a_successful_probe_closes_it) {
  flow_context ctx({.tiers = {}, .max_ratio = 0.5, .window = 4});
  ctx.handler = [](const record& r) {
    return r.event_id() == "good" ? outcome::done() : outcome::fatal("not JSON", "deserialization");
  };
  for (int i = 0; i < 2; ++i) {
    auto p = ctx.arrive(flow_context::source("bad-" + std::to_string(i), i));
    ASSERT_TRUE(!p || ctx.settle(*p));
  }
  EXPECT_EQ(ctx.sink.sent.size(), 2u) << "2 of 4 is the most 0.5 allows";
  auto held = ctx.arrive(flow_context::source("bad-2", 2));
  ASSERT_TRUE(held.has_value());
  EXPECT_FALSE(ctx.settle(*held));
  EXPECT_TRUE(ctx.flow().halted());
  EXPECT_NE(ctx.flow().halt_reason().find("DLQ breaker tripped"), std::string::npos);
  EXPECT_EQ(ctx.sink.sent.size(), 2u);
  // While halted, other records wait too.
  auto other = ctx.arrive(flow_context::source("good", 3));
  ASSERT_TRUE(other.has_value());
  // The probe fails: still halted.
  flow_context::pass_time(*held);
  EXPECT_FALSE(ctx.settle(*held));
  EXPECT_TRUE(ctx.flow().halted());
  // The cause is fixed: the probe succeeds, the breaker closes, the other record runs.
  ctx.handler = [](const record&) { return outcome::done(); };
  flow_context::pass_time(*held);
  EXPECT_TRUE(ctx.settle(*held));
  EXPECT_FALSE(ctx.flow().halted());
  EXPECT_EQ(ctx.breaker().dead_letters(), 0u) << "the window starts again from all good";
  flow_context::pass_time(*other);
  EXPECT_TRUE(ctx.settle(*other));
  EXPECT_EQ(ctx.stats().processed, 2u);
}

TEST(retry_flow, replays_are_not_counted_by_the_breaker) {
  flow_context ctx({.tiers = {}, .max_ratio = 0.5, .window = 2});
  ctx.handler = [](const record&) { return outcome::fatal("still broken"); };
  for (int i = 0; i < 5; ++i) {
    auto r = flow_context::source("replayed-" + std::to_string(i), i);
    r.headers.emplace_back("dlq_replay_count", "1");
    auto p = ctx.arrive(r);
    ASSERT_TRUE(!p || ctx.settle(*p));
  }
  EXPECT_EQ(ctx.sink.sent.size(), 5u);
  EXPECT_FALSE(ctx.flow().halted()) << "a replay of a batch whose cause is not fixed does not halt live traffic";
  EXPECT_EQ(ctx.breaker().dead_letters(), 0u);
}

TEST(retry_flow, a_record_from_the_replay_topic_runs_as_its_original_with_a_fresh_schedule) {
  flow_context ctx({.tiers = {}, .in_process_attempts = 2});
  std::vector<record> seen;
  ctx.handler = [&](const record& r) {
    seen.push_back(r);
    return seen.size() == 1 ? outcome::retry("once more") : outcome::done();
  };
  record r = flow_context::source("e1", 0, std::nullopt, "payments.g.replay");
  r.headers.emplace_back("dlq_replay_count", "1");
  for (const auto& h : record_format::retry_copy{{"payments", 2, 77, 5}, "g", -1, 0, 0, 0, {}}.headers()) {
    r.headers.push_back(h);
  }
  auto p = ctx.flow().start(r, {"payments.g.replay", 0}, true);
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(seen.size(), 2u) << "the in-process schedule again";
  EXPECT_EQ(seen[0].topic, "payments");
  EXPECT_EQ(seen[0].partition, 2);
  EXPECT_EQ(seen[0].offset, 77);
  EXPECT_EQ(ctx.stats().processed, 1u);
}

TEST(retry_flow, a_later_record_of_a_key_waits_behind_a_parked_one_and_runs_after_it) {
  flow_context ctx({.tiers = {1s}, .in_process_attempts = 1});
  bool a_may_pass = false;
  std::vector<std::string> applied;
  ctx.handler = [&](const record& r) {
    if (r.event_id() == "A" && !a_may_pass) return outcome::retry("not yet");
    applied.emplace_back(r.event_id());
    return outcome::done();
  };
  ASSERT_FALSE(ctx.arrive(flow_context::source("A", 0, "K")));  // parked: copy 0
  ASSERT_FALSE(ctx.arrive(flow_context::source("B", 1, "K")));  // held behind A: copy 1
  ASSERT_FALSE(ctx.arrive(flow_context::source("X", 2, "other")));
  EXPECT_EQ(applied, (std::vector<std::string>{"X"})) << "another key is not held";
  EXPECT_EQ(ctx.stats().held, 1u);
  EXPECT_EQ(ctx.holds().head("g", "payments", "K"), (dedupe::held_record{0, 0}));
  // B's copy comes due first: A is still the head, so it is parked again, unattempted.
  auto b = ctx.come_due(1, 1s);
  ASSERT_TRUE(!b || ctx.settle(*b));
  ASSERT_EQ(ctx.sink.sent.size(), 3u);
  EXPECT_EQ(ctx.sink.sent[2].rec.event_id(), "B");
  EXPECT_EQ(ctx.calls, (std::vector<std::string>{"A", "X"})) << "B was not attempted";
  // A later record of K arrives: held too, behind A and B.
  ASSERT_FALSE(ctx.arrive(flow_context::source("C", 3, "K")));
  EXPECT_EQ(ctx.sink.sent[3].rec.event_id(), "C");
  // A passes now: done and resolved; then B, then C, in their original order.
  a_may_pass = true;
  auto a = ctx.come_due(0, 1s);
  ASSERT_TRUE(!a || ctx.settle(*a));
  auto c_early = ctx.come_due(3, 1s);  // C's copy first: B is the head now, so C waits again
  ASSERT_TRUE(!c_early || ctx.settle(*c_early));
  auto b2 = ctx.come_due(2, 1s);
  ASSERT_TRUE(!b2 || ctx.settle(*b2));
  auto c = ctx.come_due(4, 1s);
  ASSERT_TRUE(!c || ctx.settle(*c));
  EXPECT_EQ(applied, (std::vector<std::string>{"X", "A", "B", "C"}));
  EXPECT_FALSE(ctx.holds().head("g", "payments", "K").has_value()) << "nothing of K is held any more";
}

TEST(retry_flow, a_dead_lettered_head_releases_its_key_with_a_count) {
  flow_context ctx({.tiers = {1s}, .in_process_attempts = 1});
  std::vector<std::string> applied;
  ctx.handler = [&](const record& r) {
    if (r.event_id() == "A") return outcome::retry("never");
    applied.emplace_back(r.event_id());
    return outcome::done();
  };
  ASSERT_FALSE(ctx.arrive(flow_context::source("A", 0, "K")));
  ASSERT_FALSE(ctx.arrive(flow_context::source("B", 1, "K")));
  auto a = ctx.come_due(0, 1s);  // A's last entry fails: the dead-letter topic
  ASSERT_TRUE(!a || ctx.settle(*a));
  EXPECT_EQ(ctx.sink.sent.back().topic, "payments.g.dlq");
  auto b = ctx.come_due(1, 1s);
  ASSERT_TRUE(!b || ctx.settle(*b));
  EXPECT_EQ(applied, (std::vector<std::string>{"B"}));
  EXPECT_FALSE(ctx.holds().head("g", "payments", "K").has_value());
}

TEST(retry_flow, without_per_key_ordering_a_later_record_passes_a_parked_one) {
  flow_context ctx({.tiers = {1s}, .per_key = false});
  ctx.handler = [](const record& r) { return r.event_id() == "A" ? outcome::retry("no") : outcome::done(); };
  ASSERT_FALSE(ctx.arrive(flow_context::source("A", 0, "K")));
  ASSERT_FALSE(ctx.arrive(flow_context::source("B", 1, "K")));
  EXPECT_EQ(ctx.calls, (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(ctx.stats().held, 0u);
}

}  // namespace
}  // namespace outbox::consumer::detail::test
