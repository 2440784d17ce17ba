// merchant-notify against real PostgreSQL and Kafka, notifying fake merchants over HTTP: every way a merchant
// answers ends where the README says, the status API and resend tell and do what they promise, and a dead
// merchant does not hold up a healthy one.
#include "notify_support.hpp"

#include "outbox/test/environment.hpp"
#include "outbox/test/postgres.hpp"

#include <httplib.h>

#include <functional>
#include <set>
#include <string_view>

namespace outbox::notify_test {
namespace {

using namespace std::chrono_literals;
using consumer_test::outgoing;

class merchant_notify : public notify_fixture {};

nlohmann::json get_json(httplib::Client& api, const std::string& path, int expected_status) {
  const auto res = api.Get(path);
  EXPECT_TRUE(res) << path;
  if (!res) return {};
  EXPECT_EQ(res->status, expected_status) << path << ": " << res->body;
  return nlohmann::json::parse(res->body);
}

nlohmann::json post_json(httplib::Client& api, const std::string& path, int expected_status) {
  const auto res = api.Post(path);
  EXPECT_TRUE(res) << path;
  if (!res) return {};
  EXPECT_EQ(res->status, expected_status) << path << ": " << res->body;
  return nlohmann::json::parse(res->body);
}

std::string dead_letter_class(const std::string& schema, const std::string& event_id) {
  const auto rows =
      test::pg_column("SELECT error_class FROM " + schema + ".outbox_dead_letters WHERE event_id = '" + event_id + "'");
  return rows.empty() ? "" : rows.front();
}

TEST_F(merchant_notify, each_answer_ends_as_documented_and_the_status_api_and_resend_tell_it) {
  m_merchants.script("healthy", {reply{}});
  m_merchants.script("flaky", {reply_with(500, "busy"), reply_with(500, "busy"), reply{}});
  m_merchants.script("slow", {reply_with(200, "SUCCESS", "", 1500ms), reply{}});
  m_merchants.script("throttled", {reply_with(429, "slow down", "2"), reply{}});
  m_merchants.script("refusing", {reply_with(401, "bad signature")});
  m_merchants.script("short", {reply_with(500, "down")});
  const std::string config = write_config(
      {{"healthy", ""}, {"flaky", ""}, {"slow", ""}, {"throttled", ""}, {"refusing", ""}, {"short", "schedule: [1s]"}});
  std::vector<outgoing> events;
  for (int i = 0; i < 5; ++i) events.push_back(payment(m_topic, "n-healthy-" + std::to_string(i), "healthy"));
  for (const char* m : {"flaky", "slow", "throttled", "refusing", "short"}) {
    events.push_back(payment(m_topic, std::string("n-") + m, m));
  }
  produce(events);
  auto notifier = start_notifier(config, "notify.log");
  ASSERT_TRUE(
      test::wait_until([&] { return count_status("delivered") == 8 && count_status("failed") == 2; }, 60s, 100ms))
      << notifier->log();

  // Fails, then succeeds: three requests, one Idempotency-Key and one body, each signed with a fresh nonce.
  const auto flaky = m_merchants.requests("flaky");
  ASSERT_EQ(flaky.size(), 3u);
  std::set<std::string> nonces;
  for (const auto& r : flaky) {
    EXPECT_EQ(r.idempotency_key, "n-flaky");
    EXPECT_EQ(r.body, flaky.front().body);
    EXPECT_TRUE(signature_valid(r, key_of("flaky"))) << r.signature;
    EXPECT_FALSE(signature_valid(r, key_of("healthy")));
    nonces.insert(r.nonce);
  }
  EXPECT_EQ(nonces.size(), 3u);
  const auto body = nlohmann::json::parse(flaky.front().body);
  EXPECT_EQ(body["notify_id"], "n-flaky");
  EXPECT_EQ(body["merchant_id"], "flaky");
  EXPECT_EQ(body["amount_cents"], 1250);
  EXPECT_EQ(status_of("n-flaky", "attempts"), "3");
  EXPECT_EQ(status_of("n-flaky", "last_http_status"), "200");
  EXPECT_NE(status_of("n-flaky", "delivered_at"), "");

  // A timeout retries; the next attempt succeeds.
  EXPECT_GE(m_merchants.requests("slow").size(), 2u);
  EXPECT_EQ(status_of("n-slow"), "delivered");

  // 429 with Retry-After: 2 -> the next request no sooner than 2s later (the 2s tier, not the 1s one).
  const auto throttled = m_merchants.requests("throttled");
  ASSERT_EQ(throttled.size(), 2u);
  EXPECT_GE(throttled[1].at - throttled[0].at, 1900ms);

  // 401 is fatal: one request, status failed, a dead letter recorded by the same transaction.
  EXPECT_EQ(m_merchants.requests("refusing").size(), 1u);
  EXPECT_EQ(status_of("n-refusing"), "failed");
  EXPECT_NE(status_of("n-refusing", "last_error").find("HTTP 401"), std::string::npos);
  EXPECT_EQ(dead_letter_class(m_schema, "n-refusing"), "merchant_refused");

  // A merchant's own schedule [1s]: two attempts although retry.topics has three tiers, then failed.
  EXPECT_EQ(m_merchants.requests("short").size(), 2u);
  EXPECT_EQ(status_of("n-short"), "failed");
  EXPECT_EQ(dead_letter_class(m_schema, "n-short"), "retry_exhausted");

  // The status API.
  httplib::Client api("127.0.0.1", api_port(*notifier));
  auto one = get_json(api, "/notifications/n-flaky", 200);
  EXPECT_EQ(one["status"], "delivered");
  EXPECT_EQ(one["attempts"], 3);
  EXPECT_EQ(one["merchant"], "flaky");
  EXPECT_EQ(one["url"], m_merchants.url("flaky"));
  get_json(api, "/notifications/n-nowhere", 404);
  auto failed = get_json(api, "/notifications?merchant=refusing&status=failed", 200);
  ASSERT_EQ(failed["notifications"].size(), 1u);
  EXPECT_EQ(failed["notifications"][0]["event_id"], "n-refusing");
  EXPECT_EQ(get_json(api, "/notifications?merchant=healthy", 200)["notifications"].size(), 5u);
  EXPECT_EQ(get_json(api, "/notifications?status=delivered&limit=3", 200)["notifications"].size(), 3u);
  get_json(api, "/notifications?status=lost", 400);

  // Resend: a delivered notification goes out again (dedupe does not swallow it), same key, same body.
  auto resent = post_json(api, "/notifications/n-flaky/resend", 200);
  EXPECT_EQ(resent["delivered"], true);
  const auto again = m_merchants.requests("flaky");
  ASSERT_EQ(again.size(), 4u);
  EXPECT_EQ(again.back().idempotency_key, "n-flaky");
  EXPECT_EQ(again.back().body, flaky.front().body);
  EXPECT_TRUE(signature_valid(again.back(), key_of("flaky")));
  EXPECT_EQ(status_of("n-flaky", "attempts"), "4");
  // A failed one: still refused (502, still failed), then accepted once the merchant is fixed.
  post_json(api, "/notifications/n-refusing/resend", 502);
  EXPECT_EQ(status_of("n-refusing"), "failed");
  m_merchants.script("refusing", {reply{}});
  EXPECT_EQ(post_json(api, "/notifications/n-refusing/resend", 200)["http_status"], 200);
  EXPECT_EQ(status_of("n-refusing"), "delivered");
  post_json(api, "/notifications/n-nowhere/resend", 404);
  // One the schedule still owns is not resent.
  test::pg_exec("INSERT INTO " + m_schema +
                ".merchant_notifications (event_id, merchant, status, url, body) VALUES ('n-owned', 'healthy', "
                "'pending', '" +
                m_merchants.url("healthy") + "', '{}')");
  post_json(api, "/notifications/n-owned/resend", 409);
  EXPECT_EQ(m_merchants.requests("healthy").size(), 5u);

  // Metrics and probes.
  const auto metrics = api.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("notify_deliveries_total{merchant=\"healthy\"} 5\n"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("notify_failures_total{merchant=\"refusing\"} 1\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("notify_attempts_total{merchant=\"flaky\",result=\"retry\"} 2\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("notify_attempts_total{merchant=\"throttled\",result=\"retry_after\"} 1\n"),
            std::string::npos);
  EXPECT_NE(metrics->body.find("notify_delivery_latency_seconds_count{merchant=\"flaky\"} 1\n"), std::string::npos);
  EXPECT_NE(metrics->body.find("notify_resends_total{merchant=\"refusing\",result=\"delivered\"} 1\n"),
            std::string::npos);
  EXPECT_NE(metrics->body.find("outbox_consumer_"), std::string::npos) << "the SDK's metrics share /metrics";
  const auto healthz = api.Get("/healthz");
  ASSERT_TRUE(healthz);
  EXPECT_EQ(healthz->status, 200);
  const auto readyz = api.Get("/readyz");
  ASSERT_TRUE(readyz);
  EXPECT_EQ(readyz->status, 200) << readyz->body;

  EXPECT_EQ(notifier->stop(SIGTERM, 30s), 0) << notifier->log();
}

TEST_F(merchant_notify, a_dead_merchant_next_to_a_healthy_one_opens_its_circuit_and_halts_nothing) {
  m_merchants.script("dead", {reply_with(200, "SUCCESS", "", 2s)});  // answers after the 500ms timeout: never in time
  m_merchants.script("healthy", {reply{}});
  const std::string config =
      write_config({{"dead", ""}, {"healthy", ""}}, "  breaker_failures: 2\n  breaker_cooldown: 60s\n");
  std::vector<outgoing> events;
  for (int i = 0; i < 10; ++i) events.push_back(payment(m_topic, "n-dead-" + std::to_string(i), "dead"));
  for (int i = 0; i < 30; ++i) events.push_back(payment(m_topic, "n-healthy-" + std::to_string(i), "healthy"));
  produce(events);
  auto notifier = start_notifier(config, "notify.log");

  // All of the healthy merchant's notifications arrive, within a bound far below the dead merchant's schedule.
  ASSERT_TRUE(test::wait_until([&] { return count_status("delivered", "healthy") == 30; }, 30s, 100ms))
      << notifier->log();
  // The dead merchant's circuit opened after two timeouts: its later attempts sent nothing.
  ASSERT_TRUE(test::wait_until([&] { return count_status("failed", "dead") == 10; }, 60s, 100ms)) << notifier->log();
  EXPECT_LE(m_merchants.requests("dead").size(), 2u);
  EXPECT_EQ(m_merchants.requests("healthy").size(), 30u);

  // Ten dead letters in a window of ten did not halt the service (dlq.max_ratio 1.0): later events still go out.
  httplib::Client api("127.0.0.1", api_port(*notifier));
  const auto readyz = api.Get("/readyz");
  ASSERT_TRUE(readyz);
  EXPECT_EQ(readyz->status, 200) << readyz->body;
  produce({payment(m_topic, "n-after", "healthy")});
  ASSERT_TRUE(test::wait_until([&] { return status_of("n-after") == "delivered"; }, 30s, 100ms)) << notifier->log();
  const auto metrics = api.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("notify_failures_total{merchant=\"dead\"} 10\n"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("notify_attempts_total{merchant=\"dead\",result=\"skipped\"}"), std::string::npos);
  EXPECT_EQ(notifier->stop(SIGTERM, 30s), 0) << notifier->log();
}

// consumer.workers: a merchant whose every request runs into the timeout (its circuit never opens here) holds only
// its own lane; the healthy merchant's notifications, keyed to another lane, all arrive while it still waits.
TEST_F(merchant_notify, with_workers_a_merchant_that_times_out_holds_only_its_own_lane) {
  // The SDK's lanes hash the Kafka key (the merchant id): pick a worker count that puts the two in different lanes.
  std::size_t workers = 4;
  while (std::hash<std::string_view>{}("slow") % workers == std::hash<std::string_view>{}("healthy") % workers) {
    ++workers;
  }
  m_merchants.script("slow", {reply_with(200, "SUCCESS", "", 2s)});  // never within the 500ms timeout
  m_merchants.script("healthy", {reply{}});
  const std::string config = write_config({{"slow", ""}, {"healthy", ""}}, "  breaker_failures: 1000\n", "500ms", "{}",
                                          "  workers: " + std::to_string(workers) + "\n");
  std::vector<outgoing> events;
  // The slow merchant's ten come first: on one thread the healthy ones would wait 10 x 500ms behind them.
  for (int i = 0; i < 10; ++i) events.push_back(payment(m_topic, "w-slow-" + std::to_string(i), "slow"));
  for (int i = 0; i < 30; ++i) events.push_back(payment(m_topic, "w-healthy-" + std::to_string(i), "healthy"));
  produce(events);
  auto notifier = start_notifier(config, "notify.log");
  ASSERT_TRUE(test::wait_until([&] { return count_status("delivered", "healthy") == 30; }, 30s, 20ms))
      << notifier->log();
  // The slow lane is still working through its first timeouts when the healthy lane is done.
  EXPECT_LT(m_merchants.requests("slow").size(), 10u) << "the healthy notifications waited behind the slow ones";
  EXPECT_EQ(notifier->stop(SIGTERM, 30s), 0) << notifier->log();
}

}  // namespace
}  // namespace outbox::notify_test
