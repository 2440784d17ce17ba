#pragma once
// A consumer running on its own thread, for tests on the mock cluster and on real Kafka.

#include "outbox/consumer/consumer.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <exception>
#include <string>
#include <thread>
#include <utility>

namespace outbox::consumer_test {

/// Runs consumer::run() on its own thread; stopped and joined on destruction. An exception from run()
/// fails the test when the consumer is stopped.
class running_consumer {
 public:
  running_consumer(consumer::consumer_options o, consumer::handler h) : m_consumer(std::move(o), std::move(h)) {
    m_thread = std::thread([this] {
      try {
        m_consumer.run();
      } catch (const std::exception& e) {
        m_error = e.what();
      }
    });
  }
  ~running_consumer() { stop(); }
  running_consumer(const running_consumer&) = delete;
  running_consumer& operator=(const running_consumer&) = delete;

  consumer::consumer& get() { return m_consumer; }
  /// Stops and joins; returns how long run() took to return after the request.
  std::chrono::milliseconds stop() {
    const auto t0 = std::chrono::steady_clock::now();
    m_consumer.stop();
    if (m_thread.joinable()) m_thread.join();
    EXPECT_EQ(m_error, "");
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  }

 private:
  consumer::consumer m_consumer;
  std::thread m_thread;
  std::string m_error;
};

}  // namespace outbox::consumer_test
