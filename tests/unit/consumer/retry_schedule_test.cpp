#include "outbox/config/consumer_config.hpp"
#include "outbox/consumer/retry_schedule.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <functional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace outbox::consumer {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

constexpr int k_samples = 100'000;
constexpr std::uint64_t k_salt = 0x5eed;

retry_policy policy(schedule_kind kind, milliseconds initial, milliseconds max = 30s) {
  retry_policy p;
  p.kind = kind;
  p.initial = initial;
  p.max = max;
  return p;
}

retry_policy exponential(milliseconds initial, milliseconds max) {
  return policy(schedule_kind::exponential, initial, max);
}

retry_policy decorrelated(milliseconds initial, milliseconds max) {
  return policy(schedule_kind::decorrelated, initial, max);
}

retry_policy fixed(milliseconds delay) { return policy(schedule_kind::fixed, delay); }

retry_policy listed(std::vector<milliseconds> delays) {
  retry_policy p;
  p.kind = schedule_kind::list;
  p.delays = std::move(delays);
  return p;
}

/// A spread of seeds as the SDK makes them: one per record identity.
std::uint64_t seed_of(int i) { return jitter_seed("evt-" + std::to_string(i), k_salt); }

/// The delays a record gets from its first failure until the schedule gives up (at most `limit`).
std::vector<milliseconds> run_until_give_up(const retry_schedule& s, std::uint64_t seed, int limit = 100) {
  std::vector<milliseconds> out;
  milliseconds elapsed{0};
  for (int failures = 1; failures <= limit; ++failures) {
    const auto d = s.next_delay(failures, elapsed, seed);
    if (!d) break;
    out.push_back(*d);
    elapsed += *d;
  }
  return out;
}

std::string invalid_argument_message(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected std::invalid_argument";
  return {};
}

TEST(retry_schedule, exponential_delays_stay_within_full_jitter_bounds) {
  const retry_schedule s(exponential(200ms, 30s));
  for (int failures = 1; failures <= 12; ++failures) {
    const milliseconds cap = std::min<milliseconds>(30s, 200ms * (1LL << (failures - 1)));
    milliseconds lowest = cap;
    milliseconds highest{0};
    for (int i = 0; i < k_samples; ++i) {
      const auto d = s.next_delay(failures, 0ms, seed_of(i));
      ASSERT_TRUE(d.has_value());
      ASSERT_GE(*d, 1ms) << "failures " << failures;
      ASSERT_LE(*d, cap) << "failures " << failures;
      lowest = std::min(lowest, *d);
      highest = std::max(highest, *d);
    }
    // Full jitter really spans the range: both ends are reached, up to a small fraction of it.
    EXPECT_LE(lowest, std::max<milliseconds>(1ms, cap / 1000)) << "failures " << failures;
    EXPECT_GE(highest, cap - cap / 1000) << "failures " << failures;
  }
}

TEST(retry_schedule, exponential_full_jitter_is_uniform_with_mean_half_the_cap) {
  const retry_schedule s(exponential(200ms, 30s));
  for (int failures = 1; failures <= 10; ++failures) {
    const double cap = static_cast<double>(std::min<milliseconds>(30s, 200ms * (1LL << (failures - 1))).count());
    double sum = 0;
    std::array<int, 10> buckets{};
    for (int i = 0; i < k_samples; ++i) {
      const double d = static_cast<double>(s.next_delay(failures, 0ms, seed_of(i))->count());
      sum += d;
      ++buckets[std::min<std::size_t>(9, static_cast<std::size_t>(d / cap * 10))];
    }
    const double ratio = sum / k_samples / cap;
    EXPECT_NEAR(ratio, 0.5, 0.01) << "failures " << failures << ": mean/cap " << ratio;
    for (std::size_t b = 0; b < buckets.size(); ++b) {
      EXPECT_NEAR(buckets[b], k_samples / 10.0, k_samples / 100.0) << "failures " << failures << ", decile " << b;
    }
    ::testing::Test::RecordProperty("mean_over_cap_failures_" + std::to_string(failures), std::to_string(ratio));
  }
}

TEST(retry_schedule, exponential_draws_are_pinned_for_a_seed) {
  // splitmix64 by hand: these never change with the compiler or standard library, so a record's delays replay.
  const retry_schedule s(exponential(200ms, 30s));
  std::vector<milliseconds> got;
  for (int failures = 1; failures <= 8; ++failures) got.push_back(*s.next_delay(failures, 0ms, 42));
  EXPECT_THAT(got, ElementsAre(55ms, 396ms, 621ms, 866ms, 640ms, 5847ms, 10537ms, 12664ms));
}

TEST(retry_schedule, decorrelated_stays_within_initial_and_max_and_at_most_triples) {
  const retry_schedule s(decorrelated(100ms, 10s));
  int reached_max = 0;
  std::set<milliseconds> distinct;
  for (int i = 0; i < k_samples; ++i) {
    const std::uint64_t seed = seed_of(i);
    milliseconds previous{0};
    for (int failures = 1; failures <= 8; ++failures) {
      const milliseconds d = *s.next_delay(failures, 0ms, seed);
      if (failures == 1) {
        ASSERT_EQ(d, 100ms) << "d1 is initial";
      } else {
        ASSERT_LE(d, 3 * previous) << "seed " << seed << ", failures " << failures;
      }
      ASSERT_GE(d, 100ms);
      ASSERT_LE(d, 10s);
      if (d == 10s) ++reached_max;
      distinct.insert(d);
      previous = d;
    }
  }
  EXPECT_GT(reached_max, 0) << "the cap is reached";
  EXPECT_GT(distinct.size(), 5000U) << "the delays are spread out";
}

TEST(retry_schedule, decorrelated_draws_are_pinned_for_a_seed) {
  const retry_schedule s(decorrelated(200ms, 30s));
  std::vector<milliseconds> got;
  for (int failures = 1; failures <= 8; ++failures) got.push_back(*s.next_delay(failures, 0ms, 42));
  EXPECT_THAT(got, ElementsAre(200ms, 596ms, 1145ms, 1948ms, 215ms, 356ms, 955ms, 1788ms));
}

TEST(retry_schedule, fixed_is_constant) {
  const retry_schedule s(fixed(750ms));
  for (int failures = 1; failures <= 50; ++failures) {
    for (int i = 0; i < 100; ++i) EXPECT_EQ(s.next_delay(failures, 0ms, seed_of(i)), 750ms);
  }
}

TEST(retry_schedule, list_is_exact_and_then_gives_up) {
  const retry_schedule s(listed({1s, 5s, 0ms, 1min}));
  for (int i = 0; i < 100; ++i) {
    EXPECT_THAT(run_until_give_up(s, seed_of(i)), ElementsAre(1s, 5s, 0ms, 1min));
  }
  EXPECT_EQ(s.next_delay(4, 0ms, 1), 1min);
  EXPECT_EQ(s.next_delay(5, 0ms, 1), std::nullopt);
  EXPECT_EQ(s.next_delay(1000, 0ms, 1), std::nullopt);
}

TEST(retry_schedule, wechatpay_preset_has_its_fifteen_delays_and_gives_up_after_sixteen_attempts) {
  const std::vector<milliseconds> expected = {15s,   15s,   30s, 3min, 10min, 20min, 30min, 30min,
                                              30min, 60min, 3h,  3h,   3h,    6h,    6h};
  const retry_policy p = wechatpay_policy();
  EXPECT_EQ(p.kind, schedule_kind::list);
  EXPECT_THAT(p.delays, ElementsAreArray(expected));
  const retry_schedule s(p);
  EXPECT_THAT(run_until_give_up(s, 7), ElementsAreArray(expected));
  EXPECT_EQ(s.next_delay(15, 0ms, 7), 6h) << "before the 16th attempt";
  EXPECT_EQ(s.next_delay(16, 0ms, 7), std::nullopt) << "16 attempts made: give up";
  EXPECT_EQ(s.worst_case_total(16), 24h + 4min);
  EXPECT_EQ(s.worst_case_total(1000), 24h + 4min);
}

TEST(retry_schedule, max_attempts_caps_every_kind) {
  for (auto p : {exponential(10ms, 1s), decorrelated(10ms, 1s), fixed(200ms), listed({1s, 2s, 3s, 4s, 5s})}) {
    p.max_attempts = 3;
    const retry_schedule s(p);
    EXPECT_TRUE(s.next_delay(1, 0ms, 9).has_value());
    EXPECT_TRUE(s.next_delay(2, 0ms, 9).has_value());
    EXPECT_EQ(s.next_delay(3, 0ms, 9), std::nullopt) << "3 attempts made";
    EXPECT_EQ(run_until_give_up(s, 9).size(), 2U);
  }
  auto p = listed({1s, 2s});
  p.max_attempts = 10;
  EXPECT_EQ(run_until_give_up(retry_schedule(p), 9).size(), 2U) << "the list ends first";
  EXPECT_EQ(run_until_give_up(retry_schedule(exponential(1ms, 1ms)), 9, 5000).size(), 5000U) << "0 = no cap";
}

TEST(retry_schedule, max_elapsed_gives_up_before_a_delay_would_pass_it) {
  retry_policy p = fixed(1s);
  p.max_elapsed = 10s;
  const retry_schedule s(p);
  EXPECT_EQ(s.next_delay(3, 9s, 1), 1s) << "ends exactly at max_elapsed";
  EXPECT_EQ(s.next_delay(3, 9001ms, 1), std::nullopt);
  EXPECT_EQ(run_until_give_up(s, 1).size(), 10U);

  auto e = exponential(100ms, 5s);
  e.max_elapsed = 1min;
  const retry_schedule capped(e);
  for (int i = 0; i < 1000; ++i) {
    const auto delays = run_until_give_up(capped, seed_of(i), 1000);
    milliseconds total{0};
    for (const auto d : delays) total += d;
    EXPECT_LE(total, 1min);
    EXPECT_LT(delays.size(), 1000U);
  }
}

TEST(retry_schedule, same_seed_same_delays_and_different_seeds_differ) {
  for (const auto& p : {exponential(200ms, 30s), decorrelated(200ms, 30s)}) {
    const retry_schedule s(p);
    std::set<std::vector<milliseconds>> sequences;
    for (int i = 0; i < 1000; ++i) {
      const auto first = run_until_give_up(s, seed_of(i), 10);
      EXPECT_EQ(first, run_until_give_up(s, seed_of(i), 10));
      EXPECT_EQ(first, run_until_give_up(retry_schedule(p), seed_of(i), 10)) << "another instance, same delays";
      sequences.insert(first);
    }
    EXPECT_EQ(sequences.size(), 1000U) << "every seed gives its own sequence";
  }
}

TEST(retry_schedule, jitter_seed_is_a_stable_hash_of_identity_and_salt) {
  // Computed once from FNV-1a 64 and the splitmix64 finalizer outside this code base.
  EXPECT_EQ(jitter_seed("evt-0001", 42), 0x4405f8398c6b8ac8ULL);
  EXPECT_EQ(jitter_seed("payments/3/1234", 0x5eed), 0x0a1a49a684e46ae1ULL);
  EXPECT_EQ(jitter_seed("", 0), 0xf52a15e9a9b5e89bULL);
  EXPECT_NE(jitter_seed("evt-0001", 42), jitter_seed("evt-0002", 42));
  EXPECT_NE(jitter_seed("evt-0001", 42), jitter_seed("evt-0001", 43));
  std::set<std::uint64_t> seeds;
  for (int i = 0; i < k_samples; ++i) seeds.insert(seed_of(i));
  EXPECT_EQ(seeds.size(), static_cast<std::size_t>(k_samples));
}

TEST(retry_schedule, nonsense_policies_throw_naming_the_field) {
  const auto message = [](retry_policy p) { return invalid_argument_message([&] { retry_schedule{std::move(p)}; }); };
  EXPECT_THAT(message(exponential(0ms, 1s)), HasSubstr("retry_policy.initial is 0ms"));
  EXPECT_THAT(message(decorrelated(-5ms, 1s)), HasSubstr("retry_policy.initial is -5ms"));
  EXPECT_THAT(message(exponential(1s, 0ms)), HasSubstr("retry_policy.max is 0ms"));
  EXPECT_THAT(message(policy(schedule_kind::fixed, 1min, 30s)),
              HasSubstr("retry_policy.initial 1m is longer than retry_policy.max 30s"));
  EXPECT_THAT(message(listed({})), HasSubstr("retry_policy.delays is empty"));
  EXPECT_THAT(message(listed({1s, -1s})), HasSubstr("retry_policy.delays[1] is negative"));
  retry_policy negative_attempts;
  negative_attempts.max_attempts = -1;
  EXPECT_THAT(message(negative_attempts), HasSubstr("retry_policy.max_attempts is -1"));
  retry_policy negative_elapsed;
  negative_elapsed.max_elapsed = -1ms;
  EXPECT_THAT(message(negative_elapsed), HasSubstr("retry_policy.max_elapsed is negative"));

  const retry_schedule s(exponential(1s, 2s));
  EXPECT_THAT(invalid_argument_message([&] { (void)s.next_delay(0, 0ms, 1); }), HasSubstr("failures is 0"));
  EXPECT_THAT(invalid_argument_message([&] { (void)s.worst_case_total(0); }), HasSubstr("attempts is 0"));
  EXPECT_NO_THROW(retry_schedule(listed({0ms}))) << "an immediate retry is allowed in a list";
}

TEST(retry_schedule, worst_case_total_sums_the_caps) {
  EXPECT_EQ(retry_schedule(exponential(200ms, 30s)).worst_case_total(1), 0ms);
  EXPECT_EQ(retry_schedule(exponential(200ms, 30s)).worst_case_total(5), 3s);    // 200 + 400 + 800 + 1600
  EXPECT_EQ(retry_schedule(exponential(200ms, 30s)).worst_case_total(10), 81s);  // ... + 25.6s + 30s
  EXPECT_EQ(retry_schedule(exponential(200ms, 30s)).worst_case_total(1000), 81s + 990 * 30s);
  EXPECT_EQ(retry_schedule(decorrelated(200ms, 30s)).worst_case_total(5), 4 * 30s);
  EXPECT_EQ(retry_schedule(fixed(2s)).worst_case_total(4), 6s);
  EXPECT_EQ(retry_schedule(listed({1s, 2s, 3s})).worst_case_total(3), 3s);
  EXPECT_EQ(retry_schedule(listed({1s, 2s, 3s})).worst_case_total(50), 6s);

  auto capped = exponential(200ms, 30s);
  capped.max_attempts = 3;
  EXPECT_EQ(retry_schedule(capped).worst_case_total(10), 600ms) << "the policy's own max_attempts";
  capped.max_elapsed = 500ms;
  EXPECT_EQ(retry_schedule(capped).worst_case_total(10), 500ms) << "delays never pass max_elapsed";

  // The bound holds for what the schedule actually produces.
  for (const auto& p : {exponential(50ms, 2s), decorrelated(50ms, 2s)}) {
    const retry_schedule s([&] {
      auto q = p;
      q.max_attempts = 12;
      return q;
    }());
    for (int i = 0; i < 10'000; ++i) {
      milliseconds total{0};
      for (const auto d : run_until_give_up(s, seed_of(i))) total += d;
      ASSERT_LE(total, s.worst_case_total(12));
    }
  }
}

config::retry_config retry_section(std::string_view yaml) {
  const std::string text = "consumer: {group_id: g, topics: [t]}\nretry: " + std::string(yaml) + "\n";
  return config::parse_consumer_config(text, "retry.yaml").retry;
}

TEST(retry_schedule, policy_from_config_for_each_schedule_name) {
  auto p = policy_from_config(retry_section("{schedule: fixed, initial: 2s, max: 5s, attempts: 4}"));
  EXPECT_EQ(p.kind, schedule_kind::fixed);
  EXPECT_EQ(p.initial, 2s);
  EXPECT_EQ(p.max, 5s);
  EXPECT_EQ(p.max_attempts, 4);
  EXPECT_EQ(p.max_elapsed, 0ms);

  p = policy_from_config(retry_section("{schedule: exponential, initial: 100ms, max: 10s, max_elapsed: 1m}"));
  EXPECT_EQ(p.kind, schedule_kind::exponential);
  EXPECT_EQ(p.initial, 100ms);
  EXPECT_EQ(p.max, 10s);
  EXPECT_EQ(p.max_attempts, 5) << "the config default";
  EXPECT_EQ(p.max_elapsed, 1min);

  p = policy_from_config(retry_section("{schedule: decorrelated, initial: 300ms, max: 20s, attempts: 7}"));
  EXPECT_EQ(p.kind, schedule_kind::decorrelated);
  EXPECT_EQ(p.initial, 300ms);
  EXPECT_EQ(p.max, 20s);
  EXPECT_EQ(p.max_attempts, 7);

  p = policy_from_config(retry_section("{schedule: list, delays: [1s, 10s, 1m], attempts: 10}"));
  EXPECT_EQ(p.kind, schedule_kind::list);
  EXPECT_THAT(p.delays, ElementsAre(1s, 10s, 1min));
  EXPECT_EQ(p.max_attempts, 10);
  EXPECT_EQ(run_until_give_up(retry_schedule(p), 1).size(), 3U);

  p = policy_from_config(retry_section("{schedule: wechatpay, attempts: 16}"));
  EXPECT_EQ(p.kind, schedule_kind::list);
  EXPECT_EQ(p.delays, wechatpay_policy().delays);
  EXPECT_EQ(p.max_attempts, 16);
  EXPECT_EQ(run_until_give_up(retry_schedule(p), 1).size(), 15U);

  p = policy_from_config(retry_section("{schedule: wechatpay}"));
  EXPECT_EQ(run_until_give_up(retry_schedule(p), 1), std::vector<milliseconds>({15s, 15s, 30s, 3min}))
      << "attempts: 5 in process uses the first four delays";

  p = policy_from_config(config::parse_consumer_config("consumer: {group_id: g, topics: [t]}\n", "min.yaml").retry);
  EXPECT_EQ(p.kind, schedule_kind::exponential);
  EXPECT_EQ(p.initial, 200ms);
  EXPECT_EQ(p.max, 30s);
  EXPECT_NO_THROW(retry_schedule{p});
}

}  // namespace
}  // namespace outbox::consumer
