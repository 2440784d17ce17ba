#include "outbox/base/error.hpp"
#include "outbox/dedupe/redis_url.hpp"
#include "outbox/dedupe/store.hpp"
#include "outbox/test/environment.hpp"

#include <gtest/gtest.h>
#include <hiredis/hiredis.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace outbox::dedupe {
namespace {

using namespace std::chrono_literals;
using outbox::test::unique_name;
using outbox::test::wait_until;

const std::string& redis_url() {
  const std::string& url = outbox::test::require_services().redis_url;
  if (url.empty()) {
    throw std::runtime_error(
        "OUTBOX_REDIS_URL is not set: run `scripts/services.sh start` and source .run/services.env");
  }
  return url;
}

/// Each test's keys live under their own prefix and expire within a minute.
redis_options options(std::chrono::milliseconds lease = 60s, std::chrono::milliseconds retention = 60s) {
  return {.url = redis_url(), .retention = retention, .lease = lease, .key_prefix = unique_name("dedupe") + ":"};
}

/// A plain connection to look at keys from outside the store.
struct raw_redis {
  raw_redis() {
    const auto ep = parse_redis_url(redis_url());
    if (!ep) throw std::runtime_error("OUTBOX_REDIS_URL is not a redis:// URL");
    m_ctx = redisConnect(ep->host.c_str(), ep->port);
    if (m_ctx == nullptr || m_ctx->err != 0) throw std::runtime_error("cannot connect to " + redis_url());
    if (!ep->password.empty()) run({"AUTH", ep->password});
    if (ep->db != 0) run({"SELECT", std::to_string(ep->db)});
  }
  ~raw_redis() { redisFree(m_ctx); }
  raw_redis(const raw_redis&) = delete;
  raw_redis& operator=(const raw_redis&) = delete;

  /// The reply to `args` as text (integers as decimal, nil as "(nil)").
  std::string run(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    for (const auto& a : args) {
      argv.push_back(a.c_str());
      lengths.push_back(a.size());
    }
    auto* r =
        static_cast<redisReply*>(redisCommandArgv(m_ctx, static_cast<int>(argv.size()), argv.data(), lengths.data()));
    if (r == nullptr) throw std::runtime_error(m_ctx->errstr);
    std::string out = r->type == REDIS_REPLY_INTEGER ? std::to_string(r->integer)
                      : r->type == REDIS_REPLY_NIL   ? std::string("(nil)")
                                                     : std::string(r->str, r->len);
    freeReplyObject(r);
    return out;
  }

  redisContext* m_ctx = nullptr;
};

TEST(redis_store, claim_in_progress_duplicate_and_release) {
  const auto o = options();
  auto s = make_redis_store(o);
  EXPECT_EQ(s->claim("g", "e1"), claim_result::claimed);
  EXPECT_EQ(s->claim("g", "e1"), claim_result::in_progress);
  s->release("g", "e1");
  EXPECT_EQ(s->claim("g", "e1"), claim_result::claimed);
  s->complete("g", "e1");
  EXPECT_EQ(s->claim("g", "e1"), claim_result::duplicate);
  s->release("g", "e1");  // a done mark is never released
  EXPECT_EQ(s->claim("g", "e1"), claim_result::duplicate);
  EXPECT_EQ(s->claim("g2", "e1"), claim_result::claimed);
  EXPECT_EQ(s->claim("g:e1", ""), claim_result::claimed);  // ':' in a group cannot alias another pair
  EXPECT_EQ(s->cleanup(1000), 0u);                         // keys expire by themselves
}

TEST(redis_store, keys_carry_the_lease_and_then_the_retention) {
  const auto o = options(30s, 50s);
  auto s = make_redis_store(o);
  raw_redis raw;
  ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);
  const std::string key = o.key_prefix + "g:e1";
  EXPECT_EQ(raw.run({"GET", key}), "in_progress");
  const long lease_left = std::stol(raw.run({"PTTL", key}));
  EXPECT_GT(lease_left, 0);
  EXPECT_LE(lease_left, 30'000);
  s->complete("g", "e1");
  EXPECT_EQ(raw.run({"GET", key}), "done");
  const long retention_left = std::stol(raw.run({"PTTL", key}));
  EXPECT_GT(retention_left, 30'000);
  EXPECT_LE(retention_left, 50'000);
}

TEST(redis_store, an_expired_lease_can_be_claimed_again) {
  auto s = make_redis_store(options(300ms));
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);
  ASSERT_TRUE(wait_until([&] { return s->claim("g", "e1") == claim_result::claimed; }, 5s, 10ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 295ms);  // Redis counts on its own clock
  EXPECT_EQ(s->claim("g", "e1"), claim_result::in_progress);
}

TEST(redis_store, done_marks_expire_after_the_retention) {
  auto s = make_redis_store(options(60s, 150ms));
  ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);
  s->complete("g", "e1");
  ASSERT_EQ(s->claim("g", "e1"), claim_result::duplicate);
  EXPECT_TRUE(wait_until([&] { return s->claim("g", "e1") == claim_result::claimed; }, 5s, 10ms));
}

TEST(redis_store, concurrent_claims_from_two_instances_have_exactly_one_winner_per_id) {
  const auto o = options();
  auto a = make_redis_store(o);
  auto b = make_redis_store(o);
  constexpr std::size_t ids = 1000;
  std::vector<std::atomic<int>> claimed(ids);
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  workers.reserve(4);
  for (std::size_t t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      store& s = t % 2 == 0 ? *a : *b;
      while (!go.load()) std::this_thread::yield();
      for (std::size_t i = 0; i < ids; ++i) {
        const std::string id = "evt-" + std::to_string(i);
        if (s.claim("g", id) == claim_result::claimed) {
          claimed[i].fetch_add(1);
          s.complete("g", id);
        }
      }
    });
  }
  go = true;
  for (auto& w : workers) w.join();
  std::size_t not_once = 0;
  for (auto& c : claimed) not_once += c.load() == 1 ? 0 : 1;
  EXPECT_EQ(not_once, 0u) << "ids not claimed exactly once";
}

TEST(redis_store, configuration_errors_are_fatal_and_an_unreachable_server_retryable) {
  try {
    make_redis_store({.url = "redis//nope", .retention = 1h});
    FAIL() << "expected an outbox_error";
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().retry, retry_class::fatal);
    EXPECT_NE(e.value().message.find("dedupe.url"), std::string::npos) << e.value().message;
  }
  try {
    make_redis_store({.url = "redis://127.0.0.1:1", .retention = 1h});
    FAIL() << "expected an outbox_error";
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().retry, retry_class::retryable);
    EXPECT_NE(e.value().message.find("127.0.0.1:1"), std::string::npos) << e.value().message;
  }
  // This server has no password: AUTH fails, and the message does not show the password.
  const std::string& url = redis_url();
  try {
    make_redis_store({.url = "redis://:hunter2@" + url.substr(8), .retention = 1h});
    FAIL() << "expected an outbox_error";
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().retry, retry_class::fatal);
    EXPECT_NE(e.value().message.find("AUTH"), std::string::npos) << e.value().message;
    EXPECT_EQ(e.value().message.find("hunter2"), std::string::npos) << e.value().message;
  }
}

TEST(redis_store, selects_the_database_from_the_url) {
  auto o = options();
  o.url = redis_url() + "/3";
  auto s = make_redis_store(o);
  ASSERT_EQ(s->claim("g", "e1"), claim_result::claimed);
  raw_redis raw;
  EXPECT_EQ(raw.run({"EXISTS", o.key_prefix + "g:e1"}), "0");
  raw.run({"SELECT", "3"});
  EXPECT_EQ(raw.run({"EXISTS", o.key_prefix + "g:e1"}), "1");
  s->release("g", "e1");
}

}  // namespace
}  // namespace outbox::dedupe
