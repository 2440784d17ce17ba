// merchant-notify's pure parts: the signature a merchant verifies, how an answer ends an attempt, the circuit.
#include "merchant_guard.hpp"
#include "response.hpp"
#include "signature.hpp"

#include <gtest/gtest.h>

#include <set>

namespace outbox::notify {
namespace {

using namespace std::chrono_literals;

TEST(signature, hmac_sha256_matches_rfc_4231_test_case_2) {
  EXPECT_EQ(hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(signature, signs_timestamp_dot_nonce_dot_body_as_the_readme_recipe_does) {
  EXPECT_EQ(string_to_sign("1700000000", "n1", "{}"), "1700000000.n1.{}");
  // The value Python's hmac.new(key, ts + "." + nonce + "." + body, hashlib.sha256).hexdigest() gives.
  EXPECT_EQ(
      signature_header("merchant-key-1", "1700000000", "00112233445566778899aabbccddeeff", R"({"amount_cents":1250})"),
      "v1=e4284a27aae0f6657b480c9f69439265b373d13baf9e203a60e987d275d24479");
  EXPECT_NE(signature_header("merchant-key-2", "1700000000", "n", "{}"),
            signature_header("merchant-key-1", "1700000000", "n", "{}"));
}

TEST(signature, nonces_are_32_hex_digits_and_do_not_repeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string n = random_nonce();
    ASSERT_EQ(n.size(), 32u);
    ASSERT_EQ(n.find_first_not_of("0123456789abcdef"), std::string::npos);
    seen.insert(n);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

http_result answer(long status, std::string body = "", std::string retry_after = "") {
  http_result r;
  r.transport_ok = true;
  r.status = status;
  r.body = std::move(body);
  r.retry_after = std::move(retry_after);
  return r;
}

TEST(classify, success_needs_a_2xx_with_the_expected_body) {
  EXPECT_EQ(classify(answer(200, "SUCCESS"), "SUCCESS").kind, verdict_kind::delivered);
  EXPECT_EQ(classify(answer(204, " SUCCESS\r\n"), "SUCCESS").kind, verdict_kind::delivered);
  EXPECT_EQ(classify(answer(200, "OK"), "SUCCESS").kind, verdict_kind::retry);
  EXPECT_EQ(classify(answer(200, ""), "SUCCESS").kind, verdict_kind::retry);
  EXPECT_EQ(classify(answer(200, "accepted"), "accepted").kind, verdict_kind::delivered);
  EXPECT_EQ(classify(answer(302, "SUCCESS"), "SUCCESS").kind, verdict_kind::retry);
}

TEST(classify, signature_url_and_gone_answers_are_fatal) {
  for (const long s : {400L, 401L, 403L, 404L, 410L}) {
    EXPECT_EQ(classify(answer(s, "bad signature"), "SUCCESS").kind, verdict_kind::fatal) << s;
  }
  for (const long s : {405L, 408L, 409L, 422L, 500L, 502L, 504L}) {
    EXPECT_EQ(classify(answer(s), "SUCCESS").kind, verdict_kind::retry) << s;
  }
}

TEST(classify, no_answer_retries) {
  http_result timeout;
  timeout.timed_out = true;
  timeout.transport_error = "Timeout was reached";
  const verdict v = classify(timeout, "SUCCESS");
  EXPECT_EQ(v.kind, verdict_kind::retry);
  EXPECT_NE(v.reason.find("timeout"), std::string::npos);
  http_result refused;
  refused.transport_error = "Couldn't connect to server";
  EXPECT_EQ(classify(refused, "SUCCESS").kind, verdict_kind::retry);
}

TEST(classify, retry_after_on_429_and_503_in_seconds_or_as_a_date) {
  const auto now = std::chrono::system_clock::from_time_t(1445412480);  // Wed, 21 Oct 2015 07:28:00 GMT
  verdict v = classify(answer(429, "", "120"), "SUCCESS", now);
  EXPECT_EQ(v.kind, verdict_kind::retry_after);
  EXPECT_EQ(v.delay, 120s);
  v = classify(answer(503, "", "Wed, 21 Oct 2015 07:29:30 GMT"), "SUCCESS", now);
  EXPECT_EQ(v.kind, verdict_kind::retry_after);
  EXPECT_EQ(v.delay, 90s);
  EXPECT_EQ(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), 0ms) << "a past date: now";
  EXPECT_EQ(classify(answer(429, "", "soon"), "SUCCESS", now).kind, verdict_kind::retry) << "unreadable: schedule";
  EXPECT_EQ(classify(answer(429), "SUCCESS", now).kind, verdict_kind::retry);
  EXPECT_EQ(classify(answer(500, "", "5"), "SUCCESS", now).kind, verdict_kind::retry) << "only 429 and 503";
  EXPECT_FALSE(parse_retry_after("-5", now));
}

TEST(merchant_guard, opens_after_k_consecutive_failures_and_lets_one_probe_through_after_the_cooldown) {
  merchant_guard g(3, 10s, 4);
  const auto t0 = merchant_guard::clock::time_point{} + 1h;
  for (int i = 0; i < 2; ++i) {
    ASSERT_FALSE(g.admit("m", t0));
    g.finish("m", true, t0);
  }
  ASSERT_FALSE(g.admit("m", t0));
  g.finish("m", false, t0);  // a success resets the count
  for (int i = 0; i < 3; ++i) {
    ASSERT_FALSE(g.admit("m", t0));
    g.finish("m", true, t0);
  }
  EXPECT_TRUE(g.open("m", t0));
  const auto refused = g.admit("m", t0 + 1s);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->wait, 9s);
  EXPECT_FALSE(g.admit("other", t0 + 1s)) << "one merchant's circuit is its own";
  g.finish("other", false, t0 + 1s);
  ASSERT_FALSE(g.admit("m", t0 + 10s)) << "half-open: one probe";
  EXPECT_TRUE(g.admit("m", t0 + 10s)) << "and only one";
  g.finish("m", true, t0 + 10s);
  EXPECT_TRUE(g.admit("m", t0 + 11s)) << "a failed probe opens it again";
  ASSERT_FALSE(g.admit("m", t0 + 20s));
  g.finish("m", false, t0 + 20s);
  EXPECT_FALSE(g.open("m", t0 + 20s));
  EXPECT_FALSE(g.admit("m", t0 + 20s)) << "a successful probe closes it";
  g.finish("m", false, t0 + 20s);
}

TEST(merchant_guard, caps_requests_in_flight_per_merchant) {
  merchant_guard g(5, 10s, 2);
  ASSERT_FALSE(g.admit("m"));
  ASSERT_FALSE(g.admit("m"));
  EXPECT_TRUE(g.admit("m"));
  EXPECT_FALSE(g.admit("n"));
  g.finish("m", false);
  EXPECT_FALSE(g.admit("m"));
}

}  // namespace
}  // namespace outbox::notify
