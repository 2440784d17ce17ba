#pragma once
// What the merchant-notify tests share: a fake merchant (the HTTP peer the service notifies), a schema, topic and
// group of their own, the service's config and process, and reads of its status table and API.

#include "outbox/test/process.hpp"
#include "test_producer.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace outbox::notify_test {

/// One request a merchant received.
struct received {
  std::string merchant;
  std::string idempotency_key;
  std::string timestamp;
  std::string nonce;
  std::string signature;
  std::string body;
  std::chrono::steady_clock::time_point at;
};

/// How a merchant answers one request.
struct reply {
  int status = 200;
  std::string body = "SUCCESS";
  std::string retry_after;
  std::chrono::milliseconds delay{0};  ///< wait this long before answering (past the notifier's timeout: a timeout)
};

inline reply reply_with(int status, std::string body, std::string retry_after = {},
                        std::chrono::milliseconds delay = {}) {
  return reply{status, std::move(body), std::move(retry_after), delay};
}

/// Merchants on one local HTTP server, each at `/m/<id>`: each answers with its script of replies in order, the
/// last one repeating. Thread-safe; the server has enough threads that a hanging merchant blocks no other.
class fake_merchants {
 public:
  fake_merchants();
  ~fake_merchants();
  fake_merchants(const fake_merchants&) = delete;
  fake_merchants& operator=(const fake_merchants&) = delete;

  void script(const std::string& merchant, std::vector<reply> replies);
  [[nodiscard]] std::string url(const std::string& merchant) const;
  [[nodiscard]] std::vector<received> requests(const std::string& merchant) const;
  [[nodiscard]] std::vector<received> all_requests() const;

 private:
  struct impl;
  std::unique_ptr<impl> m_impl;
};

/// A payment event for `merchant`: key = merchant id, `event_id` header, the JSON of the README.
consumer_test::outgoing payment(const std::string& topic, const std::string& event_id, const std::string& merchant,
                                std::int64_t amount_cents = 1250);

/// The signature a merchant computes for a request under `key` (the README recipe, on the received values).
bool signature_valid(const received& r, const std::string& key);

/// A test with its own PostgreSQL schema (status table and inbox), topic, consumer group and merchants.
class notify_fixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// The merchants of the config: id -> extra YAML keys of its item (e.g. "schedule: [1s]").
  /// `extra_notify` adds keys to `notify:` (two-space indented lines); `properties` is consumer.properties;
  /// `consumer_keys` adds keys to `consumer:` (e.g. "  workers: 4\n").
  std::string write_config(const std::map<std::string, std::string>& merchants, const std::string& extra_notify = "",
                           const std::string& request_timeout = "500ms", const std::string& properties = "{}",
                           const std::string& consumer_keys = "") const;
  std::unique_ptr<test::child_process> start_notifier(const std::string& config, const std::string& log_name);
  /// The port of the service's API, read from its log (metrics.listen is 127.0.0.1:0).
  static int api_port(test::child_process& p);
  /// A status row's column, or "" when there is no row / the value is NULL.
  [[nodiscard]] std::string status_of(const std::string& event_id, const std::string& column = "status") const;
  /// How many status rows have `status`.
  [[nodiscard]] long long count_status(const std::string& status, const std::string& merchant = "") const;
  void produce(const std::vector<consumer_test::outgoing>& records) const;

  static std::string key_of(const std::string& merchant) { return "key-of-" + merchant; }

  fake_merchants m_merchants;
  std::string m_schema;
  std::string m_topic;
  std::string m_group;
  std::string m_dsn;
  std::string m_dir;
};

}  // namespace outbox::notify_test
