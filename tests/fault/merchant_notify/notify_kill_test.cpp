// merchant-notify killed (SIGKILL) while a request to a merchant is in flight: after the restart the notification
// goes out again with the same Idempotency-Key and body, and no notification is lost.
#include "notify_support.hpp"

#include "outbox/test/environment.hpp"
#include "outbox/test/postgres.hpp"

#include <csignal>
#include <set>

namespace outbox::notify_test {
namespace {

using namespace std::chrono_literals;
using consumer_test::outgoing;

class merchant_notify_fault : public notify_fixture {};

TEST_F(merchant_notify_fault, kill_9_mid_delivery_sends_it_again_with_the_same_idempotency_key) {
  m_merchants.script("hang", {reply_with(200, "SUCCESS", "", 4s)});  // in flight long enough to be killed under it
  m_merchants.script("healthy", {reply{}});
  const std::string config = write_config({{"hang", ""}, {"healthy", ""}}, "", "10s",
                                          "{session.timeout.ms: 6000, heartbeat.interval.ms: 1000}");
  std::vector<outgoing> events;
  for (int i = 0; i < 20; ++i) events.push_back(payment(m_topic, "n-before-" + std::to_string(i), "healthy"));
  events.push_back(payment(m_topic, "n-hang", "hang"));
  produce(events);
  auto notifier = start_notifier(config, "notify-1.log");
  ASSERT_TRUE(test::wait_until([&] { return !m_merchants.requests("hang").empty(); }, 60s, 20ms)) << notifier->log();
  EXPECT_EQ(status_of("n-hang"), "delivering");
  EXPECT_EQ(notifier->stop(SIGKILL, 10s), 128 + SIGKILL);

  m_merchants.script("hang", {reply{}});
  events.clear();
  for (int i = 0; i < 20; ++i) events.push_back(payment(m_topic, "n-after-" + std::to_string(i), "healthy"));
  produce(events);
  auto restarted = start_notifier(config, "notify-2.log");
  ASSERT_TRUE(test::wait_until([&] { return count_status("delivered") == 41; }, 90s, 100ms)) << restarted->log();

  const auto hang = m_merchants.requests("hang");
  ASSERT_GE(hang.size(), 2u);
  for (const auto& r : hang) {
    EXPECT_EQ(r.idempotency_key, "n-hang");
    EXPECT_EQ(r.body, hang.front().body);
    EXPECT_TRUE(signature_valid(r, key_of("hang")));
  }
  // Every event reached its merchant at least once, and the inbox holds each exactly once.
  std::set<std::string> keys;
  for (const auto& r : m_merchants.all_requests()) keys.insert(r.idempotency_key);
  EXPECT_EQ(keys.size(), 41u);
  EXPECT_EQ(test::pg_scalar("SELECT count(DISTINCT event_id) || '/' || count(*) FROM " + m_schema +
                            ".outbox_inbox WHERE consumer_group = '" + m_group + "'"),
            "41/41");
  EXPECT_EQ(restarted->stop(SIGTERM, 30s), 0) << restarted->log();
}

}  // namespace
}  // namespace outbox::notify_test
