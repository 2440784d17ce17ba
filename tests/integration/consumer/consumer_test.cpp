// The consumer library on a real broker: what the mock cluster cannot show.
#include "outbox/consumer/consumer.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "running_consumer.hpp"
#include "test_producer.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <thread>

namespace outbox::consumer {
namespace {

using namespace std::chrono_literals;

using consumer_test::running_consumer;

consumer_options options(const std::string& topic, const std::string& group) {
  consumer_options o;
  o.brokers = test::require_services().kafka_brokers;
  o.group_id = group;
  o.topics = {topic};
  o.commit_interval = 200ms;
  o.stop_timeout = 20s;
  o.properties = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}};
  return o;
}

// A real coordinator accepts the revoking member's commit during the rebalance, so a partition that moves
// starts on its new owner exactly after the last finished record: no record runs twice, without any dedupe.
TEST(consumer_on_kafka, partitions_that_move_resume_after_the_last_finished_record) {
  const std::string topic = test::unique_name("moving");
  const std::string group = test::unique_name("group");
  test::kafka_create_topic(topic, 4);
  consumer_test::test_producer producer(test::require_services().kafka_brokers);
  constexpr int k_records = 2000;
  for (int i = 0; i < k_records; ++i) {
    producer.send({topic, i % 4, "k" + std::to_string(i % 4), "{}", {{"event_id", "e" + std::to_string(i)}}});
  }
  producer.flush();

  std::mutex mutex;
  std::multiset<std::string> seen;
  auto slow = [&](const record& r) {
    {
      std::lock_guard lock(mutex);
      seen.emplace(r.event_id());
    }
    std::this_thread::sleep_for(1ms);  // simulated work, so members join and leave mid-stream
    return outcome::done();
  };
  auto distinct = [&] {
    std::lock_guard lock(mutex);
    return std::set<std::string>(seen.begin(), seen.end()).size();
  };
  running_consumer a(options(topic, group), slow);
  ASSERT_TRUE(test::wait_until([&] { return a.get().stats().processed >= 100; }, 60s));
  {
    running_consumer b(options(topic, group), slow);  // joins: partitions move from a to b
    ASSERT_TRUE(test::wait_until([&] { return b.get().stats().processed >= 200; }, 60s));
  }  // b leaves: its partitions move back to a
  ASSERT_TRUE(test::wait_until([&] { return distinct() == k_records; }, 90s)) << distinct();
  a.stop();
  std::lock_guard lock(mutex);
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(k_records)) << "a record ran on two members";
  EXPECT_EQ(consumer_test::committed_offsets(test::require_services().kafka_brokers, group, topic, 4),
            (std::vector<std::int64_t>{500, 500, 500, 500}));
}

}  // namespace
}  // namespace outbox::consumer
