// The exactly-once effect on real Kafka, PostgreSQL and Redis where the review found it broken: two groups on
// one topic, pattern subscriptions with tiers, a complete() that fails, a handler slower than its lease, a
// handler that swallows an SQL error, and per-key order across rebalances and restarts.
#include "guarantee_support.hpp"
#include "ledger_support.hpp"
#include "outbox/base/record_format.hpp"
#include "outbox/kafka/admin.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"
#include "running_consumer.hpp"
#include "test_producer.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <atomic>
#include <csignal>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <map>
#include <mutex>
#include <set>

namespace outbox::consumer_test {
namespace {

using namespace std::chrono_literals;
using consumer::outcome;
using consumer::record;

/// The cluster's topic names.
std::vector<std::string> cluster_topics() {
  kafka::conf_builder conf;
  conf.set("bootstrap.servers", test::require_services().kafka_brokers).log_lines(true);
  const auto rk = conf.create(RD_KAFKA_PRODUCER, "a test admin client");
  std::vector<std::string> out;
  for (const auto& t : kafka::list_topics(rk.get(), 10s)) out.push_back(t.name);
  return out;
}

/// A topic's partitions and configuration.
std::pair<int, std::map<std::string, std::string>> describe(const std::string& topic) {
  kafka::conf_builder conf;
  conf.set("bootstrap.servers", test::require_services().kafka_brokers)
      .set("allow.auto.create.topics", "false")
      .log_lines(true);
  const auto rk = conf.create(RD_KAFKA_PRODUCER, "a test admin client");
  const auto info = kafka::describe_topic(rk.get(), topic, 10s);
  if (!info) return {0, {}};
  return {info->partitions, kafka::describe_topic_config(rk.get(), topic, 10s)};
}

outgoing event(const std::string& topic, const std::string& id, const std::string& key, int partition = -1) {
  return outgoing{topic, partition, key, R"({"id":")" + id + R"("})", {{"event_id", id}}};
}

class guarantees : public ledger_fixture {};

// Group `ledger` (payment-ledger, PostgreSQL inbox) parks callbacks for an account it does not know yet in its
// tiers; group `notifier` (the SDK with Redis) uses the same delays on the same topic and is restarted meanwhile.
// Neither runs the other's copies, and both effects are exact.
TEST_F(guarantees, two_groups_on_one_topic_with_the_same_tiers_never_run_each_others_copies) {
  create_topic(3);
  create_accounts({"a1", "a2"});
  const std::string notifier_group = test::unique_name("notifier");
  std::map<std::string, std::int64_t> expected{{"a1", 0}, {"a2", 0}, {"a9", 0}};
  std::set<std::string> ids;
  test_producer producer(test::require_services().kafka_brokers);
  for (int i = 0; i < 30; ++i) {
    const std::string account = i % 10 == 0 ? "a9" : (i % 2 == 0 ? "a1" : "a2");  // a9 does not exist yet
    const callback c{"cb-" + std::to_string(i), account, 100 + i};
    expected[account] += c.amount_cents;
    ids.insert(c.event_id);
    producer.send(to_record(m_topic, c));
  }
  producer.flush();

  auto ledger = start_ledger(
      write_config("{}", "ledger.yaml", "retry:\n  initial: 20ms\n  max: 50ms\n  attempts: 2\n  topics: [2s, 4s]\n"),
      "ledger.log");
  // The notifier fails a9's first attempt too, so that its own copies wait in tiers of the same delays.
  effect_log notified;
  std::mutex mu;
  std::map<std::string, int> attempts;
  std::vector<std::string> copies_seen;  // retry_consumer_group of every copy the notifier's handler saw
  auto notifier_handler = [&](const record& r) {
    std::lock_guard lock(mu);
    if (auto g = r.header(record_format::k_retry_consumer_group)) copies_seen.emplace_back(*g);
    if (r.header(record_format::k_retry_attempt) && !r.header(record_format::k_retry_consumer_group)) {
      copies_seen.emplace_back("(a copy without a group)");
    }
    const std::string id(r.event_id());
    if (r.key == "a9" && ++attempts[id] == 1) return outcome::retry("no address for a9 yet");
    notified.applied(id);
    return outcome::done();
  };
  const auto notifier_options = [&] {
    auto o = kafka_options({m_topic}, notifier_group);
    o.retry_topics = {2s, 4s};
    use_redis(o, redis_options(notifier_group));
    return o;
  };
  auto notifier = std::make_unique<running_consumer>(notifier_options(), notifier_handler);
  ASSERT_TRUE(test::wait_until([&] { return notified.size() >= 10; }, 60s)) << notified.size();
  notifier->stop();  // restarted meanwhile: Redis remembers what it applied
  notifier = std::make_unique<running_consumer>(notifier_options(), notifier_handler);

  ASSERT_TRUE(ledger->wait_for_log("record parked in a retry topic", 60s)) << ledger->log();
  create_accounts({"a9"});  // before the ledger's last tier: the parked callbacks are credited from a tier
  ASSERT_TRUE(test::wait_until([&] { return balances() == expected; }, 60s)) << ledger->log();
  ASSERT_TRUE(test::wait_until([&] { return notified.size() >= ids.size(); }, 60s)) << notified.size();
  notifier->stop();
  EXPECT_EQ(ledger->stop(SIGTERM, 30s), 0) << ledger->log();

  EXPECT_EQ(balances(), expected);
  EXPECT_EQ(inbox_rows(), static_cast<long long>(ids.size())) << "each callback credited once";
  notified.expect_exactly_once(ids);
  {
    std::lock_guard lock(mu);
    EXPECT_FALSE(copies_seen.empty()) << "the notifier ran copies of its own";
    for (const auto& g : copies_seen) EXPECT_EQ(g, notifier_group) << "the notifier ran a copy it did not park";
  }
  EXPECT_EQ(notifier->get().stats().foreign_copies, 0u);
  EXPECT_GT(test::kafka_record_count(m_topic + "." + m_group + ".retry.2s"), 0) << "the ledger's own tier";
  EXPECT_GT(test::kafka_record_count(m_topic + "." + notifier_group + ".retry.2s"), 0) << "the notifier's own tier";
  EXPECT_EQ(ledger->log().find("giving up on a record"), std::string::npos) << ledger->log();
}

TEST(guarantees_on_kafka, a_pattern_subscription_with_tiers_credits_each_event_once_and_never_chains_tiers) {
  const std::string prefix = test::unique_name("pat");
  const std::string a = prefix + "_payments_eu";
  const std::string b = prefix + "_payouts_us";
  test::kafka_create_topic(a, 2);
  test::kafka_create_topic(b, 2);
  test::kafka_create_topic(prefix + "_orders", 1);  // not matched
  const std::string group = test::unique_name("g");
  std::set<std::string> ids;
  {
    test_producer producer(test::require_services().kafka_brokers);
    for (int i = 0; i < 10; ++i) {
      for (const auto* t : {&a, &b}) {
        const std::string id = *t + "-" + std::to_string(i);
        ids.insert(id);
        producer.send(event(*t, id, "k" + std::to_string(i)));
      }
    }
    producer.flush();
  }
  effect_log credited;
  std::mutex mu;
  std::map<std::string, int> attempts;
  std::set<std::string> topics_seen;
  auto o = kafka_options({"^" + prefix + "_pay.*"}, group);
  o.retry_topics = {1s};
  o.dedupe = dedupe::make_memory_store({.ttl = std::chrono::hours(240)});
  o.check_retention = consumer::retention_check::off;  // the memory store's horizon is the process anyway
  running_consumer c(std::move(o), [&](const record& r) {
    std::lock_guard lock(mu);
    topics_seen.insert(r.topic);
    const std::string id(r.event_id());
    if (++attempts[id] == 1) return outcome::retry("first attempt fails");  // every event goes through a tier
    credited.applied(id);
    return outcome::done();
  });
  ASSERT_TRUE(test::wait_until([&] { return credited.size() >= ids.size(); }, 60s)) << credited.size();
  const auto stats = c.get().stats();
  c.stop();
  credited.expect_exactly_once(ids);
  EXPECT_EQ(stats.parked, ids.size());
  EXPECT_EQ(topics_seen, (std::set<std::string>{a, b})) << "the handler sees only the matched source topics";
  for (const auto& t : cluster_topics()) {
    if (!t.starts_with(prefix)) continue;
    EXPECT_EQ(t.find(".retry.1s.retry"), std::string::npos) << t;
    EXPECT_EQ(t.find(".dlq.dlq"), std::string::npos) << t;
  }
  EXPECT_EQ(describe(a + "." + group + ".retry.1s").first, 2) << "a tier has its source's partitions";
  EXPECT_EQ(describe(prefix + "_orders." + group + ".retry.1s").first, 0) << "no tier for an unmatched topic";
}

TEST(guarantees_on_kafka, a_complete_that_fails_while_redis_is_down_holds_the_offset_and_a_redelivery_is_skipped) {
  const std::string topic = test::unique_name("complete");
  const std::string group = test::unique_name("g");
  test::kafka_create_topic(topic, 1);
  test_producer producer(test::require_services().kafka_brokers);
  std::atomic<bool> entered{false};
  std::atomic<bool> go{false};
  effect_log effects;
  auto o = kafka_options({topic}, group);
  use_redis(o, redis_options(group));
  running_consumer c(std::move(o), [&](const record& r) {
    if (r.event_id() == "x1" && !entered.exchange(true)) {
      // the effect happens while Redis goes away
      EXPECT_TRUE(test::wait_until([&] { return go.load(); }, 60s, 10ms));
    }
    effects.applied(std::string(r.event_id()));
    return outcome::done();
  });
  producer.send(event(topic, "x1", "k"));
  producer.flush();
  ASSERT_TRUE(test::wait_until([&] { return entered.load(); }, 60s));
  services("stop", "redis");
  go = true;
  ASSERT_TRUE(test::wait_until([&] { return c.get().stats().dependency_errors >= 2; }, 30s));
  EXPECT_EQ(c.get().stats().processed, 0u) << "not done before the store has it";
  EXPECT_EQ(committed_offsets(test::require_services().kafka_brokers, group, topic, 1),
            (std::vector<std::int64_t>{-1001}))
      << "the offset waits for the outcome";
  services("start", "redis");
  ASSERT_TRUE(test::wait_until([&] { return c.get().stats().processed == 1; }, 30s));
  // An early redelivery (the relay republished x1): the store has its done mark.
  producer.send(event(topic, "x1", "k"));
  producer.flush();
  ASSERT_TRUE(test::wait_until([&] { return c.get().stats().duplicate == 1; }, 30s));
  ASSERT_TRUE(test::wait_until(
      [&] {
        return committed_offsets(test::require_services().kafka_brokers, group, topic, 1) ==
               std::vector<std::int64_t>{2};
      },
      30s));
  c.stop();
  EXPECT_EQ(effects.count("x1"), 1u) << "one effect";
}

TEST(guarantees_on_kafka, a_handler_slower_than_the_lease_keeps_a_second_worker_out_on_redis) {
  const std::string topic = test::unique_name("slow");
  const std::string group = test::unique_name("g");
  test::kafka_create_topic(topic, 2);
  const auto r = redis_options(group, 2s);
  effect_log effects;
  std::atomic<int> running{0};
  std::atomic<int> overlaps{0};
  auto slow = [&](const record& rec) {
    if (running.fetch_add(1) > 0) ++overlaps;
    std::this_thread::sleep_for(6s);  // three leases of work
    effects.applied(std::string(rec.event_id()));
    running.fetch_sub(1);
    return outcome::done();
  };
  auto member = [&] {
    auto o = kafka_options({topic}, group);
    use_redis(o, r);
    return o;
  };
  running_consumer a(member(), slow);
  ASSERT_TRUE(test::wait_until([&] { return a.get().assigned(); }, 60s));
  running_consumer b(member(), slow);
  ASSERT_TRUE(test::wait_until([&] { return a.get().assigned() && b.get().assigned(); }, 60s));
  test_producer producer(test::require_services().kafka_brokers);
  producer.send(event(topic, "charge-1", "k0", 0));  // the same event on both partitions
  producer.send(event(topic, "charge-1", "k1", 1));
  producer.flush();
  ASSERT_TRUE(test::wait_until(
      [&] {
        const auto sa = a.get().stats();
        const auto sb = b.get().stats();
        return sa.processed + sa.duplicate + sb.processed + sb.duplicate == 2;
      },
      60s));
  b.stop();
  a.stop();
  EXPECT_EQ(effects.count("charge-1"), 1u);
  EXPECT_EQ(overlaps.load(), 0);
}

// The "idempotent insert" idiom: catch the unique violation and return done. The transaction is aborted, so
// COMMIT would silently roll back the credit and the inbox row; the SDK sees it and retries instead.
TEST_F(guarantees, a_handler_that_swallows_an_sql_error_is_retried_and_its_event_is_not_lost) {
  create_topic(1);
  create_accounts({"a1"});
  test::pg_exec("CREATE TABLE " + m_schema + ".entries (event_id text PRIMARY KEY)");
  test::pg_exec("INSERT INTO " + m_schema + ".entries VALUES ('e1')");  // a stale row from an old import
  auto o = kafka_options({m_topic}, m_group);
  o.retry.max_attempts = 0;  // retry in process until done
  o.retry.initial = 100ms;
  o.retry.max = 100ms;
  o.inbox = consumer::inbox_options{m_dsn, "outbox_inbox", std::chrono::hours(240), {}, {}};
  const std::string schema = m_schema;
  consumer::consumer c(std::move(o), consumer::transactional_handler([schema](const record& r, pqxx::work& tx) {
                         try {
                           tx.exec_params("INSERT INTO " + schema + ".entries VALUES ($1)", std::string(r.event_id()));
                           tx.exec0("UPDATE " + schema + ".accounts SET balance_cents = balance_cents + 100");
                         } catch (const pqxx::unique_violation&) {
                           // "already there": the handler thinks it is done
                         }
                         return outcome::done();
                       }));
  std::thread runner([&] { c.run(); });
  test_producer producer(test::require_services().kafka_brokers);
  producer.send(to_record(m_topic, {"e1", "a1", 100}));
  producer.flush();
  ASSERT_TRUE(test::wait_until([&] { return c.stats().retried >= 1; }, 60s)) << "detected, retried";
  EXPECT_EQ(c.stats().processed, 0u) << "never counted as done";
  test::pg_exec("DELETE FROM " + m_schema + ".entries");  // the stale row goes: the next attempt applies it
  ASSERT_TRUE(test::wait_until([&] { return c.stats().processed == 1; }, 60s));
  c.stop();
  runner.join();
  EXPECT_EQ(balances(), (std::map<std::string, std::int64_t>{{"a1", 100}})) << "credited once";
  EXPECT_EQ(inbox_rows(), 1);
}

/// Key K gets A (fails until allowed, so it waits in the tiers) and later records behind it.
struct ordered_service {
  explicit ordered_service(std::string topic_name, std::string group_name)
      : topic(std::move(topic_name)), group(std::move(group_name)), store(redis_options(group)) {}

  consumer::consumer_options options() const {
    auto o = kafka_options({topic}, group);
    o.retry_topics = std::vector<std::chrono::milliseconds>(30, 1s);
    use_redis(o, store);
    return o;
  }
  std::unique_ptr<running_consumer> start() {
    return std::make_unique<running_consumer>(options(), [this](const record& r) {
      if (r.event_id() == "A" && !a_may_pass.load()) return outcome::retry("account of A unknown");
      applied.applied(std::string(r.event_id()), r.key.value_or(""));
      return outcome::done();
    });
  }

  std::string topic;
  std::string group;
  dedupe::redis_options store;
  std::atomic<bool> a_may_pass{false};
  effect_log applied;
};

TEST(guarantees_on_kafka, per_key_order_survives_a_rebalance) {
  ordered_service svc(test::unique_name("order"), test::unique_name("g"));
  test::kafka_create_topic(svc.topic, 2);
  test_producer producer(test::require_services().kafka_brokers);
  for (const char* id : {"A", "B", "C"}) producer.send(event(svc.topic, id, "K", 0));
  producer.send(event(svc.topic, "X", "other", 1));
  producer.flush();
  auto first = svc.start();
  ASSERT_TRUE(test::wait_until([&] { return first->get().stats().held >= 2; }, 60s)) << "B and C held behind A";
  auto second = svc.start();  // a rebalance moves partitions and tier partitions
  ASSERT_TRUE(test::wait_until([&] { return first->get().assigned() && second->get().assigned(); }, 60s));
  producer.send(event(svc.topic, "D", "K", 0));
  producer.flush();
  ASSERT_TRUE(test::wait_until([&] { return first->get().stats().held + second->get().stats().held >= 6; }, 60s))
      << "D held too, and the held records cycled on both instances";
  EXPECT_EQ(svc.applied.of_key("K"), std::vector<std::string>{}) << "nothing of K ran before A";
  svc.a_may_pass = true;
  ASSERT_TRUE(test::wait_until([&] { return svc.applied.of_key("K").size() == 4; }, 60s))
      << svc.applied.of_key("K").size();
  second->stop();
  first->stop();
  EXPECT_EQ(svc.applied.of_key("K"), (std::vector<std::string>{"A", "B", "C", "D"}));
  EXPECT_EQ(svc.applied.of_key("other"), std::vector<std::string>{"X"});
}

TEST(guarantees_on_kafka, per_key_order_survives_a_restart_with_a_parked_head) {
  ordered_service svc(test::unique_name("order"), test::unique_name("g"));
  test::kafka_create_topic(svc.topic, 1);
  test_producer producer(test::require_services().kafka_brokers);
  producer.send(event(svc.topic, "A", "K"));
  producer.send(event(svc.topic, "B", "K"));
  producer.flush();
  auto before = svc.start();
  ASSERT_TRUE(test::wait_until([&] { return before->get().stats().held >= 1; }, 60s)) << "B held behind A";
  before->stop();
  auto after = svc.start();  // a new process: the holds are in Redis
  producer.send(event(svc.topic, "C", "K"));
  producer.flush();
  ASSERT_TRUE(test::wait_until([&] { return after->get().stats().held >= 2; }, 60s))
      << "C is held behind A, which is still parked";
  EXPECT_TRUE(svc.applied.of_key("K").empty());
  svc.a_may_pass = true;
  ASSERT_TRUE(test::wait_until([&] { return svc.applied.of_key("K").size() == 3; }, 60s));
  after->stop();
  EXPECT_EQ(svc.applied.of_key("K"), (std::vector<std::string>{"A", "B", "C"}));
}

TEST_F(guarantees, inbox_cleanup_catches_up_with_a_large_backlog) {
  create_topic(1);
  auto o = kafka_options({m_topic}, m_group);
  o.inbox = consumer::inbox_options{m_dsn, "outbox_inbox", std::chrono::hours(240), {}, {}};
  o.cleanup_interval = 500ms;
  consumer::consumer c(std::move(o),
                       consumer::transactional_handler([](const record&, pqxx::work&) { return outcome::done(); }));
  // 20,000 rows past the retention, written before the consumer runs: 20 minutes at 1,000 rows a minute.
  test::pg_exec("INSERT INTO " + m_schema +
                ".outbox_inbox (consumer_group, event_id, processed_at)"
                " SELECT 'old', 'evt-' || n, now() - interval '11 days' FROM generate_series(1, 20000) n");
  test::pg_exec("INSERT INTO " + m_schema + ".outbox_inbox (consumer_group, event_id) VALUES ('old', 'recent')");
  const auto start = std::chrono::steady_clock::now();
  std::thread runner([&] { c.run(); });
  const auto old_rows = [&] {
    return std::stoll(test::pg_scalar("SELECT count(*) FROM " + m_schema +
                                      ".outbox_inbox WHERE processed_at < now() - interval '10 days'"));
  };
  const bool caught_up = test::wait_until([&] { return old_rows() == 0; }, 60s, 200ms);
  const auto took = std::chrono::steady_clock::now() - start;
  c.stop();
  runner.join();
  ASSERT_TRUE(caught_up) << old_rows() << " expired rows left";
  std::cout << "[ cleanup  ] 20000 expired inbox rows deleted in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
  EXPECT_LT(took, 30s);
  EXPECT_EQ(inbox_rows(), 0);
  EXPECT_EQ(test::pg_scalar("SELECT count(*) FROM " + m_schema + ".outbox_inbox"), "1") << "the recent row stays";
}

TEST_F(guarantees, start_up_creates_the_groups_topics_with_the_sources_partitions_and_safe_retention) {
  create_topic(3);
  auto ledger =
      start_ledger(write_config("{}", "ledger.yaml", "retry:\n  attempts: 2\n  topics: [1s, 1s, 2d]\n"), "ledger.log");
  ASSERT_TRUE(ledger->wait_for_log("\"msg\":\"subscribed\"", 60s)) << ledger->log();
  const std::string base = m_topic + "." + m_group;
  for (const auto& [topic, retention] :
       std::vector<std::pair<std::string, std::string>>{{base + ".retry.1s", "604800000"},
                                                        {base + ".retry.2d", "1728000000"},  // ten times 2d
                                                        {base + ".replay", "604800000"},
                                                        {base + ".dlq", "2592000000"}}) {
    const auto [partitions, config] = describe(topic);
    EXPECT_EQ(partitions, 3) << topic;
    EXPECT_EQ(config.count("retention.ms") ? config.at("retention.ms") : "", retention) << topic;
  }
  EXPECT_EQ(describe(base + ".retry.1s").first, 3) << "a repeated delay shares one topic";
  EXPECT_EQ(ledger->stop(SIGTERM, 30s), 0) << ledger->log();
}

TEST_F(guarantees, start_up_refuses_what_would_let_an_effect_happen_twice_naming_the_numbers) {
  create_topic(3);
  std::string yaml;
  {
    std::ifstream in(write_config());
    std::stringstream s;
    s << in.rdbuf();
    yaml = s.str();
  }
  const auto run = [&](const std::string& text) {
    const std::string path = m_dir + "/check.yaml";
    std::ofstream(path) << text;
    return test::run_command({ledger_binary(), "--config", path}, 60s);
  };
  // The local broker keeps records 1d + segment.ms 7d and offsets 7d: a 7d dedupe retention is too short.
  std::string short_retention = yaml;
  short_retention.replace(short_retention.find("retention: 10d"), 14, "retention: 7d");
  auto r = run(short_retention);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("dedupe.retention 7d is shorter than what Kafka can redeliver from topic " + m_topic +
                          " (retention.ms 1d + segment.ms 7d = 8d"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("at least 9d"), std::string::npos) << r.output;
  std::string warned = short_retention;
  warned.replace(warned.find("retention: 7d"), 13, "retention: 7d\n  retention_check: warn");
  auto ledger = start_ledger(
      [&] {
        const std::string path = m_dir + "/warn.yaml";
        std::ofstream(path) << warned;
        return path;
      }(),
      "warn.log");
  EXPECT_TRUE(ledger->wait_for_log("\"msg\":\"subscribed\"", 60s)) << "warn: it starts\n" << ledger->log();
  EXPECT_NE(ledger->log().find("is shorter than what Kafka can redeliver"), std::string::npos);
  EXPECT_EQ(ledger->stop(SIGTERM, 30s), 0);

  // An existing dead-letter topic that keeps its records for less than dlq.retention (here the broker's 1d).
  const std::string group2 = m_group + "x";
  test::kafka_create_topic(m_topic + "." + group2 + ".dlq", 3);
  std::string other_group = yaml;
  other_group.replace(other_group.find("group_id: " + m_group), 10 + m_group.size(), "group_id: " + group2);
  r = run(other_group);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(
      r.output.find("topic " + m_topic + "." + group2 + ".dlq keeps records for retention.ms 1d, less than the 30d"),
      std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace outbox::consumer_test
