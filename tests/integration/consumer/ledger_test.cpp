// payment-ledger against real Kafka and PostgreSQL: credits, duplicates, bad callbacks, unknown accounts,
// clean stop and bad config.
#include "ledger_support.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/postgres.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <pqxx/pqxx>

#include <csignal>
#include <nlohmann/json.hpp>
#include <fstream>

namespace outbox::consumer_test {
namespace {

using namespace std::chrono_literals;

class payment_ledger : public ledger_fixture {};

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

TEST_F(payment_ledger, credits_each_callback_once_retries_unknown_accounts_and_skips_bad_values) {
  create_topic(3);
  create_accounts({"a1", "a2", "a3", "a4"});
  std::map<std::string, std::int64_t> expected{{"a1", 0}, {"a2", 0}, {"a3", 0}, {"a4", 0}};
  test_producer producer(test::require_services().kafka_brokers);
  for (int i = 0; i < 40; ++i) {
    const callback c{"ev-" + std::to_string(i), "a" + std::to_string(1 + i % 4), 100 + i};
    expected[c.account_id] += c.amount_cents;
    producer.send(to_record(m_topic, c));
    if (i % 3 == 0) producer.send(to_record(m_topic, c));  // the relay republished it
  }
  auto bad = to_record(m_topic, {"bad-json", "a1", 1});
  bad.value = "{not json";
  producer.send(bad);
  producer.send(to_record(m_topic, {"bad-negative", "a2", -5}));
  auto missing = to_record(m_topic, {"bad-missing", "a3", 1});
  missing.value = R"({"account_id": "a3"})";
  producer.send(missing);
  producer.send(to_record(m_topic, {"late-account", "a5", 777}));  // a5 does not exist yet
  producer.flush();

  const std::string config = write_config();
  auto ledger = start_ledger(config, "ledger.log");
  ASSERT_TRUE(ledger->wait_for_log("unknown account a5", 60s)) << ledger->log();
  ASSERT_TRUE(test::wait_until([&] { return balances() == expected; }, 60s)) << ledger->log();
  create_accounts({"a5"});
  expected["a5"] = 777;
  ASSERT_TRUE(test::wait_until([&] { return balances() == expected; }, 60s)) << ledger->log();
  EXPECT_EQ(inbox_rows(), 41) << "40 callbacks and the late one, each once";

  // The SPEC §5 metrics tell the same story, and promtool accepts the exposition.
  const std::string marker = "\"listen\":\"127.0.0.1:";
  const auto at = ledger->log().find(marker);
  ASSERT_NE(at, std::string::npos) << ledger->log();
  httplib::Client metrics("127.0.0.1", std::stoi(ledger->log().substr(at + marker.size())));
  const std::string series = "outbox_consumer_messages_total{topic=\"" + m_topic + "\",outcome=";
  std::string body;
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto res = metrics.Get("/metrics");
        body = res ? res->body : "";
        return body.find(series + "\"processed\"} 41\n") != std::string::npos;
      },
      30s))
      << body;
  EXPECT_NE(body.find(series + "\"duplicate\"} 14\n"), std::string::npos) << body;
  EXPECT_NE(body.find(series + "\"dead_lettered\"} 3\n"), std::string::npos) << body;
  EXPECT_EQ(body.find(series + "\"retried\"} 0\n"), std::string::npos) << "a5 was retried: " << body;
  EXPECT_NE(body.find("outbox_consumer_handler_seconds_bucket{topic=\"" + m_topic + "\",le=\"+Inf\"}"),
            std::string::npos);
  EXPECT_NE(body.find("outbox_consumer_dedupe_seconds_count "), std::string::npos);
  std::ofstream(m_dir + "/metrics.txt") << body;
  const auto check = test::run_command({"/bin/sh", "-c", "promtool check metrics < " + m_dir + "/metrics.txt"}, 30s);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  auto ready = metrics.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;

  EXPECT_EQ(ledger->stop(SIGTERM, 30s), 0) << ledger->log();
  const std::string log = ledger->log();
  EXPECT_EQ(count_of(log, "giving up on a record"), 3u) << log;
  EXPECT_NE(log.find("bad-negative"), std::string::npos);
  EXPECT_NE(log.find("amount_cents is negative"), std::string::npos);
  EXPECT_NE(log.find("stopped cleanly"), std::string::npos);

  // Everything again, plus one marker per account: after the markers, nothing else may have changed.
  for (int i = 0; i < 40; ++i)
    producer.send(to_record(m_topic, {"ev-" + std::to_string(i), "a" + std::to_string(1 + i % 4), 100 + i}));
  for (int a = 1; a <= 5; ++a) {
    const std::string id = "a" + std::to_string(a);
    producer.send(to_record(m_topic, {"marker-" + id, id, 1}));
    expected[id] += 1;
  }
  producer.flush();
  ledger = start_ledger(config, "ledger2.log");
  ASSERT_TRUE(test::wait_until([&] { return balances() == expected; }, 60s)) << ledger->log();
  EXPECT_EQ(inbox_rows(), 46);
  EXPECT_EQ(ledger->stop(SIGTERM, 30s), 0) << ledger->log();
  EXPECT_EQ(balances(), expected);
}

// consumer.workers: 8 handlers at once, each with its own inbox connection; callbacks of one account stay in one
// lane. A kill -9 mid-stream and a restart still credit every callback exactly once.
TEST_F(payment_ledger, with_workers_every_callback_is_credited_once_across_a_kill_9) {
  create_topic(3);
  std::vector<std::string> accounts;
  for (int a = 0; a < 30; ++a) accounts.push_back("w" + std::to_string(a));
  create_accounts(accounts);
  std::map<std::string, std::int64_t> expected;
  for (const auto& a : accounts) expected[a] = 0;
  test_producer producer(test::require_services().kafka_brokers);
  constexpr int k_callbacks = 3000;
  for (int i = 0; i < k_callbacks; ++i) {
    const callback c{"wk-" + std::to_string(i), accounts[static_cast<std::size_t>(i) % accounts.size()], 1 + i % 97};
    expected[c.account_id] += c.amount_cents;
    producer.send(to_record(m_topic, c));
    if (i % 10 == 0) producer.send(to_record(m_topic, c));  // the relay republished it
  }
  producer.flush();

  const std::string config =
      write_config(R"({session.timeout.ms: "6000", heartbeat.interval.ms: "500"})", "ledger.yaml", "",
                   "  workers: 8\n");  // the killed member leaves the group in 6s
  auto ledger = start_ledger(config, "ledger.log");
  ASSERT_TRUE(ledger->wait_for_log("handlers run on workers", 60s)) << ledger->log();
  ASSERT_TRUE(test::wait_until([&] { return inbox_rows() >= 300; }, 60s, 5ms)) << ledger->log();
  ledger->stop(SIGKILL, 10s);
  const long long at_kill = inbox_rows();
  EXPECT_LT(at_kill, k_callbacks) << "the kill came after the last callback: the test proves less than it says";

  ledger = start_ledger(config, "ledger2.log");
  ASSERT_TRUE(test::wait_until([&] { return balances() == expected; }, 120s)) << ledger->log();
  EXPECT_EQ(inbox_rows(), k_callbacks) << "each callback once, the republished ones and the redelivered ones skipped";
  EXPECT_EQ(ledger->stop(SIGTERM, 30s), 0) << ledger->log();
  EXPECT_EQ(balances(), expected);
}

// inbox.batch_size: 50 callbacks a transaction. The database drops the ledger's connections mid-stream (the open
// batch is lost and read again), then a kill -9 and a restart: every callback is still credited exactly once.
TEST_F(payment_ledger, with_batched_inbox_commits_a_lost_batch_and_a_kill_9_still_credit_every_callback_once) {
  create_topic(3);
  std::vector<std::string> accounts;
  for (int a = 0; a < 20; ++a) accounts.push_back("b" + std::to_string(a));
  create_accounts(accounts);
  std::map<std::string, std::int64_t> expected;
  for (const auto& a : accounts) expected[a] = 0;
  test_producer producer(test::require_services().kafka_brokers);
  constexpr int k_callbacks = 6000;
  for (int i = 0; i < k_callbacks; ++i) {
    const callback c{"bt-" + std::to_string(i), accounts[static_cast<std::size_t>(i) % accounts.size()], 1 + i % 89};
    expected[c.account_id] += c.amount_cents;
    producer.send(to_record(m_topic, c));
    if (i % 7 == 0) producer.send(to_record(m_topic, c));  // the relay republished it
  }
  producer.flush();

  const std::string config = write_config(R"({session.timeout.ms: "6000", heartbeat.interval.ms: "500"})",
                                          "ledger.yaml", "", "", "inbox:\n  batch_size: 50\n  batch_time: 20ms\n");
  auto ledger = start_ledger(config, "ledger.log");
  ASSERT_TRUE(ledger->wait_for_log("subscribed", 60s)) << ledger->log();  // the inbox table exists from here
  ASSERT_TRUE(test::wait_until([&] { return inbox_rows() >= 500; }, 60s, 5ms)) << ledger->log();
  // Every connection of the ledger's database but this test's own: the open batch goes with them.
  pqxx::connection admin(test::require_services().pg_dsn);
  pqxx::nontransaction(admin).exec(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> "
      "pg_backend_pid() AND backend_type = 'client backend'");
  ASSERT_TRUE(test::wait_until([&] { return inbox_rows() >= 2000; }, 60s, 5ms)) << ledger->log();
  ledger->stop(SIGKILL, 10s);
  EXPECT_LT(inbox_rows(), k_callbacks) << "the kill came after the last callback: the test proves less than it says";

  ledger = start_ledger(config, "ledger2.log");
  ASSERT_TRUE(test::wait_until([&] { return balances() == expected; }, 120s)) << ledger->log();
  EXPECT_EQ(inbox_rows(), k_callbacks) << "each callback once";
  EXPECT_EQ(ledger->stop(SIGTERM, 30s), 0) << ledger->log();
  EXPECT_EQ(balances(), expected);
}

TEST_F(payment_ledger, unknown_accounts_go_through_the_tiers_to_the_dlq_and_a_replay_credits_them_once) {
  create_topic(3);
  create_accounts({"a1"});
  test_producer producer(test::require_services().kafka_brokers);
  std::int64_t late_total = 0;
  for (int i = 0; i < 3; ++i) {
    producer.send(to_record(m_topic, {"late-" + std::to_string(i), "a9", 100 + i}));  // a9 does not exist yet
    late_total += 100 + i;
  }
  producer.send(to_record(m_topic, {"ok-1", "a1", 500}));
  auto bad = to_record(m_topic, {"bad-json", "a1", 1});
  bad.value = "{not json";
  producer.send(bad);
  producer.send(to_record(m_topic, {"bad-negative", "a1", -5}));
  producer.flush();

  const std::string config = write_config("{}", "ledger.yaml",
                                          "retry:\n  initial: 20ms\n  max: 50ms\n  attempts: 2\n"
                                          "  topics: [1s, 2s]\n");
  auto ledger = start_ledger(config, "ledger.log");
  const std::string dlq = m_topic + "." + m_group + ".dlq";
  const auto dead_letters = [&]() -> long long {
    try {
      return test::kafka_record_count(dlq);
    } catch (const std::exception&) {
      return -1;  // the ledger creates the topic with its first dead letter; until then it has no leader
    }
  };
  ASSERT_TRUE(test::wait_until([&] { return dead_letters() >= 5; }, 90s))
      << dead_letters() << " dead letters; " << ledger->log();
  EXPECT_EQ(dead_letters(), 5) << "each failed callback dead-lettered once: " << ledger->log();
  EXPECT_EQ(balances(), (std::map<std::string, std::int64_t>{{"a1", 500}}));

  const std::string brokers = test::require_services().kafka_brokers;
  const auto listed =
      test::run_command({OUTBOX_OUTBOXCTL_BIN, "dlq", "list", "--brokers", brokers, "--topic", dlq, "--json"}, 60s);
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  const auto records = nlohmann::json::parse(listed.output.substr(listed.output.find('[')), nullptr, false);
  ASSERT_TRUE(records.is_array()) << listed.output;
  std::map<std::string, int> classes;
  for (const auto& r : records) ++classes[r.value("error_class", "")];
  EXPECT_EQ(classes, (std::map<std::string, int>{{"retry_exhausted", 3}, {"deserialization", 1}, {"fatal", 1}}))
      << listed.output;

  // The cause is fixed: the account exists now. Replay what failed for it, twice: the inbox applies it once.
  create_accounts({"a9"});
  for (int run = 0; run < 2; ++run) {
    const auto replayed = test::run_command({OUTBOX_OUTBOXCTL_BIN, "dlq", "replay", "--brokers", brokers, "--topic",
                                             dlq, "--error-contains", "unknown account"},
                                            60s);
    ASSERT_EQ(replayed.exit_code, 0) << replayed.output;
    EXPECT_NE(replayed.output.find("replayed 3"), std::string::npos) << replayed.output;
  }
  producer.send(to_record(m_topic, {"marker-a9", "a9", 1}));  // same key, same partition: after the replays
  producer.flush();
  const std::map<std::string, std::int64_t> expected{{"a1", 500}, {"a9", late_total + 1}};
  ASSERT_TRUE(test::wait_until([&] { return balances() == expected; }, 60s)) << ledger->log();
  EXPECT_EQ(inbox_rows(), 5) << "ok-1, three late callbacks once each, the marker";
  EXPECT_EQ(ledger->stop(SIGTERM, 30s), 0) << ledger->log();
  EXPECT_EQ(balances(), expected);
  EXPECT_EQ(dead_letters(), 5) << "nothing new was dead-lettered";
}

TEST_F(payment_ledger, bad_config_exits_2_and_names_the_key) {
  const auto run = [&](const std::string& yaml) {
    const std::string path = m_dir + "/bad.yaml";
    std::ofstream(path) << yaml;
    return test::run_command({ledger_binary(), "--config", path}, 30s);
  };
  const std::string kafka = "consumer: {brokers: 127.0.0.1:1, group_id: g, topics: [t]}\n";
  auto r = run(kafka + "dedupe: {store: postgres, dsn: x}\n");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("ledger.dsn"), std::string::npos) << r.output;

  r = run(kafka + "dedupe: {store: memory}\nledger: {dsn: x}\n");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("dedupe.store"), std::string::npos) << r.output;

  r = run(kafka + "dedupe: {store: postgres, dsn: x}\nledger: {dsn: y}\n");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("dedupe.dsn"), std::string::npos) << r.output;

  r = run(kafka + "dedupe: {store: postgres, dsn: x}\nledger: {dsn: x, dns: y}\n");
  EXPECT_EQ(r.exit_code, 2) << r.output;

  r = test::run_command({ledger_binary()}, 30s);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = test::run_command({ledger_binary(), "--config", m_dir + "/missing.yaml"}, 30s);
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace outbox::consumer_test
