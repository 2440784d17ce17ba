#pragma once
// What the consumer guarantee tests on real services share: consumer options on the local Kafka, a Redis
// store and its holds under a prefix of the test's own, the services script, and a log of effects that checks
// "every event applied exactly once, in order per key" in one call.

#include "outbox/consumer/consumer.hpp"
#include "outbox/dedupe/key_holds.hpp"
#include "outbox/dedupe/store.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/process.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace outbox::consumer_test {

using namespace std::chrono_literals;

/// Options for a consumer of `topics` in `group` on the local Kafka, quick to commit and to rebalance.
inline consumer::consumer_options kafka_options(std::vector<std::string> topics, const std::string& group) {
  consumer::consumer_options o;
  o.brokers = test::require_services().kafka_brokers;
  o.group_id = group;
  o.topics = std::move(topics);
  o.commit_interval = 200ms;
  o.stop_timeout = 20s;
  o.properties = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}};
  o.retry.kind = consumer::schedule_kind::fixed;
  o.retry.initial = 20ms;
  o.retry.max = 20ms;
  o.retry.max_attempts = 1;
  return o;
}

/// The Redis store of the local Redis under `prefix`: 10 days of done marks (the local broker can redeliver for
/// 1d + segment.ms 7d, plus the replay window), and `lease`.
inline dedupe::redis_options redis_options(const std::string& prefix, std::chrono::milliseconds lease = 5min) {
  return {.url = test::require_services().redis_url,
          .retention = std::chrono::hours(24 * 10),
          .lease = lease,
          .key_prefix = prefix + ":"};
}

/// Gives `o` the Redis store and its per-key holds.
inline void use_redis(consumer::consumer_options& o, const dedupe::redis_options& r) {
  o.dedupe = dedupe::make_redis_store(r);
  o.holds = dedupe::make_redis_key_holds(r, std::chrono::hours(24 * 7));
}

/// Runs scripts/services.sh (the test's own services) with `action` on `which`.
inline void services(const std::string& action, const std::string& which) {
  const char* script = std::getenv("OUTBOX_SERVICES_SCRIPT");
  ASSERT_NE(script, nullptr) << "OUTBOX_SERVICES_SCRIPT is not set: run through scripts/test.sh";
  const auto r = test::run_command({"/bin/bash", script, action, which}, 180s);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

/// Effects applied by a handler, in the order they were applied.
class effect_log {
 public:
  /// Records that `event_id` of `key` took effect.
  void applied(const std::string& event_id, const std::string& key = {}) {
    std::lock_guard lock(m_mutex);
    m_effects.emplace_back(event_id, key);
  }
  [[nodiscard]] std::size_t size() const {
    std::lock_guard lock(m_mutex);
    return m_effects.size();
  }
  [[nodiscard]] std::size_t count(const std::string& event_id) const {
    std::lock_guard lock(m_mutex);
    std::size_t n = 0;
    for (const auto& [id, key] : m_effects) n += id == event_id ? 1 : 0;
    return n;
  }
  /// The event ids applied for `key`, in order.
  [[nodiscard]] std::vector<std::string> of_key(const std::string& key) const {
    std::lock_guard lock(m_mutex);
    std::vector<std::string> out;
    for (const auto& [id, k] : m_effects) {
      if (k == key) out.push_back(id);
    }
    return out;
  }
  /// Every id of `expected` applied exactly once and nothing else; failures name the ids.
  void expect_exactly_once(const std::set<std::string>& expected) const {
    std::lock_guard lock(m_mutex);
    std::map<std::string, int> n;
    for (const auto& [id, key] : m_effects) ++n[id];
    int wrong = 0;
    for (const auto& id : expected) {
      if (n[id] != 1 && ++wrong <= 5) ADD_FAILURE() << id << " applied " << n[id] << " times";
    }
    for (const auto& [id, c] : n) {
      if (!expected.contains(id) && ++wrong <= 5) ADD_FAILURE() << id << " applied but never sent";
    }
    EXPECT_EQ(wrong, 0) << "events not applied exactly once";
  }

 private:
  mutable std::mutex m_mutex;
  std::vector<std::pair<std::string, std::string>> m_effects;
};

}  // namespace outbox::consumer_test
