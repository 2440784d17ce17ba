#pragma once
// A consumer running on its own thread, for tests on the mock cluster and on real Kafka.

#include "outbox/base/error.hpp"
#include "outbox/consumer/consumer.hpp"
#include "outbox/dedupe/store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <exception>
#include <string>
#include <thread>
#include <utility>

namespace outbox::consumer_test {

/// Lets two consumers in one process share one store, as two instances share Redis. Optionally fails the next
/// `fail_complete` completes (the store is unreachable for a moment).
class shared_store : public dedupe::store {
 public:
  explicit shared_store(std::shared_ptr<dedupe::store> s) : m_store(std::move(s)) {}
  dedupe::claim_result claim(std::string_view g, std::string_view id, std::string_view t) override {
    return m_store->claim(g, id, t);
  }
  bool renew(std::string_view g, std::string_view id, std::string_view t) override { return m_store->renew(g, id, t); }
  bool complete(std::string_view g, std::string_view id, std::string_view t) override {
    if (fail_complete.load() > 0) {
      fail_complete.fetch_sub(1);
      throw outbox_error("dedupe", "store unreachable (test)", retry_class::retryable);
    }
    return m_store->complete(g, id, t);
  }
  bool release(std::string_view g, std::string_view id, std::string_view t) override {
    return m_store->release(g, id, t);
  }
  std::size_t cleanup(std::size_t limit) override { return m_store->cleanup(limit); }
  [[nodiscard]] std::chrono::milliseconds retention() const noexcept override { return m_store->retention(); }
  [[nodiscard]] std::chrono::milliseconds lease() const noexcept override { return m_store->lease(); }

  std::atomic<int> fail_complete{0};

 private:
  std::shared_ptr<dedupe::store> m_store;
};

/// Runs consumer::run() on its own thread; stopped and joined on destruction. An exception from run()
/// fails the test when the consumer is stopped.
class running_consumer {
 public:
  running_consumer(consumer::consumer_options o, consumer::handler h) : m_consumer(std::move(o), std::move(h)) {
    start();
  }
  running_consumer(consumer::consumer_options o, consumer::transactional_handler h)
      : m_consumer(std::move(o), std::move(h)) {
    start();
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
  void start() {
    m_thread = std::thread([this] {
      try {
        m_consumer.run();
      } catch (const std::exception& e) {
        m_error = e.what();
      }
    });
  }

  consumer::consumer m_consumer;
  std::thread m_thread;
  std::string m_error;
};

}  // namespace outbox::consumer_test
