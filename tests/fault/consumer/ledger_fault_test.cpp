// payment-ledger under kill -9 and rebalances (issue 4): 20,000 callbacks over 1,000 accounts, each produced
// 1-3 times; the ledger is killed at ten seeded moments and restarted while a second instance joins and leaves.
// Every balance must equal its expected sum and the inbox must hold each event exactly once. Runs with the
// cooperative assignor (the SDK's default) and with an eager one.
#include "ledger_support.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/postgres.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <iostream>
#include <random>

namespace outbox::consumer_test {
namespace {

using namespace std::chrono_literals;

constexpr int k_events = 20'000;
constexpr int k_accounts = 1'000;
constexpr int k_kills = 10;
constexpr int k_partitions = 6;

/// The librdkafka `partition.assignment.strategy` of the run.
class payment_ledger_fault : public ledger_fixture, public ::testing::WithParamInterface<std::string> {};

std::string account_name(int i) { return "acct-" + std::to_string(i); }

TEST_P(payment_ledger_fault, kill_9_and_rebalances_credit_every_callback_exactly_once) {
  std::mt19937_64 rng(test::run_seed() ^ 0x1ed6e5ULL);
  create_topic(k_partitions);
  std::vector<std::string> accounts;
  for (int i = 0; i < k_accounts; ++i) accounts.push_back(account_name(i));
  create_accounts(accounts);

  // Callbacks, each produced 1-3 times; copies share the key (the account), so they share a partition.
  std::map<std::string, std::int64_t> expected;
  for (const auto& a : accounts) expected[a] = 0;
  std::vector<callback> records;
  for (int i = 0; i < k_events; ++i) {
    const callback c{"cb-" + std::to_string(i), account_name(static_cast<int>(rng() % k_accounts)),
                     1 + static_cast<std::int64_t>(rng() % 100'000)};
    expected[c.account_id] += c.amount_cents;
    const int copies = 1 + static_cast<int>(rng() % 3);
    for (int k = 0; k < copies; ++k) records.push_back(c);
  }
  std::shuffle(records.begin(), records.end(), rng);
  {
    test_producer producer(test::require_services().kafka_brokers);
    for (const auto& c : records) producer.send(to_record(m_topic, c));
    producer.flush(120s);
  }
  std::cout << "[ fault    ] " << records.size() << " records for " << k_events << " callbacks\n";

  // Ten kill moments at seeded progress points; the second instance joins at 20% and leaves at 60%.
  std::vector<long long> kill_at;
  for (int i = 0; i < k_kills; ++i)
    kill_at.push_back(static_cast<long long>(k_events * (0.02 + 0.93 * std::uniform_real_distribution<>(0, 1)(rng))));
  std::sort(kill_at.begin(), kill_at.end());
  const long long join_at = k_events / 5;
  const long long leave_at = k_events * 3 / 5;

  const std::string config = write_config(
      "{session.timeout.ms: 6000, heartbeat.interval.ms: 1000, "
      "partition.assignment.strategy: \"" +
      GetParam() + "\"}");
  int starts = 0;
  auto first = start_ledger(config, "a-" + std::to_string(starts++) + ".log");
  std::unique_ptr<test::child_process> second;
  std::string logs;
  auto keep_log = [&](test::child_process& p) { logs += p.log(); };
  auto progress = [&] {
    try {
      return inbox_rows();
    } catch (const std::exception&) {
      return 0LL;  // the inbox table appears when the first ledger starts
    }
  };
  auto reach = [&](long long rows) {
    ASSERT_TRUE(test::wait_until([&] { return progress() >= rows; }, 120s))
        << "stuck at " << progress() << " of " << rows << "\n"
        << first->log();
  };

  std::size_t next_kill = 0;
  bool joined = false;
  bool left = false;
  while (next_kill < kill_at.size() || !left) {
    // The next event: a kill, the second instance joining, or it leaving, whichever progress point is lowest.
    const long long kill = next_kill < kill_at.size() ? kill_at[next_kill] : k_events + 1;
    const long long join = joined ? k_events + 1 : join_at;
    const long long leave = left || !joined ? k_events + 1 : leave_at;
    const long long at = std::min({kill, join, leave});
    reach(at);
    if (HasFatalFailure()) return;
    if (at == join) {
      second = start_ledger(config, "b-" + std::to_string(starts++) + ".log");
      joined = true;
    } else if (at == leave) {
      // A member that leaves has started: it may have been restarted by a kill just before this point.
      EXPECT_TRUE(test::wait_until([&] { return second->log().find("started") != std::string::npos; }, 60s))
          << second->log();
      EXPECT_EQ(second->stop(SIGTERM, 60s), 0) << "second instance did not stop cleanly\n" << second->log();
      keep_log(*second);
      second.reset();
      left = true;
    } else {
      // Kill -9 one of the running instances and restart it at once.
      auto& victim = (second && rng() % 2 == 0) ? second : first;
      const char* name = victim == second ? "b-" : "a-";
      EXPECT_EQ(victim->stop(SIGKILL, 10s), 128 + SIGKILL);
      keep_log(*victim);
      std::cout << "[ fault    ] kill -9 " << name << " at " << progress() << " callbacks credited\n";
      victim = start_ledger(config, name + std::to_string(starts++) + ".log");
      ++next_kill;
    }
  }

  ASSERT_TRUE(test::wait_until([&] { return progress() >= k_events; }, 150s))
      << "credited " << progress() << " of " << k_events << "\n"
      << first->log();
  EXPECT_EQ(first->stop(SIGTERM, 60s), 0) << first->log();
  keep_log(*first);

  EXPECT_EQ(inbox_rows(), k_events) << "the inbox holds each event exactly once";
  EXPECT_EQ(std::stoll(test::pg_scalar("SELECT count(DISTINCT event_id) FROM " + m_schema + ".outbox_inbox")),
            k_events);
  const auto actual = balances();
  ASSERT_EQ(actual.size(), expected.size());
  int wrong = 0;
  for (const auto& [account, cents] : expected) {
    if (actual.at(account) != cents && ++wrong <= 5) {
      ADD_FAILURE() << account << ": balance " << actual.at(account) << ", expected " << cents;
    }
  }
  EXPECT_EQ(wrong, 0) << "accounts with a wrong balance";
  EXPECT_EQ(logs.find("giving up on a record"), std::string::npos) << "no callback here is fatal";
  std::size_t assignments = 0;
  for (auto pos = logs.find("partitions assigned"); pos != std::string::npos;
       pos = logs.find("partitions assigned", pos + 1)) {
    ++assignments;
  }
  std::cout << "[ fault    ] " << starts << " ledger starts, " << assignments << " partition assignments\n";
  EXPECT_GE(assignments, static_cast<std::size_t>(k_kills)) << "the kills and the second instance forced rebalances";
}

INSTANTIATE_TEST_SUITE_P(assignors, payment_ledger_fault, ::testing::Values("cooperative-sticky", "range,roundrobin"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param == "cooperative-sticky" ? std::string("cooperative")
                                                                      : std::string("eager");
                         });

}  // namespace
}  // namespace outbox::consumer_test
