#pragma once

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace outbox::relay {

/// What the cluster says about a topic the relay is about to write to.
struct topic_limits {
  bool exists = false;
  std::optional<std::size_t> max_message_bytes;  ///< nullopt when the broker would not say (no DescribeConfigs right)
  std::string error;                             ///< why the topic could not be described, if it could not
};

/// A thread that asks the Kafka cluster for metadata every `interval`, so that reachability is known in both
/// directions within seconds without waiting for the next delivery, and that describes topics on request. It reports
/// every probe (one failure is not yet "down": a second one in a row is).
/// Callbacks run on the probe's thread; the owner posts them to its loop.
class kafka_probe {
 public:
  /// Every probe's outcome: reachable (or not, with why), and when the probe's request was sent.
  using state_handler =
      std::function<void(bool reachable, const std::string& why, std::chrono::steady_clock::time_point sent)>;
  using topic_handler = std::function<void(const std::string& topic, const topic_limits& limits)>;

  kafka_probe(rd_kafka_t* rk, std::chrono::milliseconds interval, state_handler on_state, topic_handler on_topic);
  ~kafka_probe();
  kafka_probe(const kafka_probe&) = delete;
  kafka_probe& operator=(const kafka_probe&) = delete;

  /// Asks for `topic`'s existence and max.message.bytes; the answer comes through the topic handler.
  void describe(const std::string& topic);
  void stop() noexcept;

 private:
  void run();

  rd_kafka_t* m_rk;
  std::chrono::milliseconds m_interval;
  state_handler m_on_state;
  topic_handler m_on_topic;
  std::mutex m_mutex;
  std::condition_variable m_wake;
  std::deque<std::string> m_topics;
  bool m_stopping = false;
  std::thread m_thread;
};

}  // namespace outbox::relay
