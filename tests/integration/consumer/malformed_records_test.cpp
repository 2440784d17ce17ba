// Records no relay would write, produced on purpose to a real broker: no event_id, event ids consumers cannot
// dedupe on, retry headers that lie, values near Kafka's default limit. Each goes where consumer_sdk/README.md
// says, and the records around it are handled once each, in order.
#include "outbox/consumer/consumer.hpp"
#include "outbox/dedupe/store.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "running_consumer.hpp"
#include "test_producer.hpp"

#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <vector>

namespace outbox::consumer {
namespace {

using namespace std::chrono_literals;
using consumer_test::outgoing;
using consumer_test::running_consumer;
using consumer_test::test_producer;

/// What the handler saw of one record.
struct seen {
  std::string event_id;
  std::string topic;
  std::int64_t attempt = 0;
  std::size_t value_size = 0;
};

TEST(malformed_records, each_bad_record_is_dead_lettered_with_its_reason_and_its_neighbours_are_handled_once) {
  const auto topic = test::unique_name("bad");
  test::kafka_create_topic(topic, 1);
  const auto group = test::unique_name("g");
  const std::string big(900 * 1024, 'v');  // under the broker's default 1 MiB, with room for the dlq_* headers

  consumer_options o;
  o.brokers = test::require_services().kafka_brokers;
  o.group_id = group;
  o.topics = {topic};
  o.commit_interval = 200ms;
  o.stop_timeout = 20s;
  o.properties = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}};
  o.retry.max_attempts = 1;
  o.retry_topics = {1s};
  o.dlq_max_ratio = 1.0;  // every bad record here is meant; the breaker is tested elsewhere
  dedupe::memory_options remember;
  remember.ttl = std::chrono::hours(24 * 30);  // longer than Kafka can redeliver (the start checks it)
  o.dedupe = dedupe::make_memory_store(remember);

  std::mutex mu;
  std::vector<seen> handled;
  running_consumer c(std::move(o), [&](const record& r) {
    std::lock_guard lock(mu);
    handled.push_back({std::string(r.event_id()), r.topic, r.attempt.number, r.value ? r.value->size() : 0});
    if (r.event_id() == "big-fatal") return outcome::fatal("the test refuses it");
    return outcome::done();
  });

  auto rec = [&](std::vector<std::pair<std::string, std::string>> headers, std::string value = "{}") {
    return outgoing{topic, 0, std::string("k"), std::move(value), std::move(headers)};
  };
  test_producer producer(test::require_services().kafka_brokers);
  producer.send(rec({{"event_id", "ok-1"}}));
  producer.send(rec({{"trace", "no event id"}}));
  producer.send(rec({{"event_id", ""}}));
  producer.send(rec({{"event_id", std::string(1025, 'e')}}));
  producer.send(rec({{"event_id", std::string("nul\0id", 6)}}));
  producer.send(rec({{"event_id", "bad\xff"}}));
  producer.send(rec({{"event_id", "not-a-uuid"}}));  // any other text is an id: consumers dedupe on its bytes
  producer.send(rec({{"event_id", "forged-retry"},
                     {"retry_attempt", "999999999999"},
                     {"retry_due_ms", "banana"},
                     {"retry_original_topic", "elsewhere"}}));
  producer.send(rec({{"event_id", "big"}}, big));
  producer.send(rec({{"event_id", "big-fatal"}}, big));
  producer.send(rec({{"event_id", "ok-1"}}));  // a duplicate: skipped by the dedupe store
  producer.send(rec({{"event_id", "ok-2"}}));
  producer.flush();

  // A copy in this group's retry tier whose retry headers are garbage: it runs once, within the tier's delay.
  ASSERT_TRUE(test::wait_until([&] { return c.get().stats().processed >= 1; }, 60s));
  producer.send({retry_topic_name(topic, group, 1s),
                 0,
                 std::string("k"),
                 std::string("{}"),
                 {{"event_id", "tier-garbage"},
                  {"retry_attempt", "-3"},
                  {"retry_due_ms", "99999999999999999"},
                  {"retry_original_topic", topic},
                  {"retry_original_partition", "x"},
                  {"retry_original_offset", "-9"},
                  {"retry_consumer_group", group},
                  {"retry_tier", "9000"}}});
  producer.flush();

  ASSERT_TRUE(test::wait_until(
      [&] {
        const auto s = c.get().stats();
        return s.processed == 6 && s.dead_lettered == 6;
      },
      60s))
      << c.get().stats().processed << " processed, " << c.get().stats().dead_lettered << " dead-lettered";
  const auto stats = c.get().stats();
  c.stop();
  EXPECT_EQ(stats.duplicate, 1U);

  {
    std::lock_guard lock(mu);
    std::vector<std::string> order;
    for (const auto& h : handled) order.push_back(h.event_id);
    EXPECT_EQ(order, (std::vector<std::string>{"ok-1", "not-a-uuid", "forged-retry", "big", "big-fatal", "ok-2",
                                               "tier-garbage"}));
    for (const auto& h : handled) EXPECT_EQ(h.topic, topic) << h.event_id;
    if (handled.size() == 7) {
      EXPECT_EQ(handled[2].attempt, 1) << "retry headers on a source topic are the application's, not an attempt";
      EXPECT_EQ(handled[3].value_size, big.size());
    }
  }

  const auto dead = test::kafka_consume(topic + "." + group + ".dlq", 6, 30s);
  ASSERT_EQ(dead.size(), 6U);
  const std::vector<std::string> classes{"missing_event_id", "bad_event_id", "bad_event_id",
                                         "bad_event_id",     "bad_event_id", "fatal"};
  const std::vector<std::string> offsets{"1", "2", "3", "4", "5", "9"};
  for (std::size_t i = 0; i < dead.size(); ++i) {
    EXPECT_EQ(dead[i].header("dlq_error_class"), classes[i]) << i;
    EXPECT_EQ(dead[i].header("dlq_original_topic"), topic) << i;
    EXPECT_EQ(dead[i].header("dlq_original_offset"), offsets[i]) << i;
    EXPECT_LE(dead[i].header("dlq_error_message").value_or("").size(), 1024U) << i;
  }
  EXPECT_EQ(dead[0].header("trace"), "no event id") << "original headers are kept";
  EXPECT_EQ(dead[2].header("event_id"), std::string(1025, 'e')) << "the bad id is kept as it came";
  EXPECT_EQ(dead[5].value, big) << "an oversized value is dead-lettered whole";
}

}  // namespace
}  // namespace outbox::consumer
