// What a handler is told and can say: the attempt context, retry_after, duplicate, and the dedupe key.
#include "flow_context.hpp"
#include "outbox/config/consumer_config.hpp"

#include <gtest/gtest.h>
#include <pqxx/except>

namespace outbox::consumer::detail::test {
namespace {

using namespace std::chrono_literals;

TEST(handler_api, the_attempt_context_counts_attempts_over_process_and_tiers_and_flags_the_last) {
  flow_context ctx({.tiers = {1s, 2s}, .in_process_attempts = 2});
  std::vector<attempt_info> seen;
  ctx.handler = [&](const record& r) {
    seen.push_back(r.attempt);
    return outcome::retry("provider answered 500");
  };
  auto p = ctx.arrive(flow_context::source("e1", 3));
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(ctx.sink.sent.size(), 1u);
  p = ctx.come_due(0, 1s);
  ASSERT_TRUE(!p || ctx.settle(*p));
  p = ctx.come_due(1, 2s);
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(ctx.sink.sent.size(), 3u);
  EXPECT_EQ(ctx.sink.sent[2].topic, "payments.g.dlq");

  ASSERT_EQ(seen.size(), 4u) << "2 in process, 1 per tier";
  for (std::size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].number, static_cast<std::int64_t>(i + 1)) << i;
    EXPECT_FALSE(seen[i].replay) << i;
  }
  EXPECT_EQ(seen[0].first_failure_ms, 0) << "nothing failed before the first attempt";
  EXPECT_GT(seen[1].first_failure_ms, 0);
  EXPECT_EQ(seen[2].first_failure_ms, seen[1].first_failure_ms) << "carried through the tier copy";
  EXPECT_EQ(seen[3].first_failure_ms, seen[1].first_failure_ms);
  EXPECT_EQ(seen[0].tier, -1);
  EXPECT_EQ(seen[1].tier, -1);
  EXPECT_EQ(seen[2].tier, 0);
  EXPECT_EQ(seen[2].tier_delay_ms, 1000);
  EXPECT_EQ(seen[3].tier, 1);
  EXPECT_EQ(seen[3].tier_delay_ms, 2000);
  EXPECT_FALSE(seen[0].last);
  EXPECT_FALSE(seen[1].last) << "the tiers are still ahead";
  EXPECT_FALSE(seen[2].last);
  EXPECT_TRUE(seen[3].last) << "its failure was dead-lettered";
}

TEST(handler_api, without_tiers_the_last_in_process_attempt_is_flagged_and_a_replay_is_named) {
  flow_context ctx({.tiers = {}, .in_process_attempts = 3});
  std::vector<attempt_info> seen;
  ctx.handler = [&](const record& r) {
    seen.push_back(r.attempt);
    return outcome::retry("not yet");
  };
  auto r = flow_context::source("e1", 0);
  r.headers.emplace_back("dlq_replay_count", "2");
  auto p = ctx.arrive(r);
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_FALSE(seen[0].last);
  EXPECT_FALSE(seen[1].last);
  EXPECT_TRUE(seen[2].last);
  EXPECT_EQ(ctx.sink.sent.size(), 1u);
  EXPECT_EQ(ctx.header(0, "dlq_error_class"), "retry_exhausted");
  for (const auto& a : seen) {
    EXPECT_TRUE(a.replay);
    EXPECT_EQ(a.replay_count, 2);
  }

  // One attempt allowed and no tiers: the first attempt is already the last, on the fast path too.
  flow_context once({.tiers = {}, .in_process_attempts = 1});
  bool last = false;
  once.handler = [&](const record& rec) {
    last = rec.attempt.last;
    return outcome::done();
  };
  EXPECT_FALSE(once.arrive(flow_context::source("e2", 1)).has_value());
  EXPECT_TRUE(last);
}

TEST(handler_api, retry_after_sets_the_in_process_delay) {
  flow_context ctx({.tiers = {}, .in_process_attempts = 3});
  int calls = 0;
  ctx.handler = [&](const record&) {
    return ++calls == 1 ? outcome::retry_after(30s, "HTTP 429, Retry-After: 30") : outcome::done();
  };
  const auto before = flow_clock::now();
  auto p = ctx.arrive(flow_context::source("e1", 0));
  ASSERT_TRUE(p.has_value()) << "it waits in process";
  EXPECT_GE(p->due - before, 30s) << "not the schedule's 1ms";
  EXPECT_LE(p->due - before, 31s);
  EXPECT_EQ(p->reason, "HTTP 429, Retry-After: 30");
  flow_context::pass_time(*p);
  ASSERT_TRUE(ctx.settle(*p));
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(ctx.stats().processed, 1u);
}

TEST(handler_api, retry_after_skips_the_tiers_too_short_for_it) {
  flow_context ctx({.tiers = {1s, 1min, 10min}, .in_process_attempts = 1});
  ctx.handler = [](const record&) { return outcome::retry_after(45s, "provider says try in 45 s"); };
  auto p = ctx.arrive(flow_context::source("e1", 0));
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(ctx.sink.sent.size(), 1u);
  EXPECT_EQ(ctx.sink.sent[0].topic, "payments.g.retry.1m") << "the 1s entry is skipped";
  EXPECT_EQ(ctx.header(0, "retry_tier"), "1");

  // Longer than every entry left: the last one.
  ctx.handler = [](const record&) { return outcome::retry_after(2h, "maintenance window"); };
  p = ctx.come_due(0, 1min);
  ASSERT_TRUE(!p || ctx.settle(*p));
  ASSERT_EQ(ctx.sink.sent.size(), 2u);
  EXPECT_EQ(ctx.sink.sent[1].topic, "payments.g.retry.10m");
  EXPECT_EQ(ctx.header(1, "retry_tier"), "2");
}

TEST(handler_api, duplicate_is_recorded_like_done_and_counted_as_a_duplicate) {
  flow_context ctx({.tiers = {}});
  ctx.handler = [](const record&) { return outcome::duplicate(); };
  EXPECT_FALSE(ctx.arrive(flow_context::source("e1", 0)).has_value());
  EXPECT_EQ(ctx.stats().duplicate, 1u);
  EXPECT_EQ(ctx.stats().processed, 0u);
  EXPECT_EQ(ctx.store.claim("g", "e1", "someone-else"), dedupe::claim_result::duplicate)
      << "the store has it as done, so a redelivery skips the handler";
  EXPECT_TRUE(ctx.sink.sent.empty());
}

TEST(handler_api, a_dedupe_key_makes_two_events_of_one_provider_transaction_one_effect) {
  flow_context ctx({.tiers = {}, .dedupe_key = dedupe_key_from_header("transaction_id")});
  auto first = flow_context::source("delivery-1", 0);
  first.headers.emplace_back("transaction_id", "wx-4200001");
  auto second = flow_context::source("delivery-2", 1);
  second.headers.emplace_back("transaction_id", "wx-4200001");
  auto other = flow_context::source("delivery-3", 2);
  other.headers.emplace_back("transaction_id", "wx-4200002");
  EXPECT_FALSE(ctx.arrive(first).has_value());
  EXPECT_FALSE(ctx.arrive(second).has_value());
  EXPECT_FALSE(ctx.arrive(other).has_value());
  EXPECT_EQ(ctx.calls, (std::vector<std::string>{"delivery-1", "delivery-3"}));
  EXPECT_EQ(ctx.stats().processed, 2u);
  EXPECT_EQ(ctx.stats().duplicate, 1u);
  EXPECT_EQ(ctx.store.claim("g", "wx-4200001", "t"), dedupe::claim_result::duplicate);
  EXPECT_EQ(ctx.store.claim("g", "delivery-1", "t"), dedupe::claim_result::claimed) << "keyed on the header only";
}

TEST(handler_api, a_record_without_its_dedupe_key_is_dead_lettered_unhandled) {
  flow_context ctx({.tiers = {1s}, .dedupe_key = dedupe_key_from_header("transaction_id")});
  auto p = ctx.arrive(flow_context::source("e1", 0));
  ASSERT_TRUE(!p || ctx.settle(*p));
  EXPECT_TRUE(ctx.calls.empty());
  ASSERT_EQ(ctx.sink.sent.size(), 1u);
  EXPECT_EQ(ctx.sink.sent[0].topic, "payments.g.dlq");
  EXPECT_EQ(ctx.header(0, "dlq_error_class"), "missing_event_id");
  EXPECT_NE(ctx.header(0, "dlq_error_message").find("dedupe key is empty"), std::string::npos);

  flow_context throwing(
      {.tiers = {}, .dedupe_key = [](const record&) -> std::string { throw std::runtime_error("value is not JSON"); }});
  p = throwing.arrive(flow_context::source("e2", 0));
  ASSERT_TRUE(!p || throwing.settle(*p));
  ASSERT_EQ(throwing.sink.sent.size(), 1u);
  EXPECT_NE(throwing.header(0, "dlq_error_message").find("value is not JSON"), std::string::npos);
  EXPECT_TRUE(throwing.calls.empty());
}

TEST(handler_api, an_infrastructure_failure_waits_without_spending_an_attempt_or_dead_lettering) {
  flow_context ctx({.tiers = {}, .in_process_attempts = 1, .max_ratio = 0.5, .window = 2});
  int calls = 0;
  std::vector<std::int64_t> numbers;
  ctx.handler = [&](const record& r) {
    numbers.push_back(r.attempt.number);
    if (++calls <= 5) throw pqxx::broken_connection("the ledger database went away");
    return outcome::done();
  };
  auto p = ctx.arrive(flow_context::source("e1", 0));
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->waiting_on, "handler");
  EXPECT_EQ(p->attempts, 0);
  ASSERT_TRUE(ctx.settle(*p));
  EXPECT_EQ(calls, 6) << "one attempt allowed, yet five failures of the database did not dead-letter it";
  EXPECT_EQ(numbers, (std::vector<std::int64_t>(6, 1))) << "none of them counted as an attempt";
  EXPECT_TRUE(ctx.sink.sent.empty());
  EXPECT_EQ(ctx.stats().processed, 1u);
  EXPECT_EQ(ctx.stats().dependency_errors, 5u);
  EXPECT_FALSE(ctx.flow().halted());
}

TEST(handler_api, a_fatal_sql_error_is_dead_lettered_on_its_first_attempt) {
  flow_context ctx({.tiers = {1s}, .in_process_attempts = 5});
  ctx.handler = [](const record&) -> outcome {
    throw pqxx::sql_error("ERROR: bigint out of range", "UPDATE accounts ...", "22003");
  };
  auto p = ctx.arrive(flow_context::source("e1", 0));
  ASSERT_TRUE(!p || ctx.settle(*p));
  EXPECT_EQ(ctx.calls.size(), 1u) << "neither the schedule nor the tier runs it again";
  ASSERT_EQ(ctx.sink.sent.size(), 1u);
  EXPECT_EQ(ctx.sink.sent[0].topic, "payments.g.dlq");
  EXPECT_EQ(ctx.header(0, "dlq_error_class"), "fatal");
  EXPECT_NE(ctx.header(0, "dlq_error_message").find("22003"), std::string::npos);
}

TEST(handler_api, from_config_maps_the_dedupe_key_header_and_inbox_create_table) {
  const auto cfg = config::parse_consumer_config(
      "consumer:\n  brokers: 127.0.0.1:9092\n  group_id: ledger\n  topics: [payments]\n"
      "dedupe:\n  store: postgres\n  dsn: host=db\n  key_header: transaction_id\n"
      "inbox:\n  create_table: false\n",
      "ledger.yaml");
  const consumer_options o = from_config(cfg);
  ASSERT_TRUE(o.dedupe_key);
  record r = flow_context::source("e1", 0);
  r.headers.emplace_back("transaction_id", "wx-9");
  EXPECT_EQ(o.dedupe_key(r), "wx-9");
  ASSERT_TRUE(o.inbox.has_value());
  EXPECT_FALSE(o.inbox->create_table);
  EXPECT_FALSE(from_config(config::parse_consumer_config("consumer:\n  brokers: b:1\n  group_id: g\n  topics: [t]\n",
                                                         "minimal.yaml"))
                   .dedupe_key)
      << "without key_header: the event_id header";
}

TEST(handler_api, a_dead_letter_hook_without_the_inbox_is_refused_at_construction) {
  consumer_options o;
  o.brokers = "127.0.0.1:1";
  o.group_id = "g";
  o.topics = {"payments"};
  o.on_dead_letter = [](const record&, const dead_letter_info&, pqxx::work&) {};
  try {
    consumer c(std::move(o), [](const record&) { return outcome::done(); });
    FAIL() << "constructed";
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().category, "config");
    EXPECT_NE(std::string(e.what()).find("on_dead_letter"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace outbox::consumer::detail::test
