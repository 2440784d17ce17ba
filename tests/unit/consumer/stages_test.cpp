// The consumer's smaller stages without a broker: the breaker, per-key holds, offset commits, the topic plan,
// the topic checks and the attempt's lease renewal.
#include "flow_context.hpp"
#include "offset_commits.hpp"
#include "options_check.hpp"
#include "topic_plan.hpp"
#include "topic_setup.hpp"
#include "outbox/base/error.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace outbox::consumer::detail::test {
namespace {

using namespace std::chrono_literals;

TEST(dlq_breaker, trips_when_one_more_dead_letter_would_pass_the_ratio_of_the_window) {
  dlq_breaker b(0.5, 4);
  EXPECT_FALSE(b.would_trip());
  b.add(true);
  b.add(true);
  EXPECT_TRUE(b.would_trip()) << "a third of four would be more than half";
  b.add(false);
  b.add(false);
  EXPECT_FALSE(b.would_trip()) << "the next slot replaces the oldest dead letter: 2 of 4, not more than half";
  b.add(false);  // the ring rolls: the oldest dead letters leave the window
  b.add(false);
  EXPECT_EQ(b.dead_letters(), 0u);
  b.add(true);
  b.add(true);
  EXPECT_TRUE(b.would_trip());
  b.reset();
  EXPECT_EQ(b.dead_letters(), 0u);
  EXPECT_THROW(dlq_breaker(0, 4), std::invalid_argument);
  EXPECT_THROW(dlq_breaker(0.5, 0), std::invalid_argument);
}

TEST(key_order, the_oldest_parked_record_of_a_key_is_the_only_one_whose_turn_it_is) {
  auto holds = dedupe::make_memory_key_holds(1h);
  key_order order(*holds, "g");
  using turn = key_order::turn;
  EXPECT_EQ(order.turn_of("t", "K", {0, 1}), turn::free);
  order.parked("t", "K", {0, 1});
  EXPECT_EQ(order.turn_of("t", "K", {0, 1}), turn::first);
  EXPECT_EQ(order.turn_of("t", "K", {0, 2}), turn::behind);
  EXPECT_EQ(order.turn_of("t", "other", {0, 2}), turn::free);
  order.parked("t", "K", {0, 2});
  order.resolved("t", "K", {0, 1});
  EXPECT_EQ(order.turn_of("t", "K", {0, 2}), turn::first);
  order.resolved("t", "K", {0, 2});
  EXPECT_EQ(order.turn_of("t", "K", {0, 3}), turn::free);
  key_order other_group(*holds, "h");
  order.parked("t", "K", {0, 9});
  EXPECT_EQ(other_group.turn_of("t", "K", {0, 10}), turn::free) << "each group holds its own keys";
}

TEST(offset_commits, sends_what_is_finished_and_sends_again_what_failed) {
  offset_tracker offsets;
  consumer_metrics metrics(nullptr);
  std::vector<std::vector<commit_position>> sent;
  bool accept = true;
  offset_commits commits(offsets, metrics, [&](const std::vector<commit_position>& p) {
    sent.push_back(p);
    return accept;
  });
  const topic_partition tp{"t", 0};
  offsets.assign(tp);
  for (int o = 0; o < 3; ++o) offsets.started(tp, o);
  offsets.finished(tp, 0);
  offsets.finished(tp, 2);  // 1 is still running: the commit stops before it
  commits.send();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0][0].offset, 1);
  EXPECT_EQ(commits.outstanding(), 1);
  commits.send();
  EXPECT_EQ(sent.size(), 1u) << "nothing moved";
  commits.answered({{sent[0][0], false}});
  EXPECT_EQ(commits.outstanding(), 0);
  commits.send();
  ASSERT_EQ(sent.size(), 2u) << "a failed commit goes out again";
  commits.answered({{sent[1][0], true}});
  EXPECT_EQ(offsets.committed(tp), 1);
  offsets.finished(tp, 1);
  accept = false;
  commits.send();
  EXPECT_EQ(commits.outstanding(), 0) << "not even sent";
  accept = true;
  commits.send();
  EXPECT_EQ(sent.back()[0].offset, 3);
  EXPECT_EQ(metrics.stats().commits, 1u);
}

TEST(topic_plan, names_each_sources_tiers_replay_and_dead_letter_topics_for_the_group) {
  topic_plan plan("ledger", {"payments"}, {10s, 10s, 1min}, "{topic}.{group}.dlq");
  EXPECT_EQ(plan.delays(), (std::vector<std::chrono::milliseconds>{10s, 1min})) << "one topic per distinct delay";
  EXPECT_EQ(plan.subscription({"payments"}),
            (std::vector<std::string>{"payments", "payments.ledger.retry.10s", "payments.ledger.retry.1m",
                                      "payments.ledger.replay"}));
  EXPECT_EQ(plan.subscription({}), (std::vector<std::string>{"payments"})) << "derived topics only once they exist";
  ASSERT_NE(plan.role_of("payments.ledger.retry.1m"), nullptr);
  EXPECT_EQ(plan.role_of("payments.ledger.retry.1m")->role, topic_role::tier);
  EXPECT_EQ(plan.role_of("payments.ledger.retry.1m")->delay, 1min);
  EXPECT_EQ(plan.role_of("payments.ledger.replay")->role, topic_role::replay);
  EXPECT_EQ(plan.role_of("payments.notifier.retry.10s"), nullptr) << "another group's tier is nothing to us";
  EXPECT_EQ(plan.dlq_topic("payments"), "payments.ledger.dlq");
}

TEST(topic_plan, a_pattern_matches_sources_but_never_retry_replay_or_dead_letter_topics) {
  topic_plan plan("ledger", {"^pay.*"}, {10s}, "dead.{topic}");
  const std::vector<std::string> cluster = {"payments",
                                            "payouts",
                                            "orders",
                                            "payments.ledger.retry.10s",
                                            "payments.notifier.retry.10s",
                                            "payments.ledger.replay",
                                            "payments.notifier.dlq",
                                            "dead.payouts",
                                            "pay.retry.1500ms"};
  EXPECT_TRUE(plan.resolve(cluster));
  EXPECT_EQ(plan.sources(), (std::vector<std::string>{"payments", "payouts"}));
  EXPECT_FALSE(plan.resolve(cluster)) << "nothing changed";
  EXPECT_EQ(plan.role_of("payouts.ledger.retry.10s")->source, "payouts");
  EXPECT_TRUE(plan.role_of("payouts")->from_pattern);
  auto grown = cluster;
  grown.emplace_back("payrolls");
  EXPECT_TRUE(plan.resolve(grown));
  EXPECT_EQ(plan.sources().size(), 3u);
}

TEST(topic_plan, refuses_a_named_topic_that_is_the_groups_own_tier_or_dead_letter_topic) {
  EXPECT_THROW(topic_plan("ledger", {"payments", "payments.ledger.retry.10s"}, {10s}, "{topic}.{group}.dlq"),
               outbox_error);
  try {
    topic_plan("ledger", {"payments", "payments.ledger.dlq"}, {}, "{topic}.{group}.dlq");
    FAIL() << "expected an outbox_error";
  } catch (const outbox_error& e) {
    EXPECT_NE(std::string(e.what()).find("dead-letter topic of `payments`"), std::string::npos) << e.what();
  }
  EXPECT_THROW(topic_plan("ledger", {"^(bad"}, {}, "{topic}.{group}.dlq"), outbox_error);
  EXPECT_NO_THROW(topic_plan("ledger", {"payments", "payments.ledger.dlq"}, {}, "dead.{topic}"));
}

TEST(topic_setup, kafka_can_redeliver_for_retention_plus_a_segment_and_forever_without_delete) {
  EXPECT_EQ(kafka_horizon({{"retention.ms", "86400000"}, {"segment.ms", "604800000"}, {"cleanup.policy", "delete"}}),
            8 * 24h);
  EXPECT_FALSE(kafka_horizon({{"retention.ms", "-1"}}));
  EXPECT_FALSE(kafka_horizon({{"retention.ms", "1000"}, {"cleanup.policy", "compact"}}));
  EXPECT_EQ(kafka_horizon({{"retention.ms", "1000"}, {"cleanup.policy", "compact,delete"}}), 1s);
  EXPECT_EQ(tier_retention(7 * 24h, 1h), 7 * 24h);
  EXPECT_EQ(tier_retention(7 * 24h, 1000h), 10000h) << "at least ten times the delay";
}

TEST(topic_setup, the_dedupe_retention_must_cover_what_expired_offsets_can_bring_back) {
  const std::map<std::string, std::string> topic = {{"retention.ms", "86400000"}, {"segment.ms", "604800000"}};
  // Offsets expire after 7d, records live up to 8d: an idle group starts again from the earliest record.
  const auto problem = retention_problem("payments", topic, 7 * 24h, 7 * 24h, 24h);
  ASSERT_TRUE(problem.has_value());
  EXPECT_NE(problem->find("dedupe.retention 7d is shorter than what Kafka can redeliver from topic payments"),
            std::string::npos)
      << *problem;
  EXPECT_NE(problem->find("retention.ms 1d + segment.ms 7d = 8d"), std::string::npos) << *problem;
  EXPECT_NE(problem->find("offsets.retention.minutes is 7d"), std::string::npos) << *problem;
  EXPECT_NE(problem->find("at least 9d"), std::string::npos) << *problem;
  EXPECT_FALSE(retention_problem("payments", topic, 7 * 24h, 9 * 24h, 24h)) << "covered";
  EXPECT_FALSE(retention_problem("payments", topic, 30 * 24h, 1h, 24h)) << "offsets outlive every record";
  EXPECT_TRUE(retention_problem("log", {{"retention.ms", "-1"}}, 7 * 24h, 365 * 24h, 24h)) << "forever";
}

TEST(topic_setup, an_existing_derived_topic_with_fewer_replicas_or_a_shorter_retention_is_refused) {
  const kafka::topic_info source{"payments", 6, 3};
  EXPECT_FALSE(derived_topic_problem({"payments.g.dlq", 6, 3}, {{"retention.ms", "-1"}}, source, -1, 30 * 24h));
  const auto replicas = derived_topic_problem({"payments.g.dlq", 6, 1}, {}, source, -1, 30 * 24h);
  ASSERT_TRUE(replicas);
  EXPECT_NE(replicas->find("replication factor 1, less than 3"), std::string::npos) << *replicas;
  EXPECT_TRUE(derived_topic_problem({"payments.g.dlq", 6, 3}, {}, source, 5, 30 * 24h)) << "asked for 5";
  const auto retention =
      derived_topic_problem({"payments.g.dlq", 6, 3}, {{"retention.ms", "86400000"}}, source, -1, 30 * 24h);
  ASSERT_TRUE(retention);
  EXPECT_NE(retention->find("retention.ms 1d, less than the 30d it needs"), std::string::npos) << *retention;
}

TEST(attempt, a_handler_slower_than_the_lease_keeps_its_claim_renewed) {
  consumer_metrics metrics(nullptr);
  flaky_store store(300ms);
  std::atomic<bool> in_handler{false};
  std::atomic<int> stolen{0};
  attempt_runner runner(
      "g",
      [&](const record&) {
        in_handler = true;
        const auto until = std::chrono::steady_clock::now() + 1200ms;  // four leases
        while (std::chrono::steady_clock::now() < until) {
          if (store.claim("g", "e1", "second-worker") != dedupe::claim_result::in_progress) ++stolen;
          std::this_thread::sleep_for(50ms);  // the second worker's poll interval
        }
        return outcome::done();
      },
      &store, metrics);
  claim_state c;
  const attempt_result r = runner.run(flow_context::source("e1", 0), c);
  EXPECT_TRUE(in_handler);
  EXPECT_EQ(r.kind, attempt_kind::processed);
  EXPECT_EQ(stolen.load(), 0) << "a second worker got in while the handler ran";
  EXPECT_EQ(store.claim("g", "e1", "second-worker"), dedupe::claim_result::duplicate);
}

// The renewer does not wake for each record: after many quick handlers, and after it has gone idle, a slow handler
// still has its claim renewed from its own start.
TEST(attempt, after_many_quick_handlers_and_an_idle_moment_a_slow_one_keeps_its_claim_renewed) {
  consumer_metrics metrics(nullptr);
  flaky_store store(300ms);
  std::atomic<int> stolen{0};
  std::string slow;  // the event id whose handler outlasts the lease
  attempt_runner runner(
      "g",
      [&](const record& r) {
        if (r.event_id() != slow) return outcome::done();
        const auto until = std::chrono::steady_clock::now() + 1200ms;  // four leases
        while (std::chrono::steady_clock::now() < until) {
          if (store.claim("g", slow, "second-worker") != dedupe::claim_result::in_progress) ++stolen;
          std::this_thread::sleep_for(50ms);  // the second worker's poll interval
        }
        return outcome::done();
      },
      &store, metrics);
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 2000; ++i) {
      claim_state c;
      ASSERT_EQ(runner.run(flow_context::source("quick-" + std::to_string(round) + "-" + std::to_string(i), i), c).kind,
                attempt_kind::processed);
    }
    if (round == 1) std::this_thread::sleep_for(400ms);  // idle for more than a lease: the renewer parks
    slow = "slow-" + std::to_string(round);
    claim_state c;
    EXPECT_EQ(runner.run(flow_context::source(slow, 9999), c).kind, attempt_kind::processed);
    EXPECT_EQ(stolen.load(), 0) << "a second worker got " << slow << " while its handler ran";
    EXPECT_EQ(store.claim("g", slow, "second-worker"), dedupe::claim_result::duplicate);
  }
}

TEST(attempt, a_claim_held_by_another_worker_is_a_wait_not_an_attempt) {
  consumer_metrics metrics(nullptr);
  flaky_store store;
  int calls = 0;
  attempt_runner runner(
      "g",
      [&](const record&) {
        ++calls;
        return outcome::done();
      },
      &store, metrics);
  ASSERT_EQ(store.claim("g", "e1", "someone-else"), dedupe::claim_result::claimed);
  claim_state c;
  const attempt_result r = runner.run(flow_context::source("e1", 0), c);
  EXPECT_EQ(r.kind, attempt_kind::wait);
  EXPECT_EQ(r.dependency, "claim");
  EXPECT_FALSE(r.ran_handler);
  EXPECT_EQ(calls, 0);
  ASSERT_TRUE(store.complete("g", "e1", "someone-else"));
  EXPECT_EQ(runner.run(flow_context::source("e1", 0), c).kind, attempt_kind::duplicate);
}

}  // namespace
}  // namespace outbox::consumer::detail::test

namespace outbox::consumer::detail::test {
namespace {

TEST(options_check, options_built_by_hand_get_the_retention_check_and_a_warning_for_long_blocking_retries) {
  consumer_options o;
  o.group_id = "g";
  o.topics = {"t"};
  o.retry = wechatpay_policy();
  o.retry.max_attempts = 16;  // the whole WeChat schedule in process: 24 h 04 m holding a partition
  const retry_schedule schedule = checked_schedule(o.retry);
  ::testing::internal::CaptureStderr();
  EXPECT_NO_THROW(check_retention(o, schedule, std::chrono::hours(24 * 30)));
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("in-process retries can hold a partition for a long time"), std::string::npos) << log;
  try {
    check_retention(o, schedule, std::chrono::hours(24));
    FAIL() << "expected an outbox_error";
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().category, "config");
    EXPECT_NE(std::string(e.what()).find("dedupe.retention 1d is shorter than the retry schedule"), std::string::npos)
        << e.what();
  }
  o.group_id = "pay ledger";
  EXPECT_THROW(checked_group(o), outbox_error) << "the group is part of topic names";
  o.group_id = "g";
  o.dlq_topic = "{topic}";
  EXPECT_THROW(checked_group(o), outbox_error);
}

}  // namespace
}  // namespace outbox::consumer::detail::test
