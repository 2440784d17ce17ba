// payment-ledger while its PostgreSQL (the inbox and the accounts) is down for 20 s under load, with only
// `attempts: 3` in process and a small DLQ breaker window: a database that does not answer is not the
// callbacks' fault, so nothing is dead-lettered, the breaker does not trip, and every balance comes out exact.
#include "guarantee_support.hpp"
#include "ledger_support.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <iostream>
#include <thread>

namespace outbox::consumer_test {
namespace {

using namespace std::chrono_literals;

constexpr int k_callbacks = 3000;
constexpr int k_accounts = 50;

class payment_ledger_database_fault : public ledger_fixture {};

TEST_F(payment_ledger_database_fault, the_inbox_database_restarted_for_20s_under_load_dead_letters_nothing) {
  create_topic(3);
  std::vector<std::string> accounts;
  std::map<std::string, std::int64_t> expected;
  for (int i = 0; i < k_accounts; ++i) {
    accounts.push_back("acct-" + std::to_string(i));
    expected[accounts.back()] = 0;
  }
  create_accounts(accounts);
  const std::string config = write_config("{}", "ledger.yaml",
                                          "retry:\n  initial: 50ms\n  max: 200ms\n  attempts: 3\n  topics: [5s]\n"
                                          "dlq:\n  window: 20\n  max_ratio: 0.5\n");
  auto ledger = start_ledger(config, "ledger.log");
  ASSERT_TRUE(ledger->wait_for_log("partitions assigned", 60s)) << ledger->log();

  // Load: callbacks at about 100 a second for the whole test, the outage in the middle of it.
  std::atomic<int> sent{0};
  std::thread load([&] {
    test_producer producer(test::require_services().kafka_brokers);
    for (int i = 0; i < k_callbacks; ++i) {
      producer.send(to_record(
          m_topic, {"cb-" + std::to_string(i), accounts[static_cast<std::size_t>(i % k_accounts)], 1 + i % 97}));
      if (i % 50 == 49) {
        producer.flush();
        sent = i + 1;
        test::wait_until([] { return false; }, 500ms);  // paces the load: 50 callbacks every half second
      }
    }
    producer.flush();
    sent = k_callbacks;
  });
  for (int i = 0; i < k_callbacks; ++i) expected[accounts[static_cast<std::size_t>(i % k_accounts)]] += 1 + i % 97;

  ASSERT_TRUE(test::wait_until([&] { return inbox_rows() >= 500; }, 60s)) << ledger->log();
  services("stop", "postgres");
  const auto down = std::chrono::steady_clock::now();
  std::cout << "[ fault    ] PostgreSQL stopped with " << sent.load() << " callbacks sent\n";
  test::wait_until([&] { return std::chrono::steady_clock::now() - down >= 20s; }, 25s);  // the outage
  services("start", "postgres");
  std::cout << "[ fault    ] PostgreSQL back after 20 s with " << sent.load() << " callbacks sent\n";
  load.join();
  ASSERT_TRUE(test::wait_until([&] { return inbox_rows() >= k_callbacks; }, 120s))
      << inbox_rows() << " of " << k_callbacks << " credited\n"
      << ledger->log().substr(ledger->log().size() > 20000 ? ledger->log().size() - 20000 : 0);
  EXPECT_TRUE(ledger->running()) << "the ledger kept running through the outage";
  EXPECT_EQ(ledger->stop(SIGTERM, 30s), 0);
  const std::string log = ledger->log();

  EXPECT_EQ(inbox_rows(), k_callbacks);
  EXPECT_EQ(balances(), expected) << "every balance exact";
  EXPECT_EQ(log.find("giving up on a record"), std::string::npos) << "nothing dead-lettered";
  EXPECT_EQ(log.find("DLQ breaker tripped"), std::string::npos) << "the breaker did not trip";
  EXPECT_NE(log.find("\"dependency\":\"inbox\""), std::string::npos) << "the log names the dependency";
  EXPECT_NE(log.find("a dependency answers again"), std::string::npos);
  try {
    EXPECT_EQ(test::kafka_record_count(m_topic + "." + m_group + ".dlq"), 0);
  } catch (const std::exception& e) {
    ADD_FAILURE() << e.what();
  }
}

}  // namespace
}  // namespace outbox::consumer_test
