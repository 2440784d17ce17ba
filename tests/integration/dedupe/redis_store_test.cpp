#include "dedupe_test_util.hpp"

#include "outbox/base/error.hpp"
#include "outbox/dedupe/key_holds.hpp"
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

TEST(redis_store, keeps_the_store_contract) {
  test::check_store([](std::chrono::milliseconds retention, std::chrono::milliseconds lease) {
    return make_redis_store(options(lease, retention));
  });
}

TEST(redis_store, holds_keep_the_contract_shared_by_every_instance) {
  const auto o = options();
  test::check_holds([&](std::chrono::milliseconds lapse) { return make_redis_key_holds(o, lapse); }, true);
}

TEST(redis_store, keys_carry_the_owners_token_and_lease_and_then_the_retention) {
  const auto o = options(30s, 50s);
  auto s = make_redis_store(o);
  raw_redis raw;
  ASSERT_EQ(s->claim("g", "e1", "w1"), claim_result::claimed);
  const std::string key = o.key_prefix + "g:e1";
  EXPECT_EQ(raw.run({"GET", key}), "claim:w1");
  const long lease_left = std::stol(raw.run({"PTTL", key}));
  EXPECT_GT(lease_left, 0);
  EXPECT_LE(lease_left, 30'000);
  EXPECT_TRUE(s->complete("g", "e1", "w1"));
  EXPECT_EQ(raw.run({"GET", key}), "done");
  const long retention_left = std::stol(raw.run({"PTTL", key}));
  EXPECT_GT(retention_left, 30'000);
  EXPECT_LE(retention_left, 50'000);
  EXPECT_EQ(s->claim("g:e1", "x", "w1"), claim_result::claimed) << "':' in a group cannot alias another pair";
  EXPECT_EQ(s->claim("g", "e1:x", "w2"), claim_result::claimed);
  EXPECT_EQ(s->cleanup(1000), 0u) << "keys expire by themselves";
}

TEST(redis_store, a_claim_whose_reply_was_lost_is_found_again_as_the_callers_own) {
  // The first SET reached Redis but its reply never came back: the retried claim finds the caller's token.
  const auto o = options(60s);
  auto s = make_redis_store(o);
  raw_redis raw;
  raw.run({"SET", o.key_prefix + "g:e1", "claim:w1", "PX", "60000"});
  EXPECT_EQ(s->claim("g", "e1", "w1"), claim_result::claimed);
  EXPECT_EQ(s->claim("g", "e1", "w2"), claim_result::in_progress);
  // A claim written before owner tokens existed holds off everyone until it expires.
  raw.run({"SET", o.key_prefix + "g:old", "in_progress", "PX", "60000"});
  EXPECT_EQ(s->claim("g", "old", "w1"), claim_result::in_progress);
  // A value this store never writes is a configuration problem, and fatal.
  raw.run({"SET", o.key_prefix + "g:foreign", "something else"});
  try {
    s->claim("g", "foreign", "w1");
    FAIL() << "expected an outbox_error";
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().retry, retry_class::fatal);
    EXPECT_NE(e.value().message.find("key_prefix"), std::string::npos) << e.value().message;
  }
}

TEST(redis_store, keeps_working_after_redis_forgets_its_scripts) {
  auto s = make_redis_store(options());
  raw_redis raw;
  raw.run({"SCRIPT", "FLUSH"});
  EXPECT_EQ(s->claim("g", "e1", "w1"), claim_result::claimed);
  EXPECT_TRUE(s->complete("g", "e1", "w1"));
  EXPECT_EQ(s->claim("g", "e1", "w2"), claim_result::duplicate);
}

TEST(redis_store, concurrent_claims_from_two_instances_have_exactly_one_winner_per_id) {
  const auto o = options();
  auto a = make_redis_store(o);
  auto b = make_redis_store(o);
  const auto counts = test::claim_concurrently({a.get(), b.get()}, 4, 1000);
  EXPECT_TRUE(test::not_exactly_once(counts).empty()) << test::not_exactly_once(counts).size() << " ids";
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
  ASSERT_EQ(s->claim("g", "e1", "w1"), claim_result::claimed);
  raw_redis raw;
  EXPECT_EQ(raw.run({"EXISTS", o.key_prefix + "g:e1"}), "0");
  raw.run({"SELECT", "3"});
  EXPECT_EQ(raw.run({"EXISTS", o.key_prefix + "g:e1"}), "1");
  EXPECT_TRUE(s->release("g", "e1", "w1"));
}

}  // namespace
}  // namespace outbox::dedupe
