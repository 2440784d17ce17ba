// Retry tiers, dead letters, per-key ordering and the DLQ breaker on a real broker.
#include "outbox/consumer/consumer.hpp"
#include "outbox/metrics/registry.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "running_consumer.hpp"
#include "test_producer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace outbox::consumer {
namespace {

using namespace std::chrono_literals;
using consumer_test::outgoing;
using consumer_test::test_producer;

using consumer_test::running_consumer;

consumer_options options(const std::string& topic, const std::string& group) {
  consumer_options o;
  o.brokers = test::require_services().kafka_brokers;
  o.group_id = group;
  o.topics = {topic};
  o.commit_interval = 200ms;
  o.stop_timeout = 20s;
  o.properties = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}};
  o.retry.initial = 20ms;
  o.retry.max = 50ms;
  o.retry.max_attempts = 2;
  return o;
}

outgoing callback_record(const std::string& topic, const std::string& id, const std::string& key) {
  return outgoing{topic, 0, key, R"({"id":")" + id + R"("})", {{"event_id", id}, {"trace", "t-" + id}}};
}

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);  // poll interval under the deadline
  }
  return done();
}

const test::consumed_record* find_by_event(const std::vector<test::consumed_record>& rs, const std::string& id) {
  for (const auto& r : rs) {
    if (r.header("event_id") == id) return &r;
  }
  return nullptr;
}

TEST(retry_tiers, failing_records_go_through_the_tiers_then_the_dlq_with_every_header) {
  const auto topic = test::unique_name("pay");
  test::kafka_create_topic(topic, 1);
  test_producer producer(test::require_services().kafka_brokers);
  for (const char* id : {"ok-1", "poison", "flaky", "never", "ok-2"}) producer.send(callback_record(topic, id, id));
  producer.flush();

  std::mutex mu;
  std::map<std::string, int> attempts;
  std::vector<std::string> done_order;
  std::vector<std::string> topics_seen;
  metrics::registry reg;
  const auto group = test::unique_name("g");
  auto o = options(topic, group);
  o.retry_topics = {1s, 2s};  // wide enough that ok-2 always comes before flaky leaves tier 1s
  o.metrics = &reg;
  running_consumer c(std::move(o), [&](const record& r) {
    std::lock_guard lock(mu);
    const std::string id(r.event_id());
    ++attempts[id];
    topics_seen.push_back(r.topic);
    if (id == "poison") return outcome::fatal("amount_cents is negative");
    if (id == "never") return outcome::retry("unknown account a9");
    // flaky's account appears with ok-2, which comes after it: only a partition that moves on gets there.
    if (id == "flaky" && std::find(done_order.begin(), done_order.end(), "ok-2") == done_order.end()) {
      return outcome::retry("unknown account a7");
    }
    done_order.push_back(id);
    return outcome::done();
  });
  ASSERT_TRUE(wait_for(
      [&] {
        const auto s = c.get().stats();
        return s.processed == 3 && s.dead_lettered == 2;
      },
      60s))
      << c.get().stats().processed << " processed, " << c.get().stats().dead_lettered << " dead-lettered";
  const auto stats = c.get().stats();
  const std::string exposition = reg.render();
  c.stop();

  {
    std::lock_guard lock(mu);
    EXPECT_EQ(attempts["poison"], 1) << "fatal goes to the DLQ at once";
    EXPECT_EQ(attempts["never"], 4) << "2 in process, one per tier";
    EXPECT_GE(attempts["flaky"], 3) << "2 in process, then from a tier";
    ASSERT_EQ(done_order.size(), 3u);
    EXPECT_EQ(done_order[0], "ok-1");
    EXPECT_EQ(done_order[1], "ok-2") << "a parked record does not block the partition";
    EXPECT_EQ(done_order[2], "flaky");
    for (const auto& t : topics_seen) EXPECT_EQ(t, topic) << "the handler always sees the original topic";
  }
  EXPECT_EQ(stats.fatal, 1u);
  EXPECT_GE(stats.parked, 3u) << "flaky and never into tier 1s, never (and perhaps flaky) into tier 2s";

  const auto tier1 = test::kafka_consume(retry_topic_name(topic, group, 1s), 2, 30s);
  ASSERT_EQ(tier1.size(), 2u);
  EXPECT_EQ(test::kafka_record_count(retry_topic_name(topic, group, 2s)), static_cast<long long>(stats.parked) - 2);
  const auto* parked = find_by_event(tier1, "never");
  ASSERT_NE(parked, nullptr);
  EXPECT_EQ(parked->header("retry_attempt"), "2");
  EXPECT_EQ(parked->header("retry_original_topic"), topic);
  EXPECT_EQ(parked->header("retry_original_offset"), "3");
  EXPECT_TRUE(parked->header("retry_due_ms").has_value());
  EXPECT_EQ(parked->header("trace"), "t-never") << "original headers travel with the record";

  const auto dlq = test::kafka_consume(topic + "." + group + ".dlq", 2, 30s);
  ASSERT_EQ(dlq.size(), 2u);
  const auto* never = find_by_event(dlq, "never");
  const auto* poison = find_by_event(dlq, "poison");
  ASSERT_NE(never, nullptr);
  ASSERT_NE(poison, nullptr);
  EXPECT_EQ(never->key, "never");
  EXPECT_EQ(never->value, R"({"id":"never"})");
  EXPECT_EQ(never->header("trace"), "t-never");
  EXPECT_EQ(never->header("dlq_original_topic"), topic);
  EXPECT_EQ(never->header("dlq_original_partition"), "0");
  EXPECT_EQ(never->header("dlq_original_offset"), "3");
  EXPECT_TRUE(never->header("dlq_original_timestamp_ms").has_value());
  EXPECT_FALSE(never->header("dlq_consumer_group").value_or("").empty());
  EXPECT_EQ(never->header("dlq_error_class"), "retry_exhausted");
  EXPECT_EQ(never->header("dlq_error_message"), "unknown account a9");
  EXPECT_EQ(never->header("dlq_attempts"), "4");
  EXPECT_LE(std::stoll(never->header("dlq_first_failure_ms").value_or("0")),
            std::stoll(never->header("dlq_last_failure_ms").value_or("0")));
  EXPECT_GE(std::stoll(never->header("dlq_last_failure_ms").value_or("0")) -
                std::stoll(never->header("dlq_first_failure_ms").value_or("0")),
            2900)
      << "both tiers waited their delay";
  for (const auto& [name, value] : never->headers) EXPECT_NE(name.rfind("retry_", 0), 0u) << name;
  EXPECT_EQ(poison->header("dlq_error_class"), "fatal");
  EXPECT_EQ(poison->header("dlq_attempts"), "1");
  EXPECT_EQ(poison->header("dlq_original_offset"), "1");

  const std::string series = "{topic=\"" + topic + "\",";
  EXPECT_NE(exposition.find("outbox_consumer_retries_total" + series + "tier=\"1s\"} 2"), std::string::npos)
      << exposition;
  EXPECT_NE(
      exposition.find("outbox_consumer_retries_total" + series + "tier=\"2s\"} " + std::to_string(stats.parked - 2)),
      std::string::npos);
  EXPECT_NE(exposition.find("outbox_consumer_messages_total" + series + "outcome=\"dead_lettered\"} 2"),
            std::string::npos);
}

TEST(retry_tiers, repeated_delays_give_one_attempt_per_entry_four_attempts_in_dlq_attempts) {
  const auto topic = test::unique_name("repeat");
  const auto group = test::unique_name("g");
  test::kafka_create_topic(topic, 1);
  test_producer producer(test::require_services().kafka_brokers);
  producer.send(callback_record(topic, "never", "k"));
  producer.flush();
  std::atomic<int> calls{0};
  auto o = options(topic, group);
  o.retry.max_attempts = 1;
  o.retry_topics = {1s, 1s, 2s};
  running_consumer c(std::move(o), [&](const record&) {
    ++calls;
    return outcome::retry("unknown account");
  });
  ASSERT_TRUE(wait_for([&] { return c.get().stats().dead_lettered == 1; }, 60s));
  c.stop();
  EXPECT_EQ(calls.load(), 4);
  const auto dlq = test::kafka_consume(topic + "." + group + ".dlq", 1, 30s);
  ASSERT_EQ(dlq.size(), 1u);
  EXPECT_EQ(dlq[0].header("dlq_attempts"), "4") << "1 in process + one per entry of [1s, 1s, 2s]";
  const auto ones = test::kafka_consume(retry_topic_name(topic, group, 1s), 2, 30s);
  ASSERT_EQ(ones.size(), 2u) << "both 1s entries wait in the one 1s topic";
  EXPECT_EQ(ones[0].header("retry_tier"), "0");
  EXPECT_EQ(ones[1].header("retry_tier"), "1");
  const auto twos = test::kafka_consume(retry_topic_name(topic, group, 2s), 1, 30s);
  ASSERT_EQ(twos.size(), 1u);
  EXPECT_EQ(twos[0].header("retry_tier"), "2");
  EXPECT_GE(std::stoll(dlq[0].header("dlq_last_failure_ms").value_or("0")) -
                std::stoll(dlq[0].header("dlq_first_failure_ms").value_or("0")),
            3900)
      << "each entry waited its delay";
}

/// Key `acct` gets A (fails three times, so it waits in the tiers), then B and C; `other` gets D.
std::vector<std::string> applied_order(bool per_key) {
  const auto topic = test::unique_name(per_key ? "order" : "noorder");
  test::kafka_create_topic(topic, 1);
  test_producer producer(test::require_services().kafka_brokers);
  producer.send(callback_record(topic, "A", "acct"));
  producer.send(callback_record(topic, "B", "acct"));
  producer.send(callback_record(topic, "D", "other"));
  producer.send(callback_record(topic, "C", "acct"));
  producer.flush();
  std::mutex mu;
  std::map<std::string, int> attempts;
  std::vector<std::string> order;
  auto o = options(topic, test::unique_name("g"));
  o.retry_topics = {200ms, 400ms};
  o.per_key_ordering = per_key;
  running_consumer c(std::move(o), [&](const record& r) {
    std::lock_guard lock(mu);
    const std::string id(r.event_id());
    if (id == "A" && ++attempts[id] <= 3) return outcome::retry("not yet");
    order.push_back(id);
    return outcome::done();
  });
  EXPECT_TRUE(wait_for([&] { return c.get().stats().processed == 4; }, 60s)) << c.get().stats().processed;
  c.stop();
  std::lock_guard lock(mu);
  return order;
}

TEST(retry_tiers, per_key_ordering_applies_a_keys_records_in_their_original_order) {
  const auto order = applied_order(true);
  ASSERT_EQ(order.size(), 4u);
  std::vector<std::string> acct;
  for (const auto& id : order) {
    if (id != "D") acct.push_back(id);
  }
  EXPECT_EQ(acct, (std::vector<std::string>{"A", "B", "C"})) << "B and C waited behind A";
  EXPECT_EQ(order.front(), "D") << "another key is not held";
}

TEST(retry_tiers, without_per_key_ordering_later_records_pass_a_parked_one) {
  const auto order = applied_order(false);
  EXPECT_EQ(order, (std::vector<std::string>{"B", "D", "C", "A"}));
}

TEST(dlq_breaker, a_whole_batch_of_poison_halts_consumption_instead_of_dead_lettering_it) {
  const auto topic = test::unique_name("poison");
  test::kafka_create_topic(topic, 1);
  test_producer producer(test::require_services().kafka_brokers);
  for (int i = 0; i < 20; ++i) producer.send(callback_record(topic, "bad-" + std::to_string(i), "k"));
  producer.flush();
  metrics::registry reg;
  const auto group = test::unique_name("g");
  auto o = options(topic, group);
  o.dlq_window = 10;
  o.dlq_max_ratio = 0.5;
  o.metrics = &reg;
  running_consumer c(std::move(o), [](const record&) -> outcome { throw deserialization_error("not JSON"); });
  ASSERT_TRUE(wait_for([&] { return c.get().halted(); }, 60s));
  // The breaker decides before producing, so the count is final when halted() turns true; the DLQ topic's
  // count after stop() below shows nothing was sent later either.
  EXPECT_EQ(c.get().stats().dead_lettered, 5u) << "5 of a window of 10 is the most max_ratio 0.5 allows";
  EXPECT_NE(reg.render().find("outbox_consumer_halted 1"), std::string::npos) << reg.render();
  c.stop();
  const std::string dlq_topic = topic + "." + group + ".dlq";
  const auto dlq = test::kafka_consume(dlq_topic, 5, 30s);
  ASSERT_EQ(dlq.size(), 5u);
  EXPECT_EQ(dlq[0].header("dlq_error_class"), "deserialization");
  EXPECT_EQ(test::kafka_record_count(dlq_topic), 5) << "the breaker stopped the sixth";
}

}  // namespace
}  // namespace outbox::consumer
