#include "outbox/test/environment.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <stdexcept>
#include <thread>

namespace outbox::test {
namespace {

std::string env_or_fail(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    throw std::runtime_error(std::string(name) +
                             " is not set: this test needs the local services. Start them with "
                             "`scripts/services.sh start` and `source .run/services.env`, or run scripts/test.sh");
  }
  return v;
}

}  // namespace

std::uint64_t run_seed() {
  static const std::uint64_t seed = []() -> std::uint64_t {
    const char* fixed = std::getenv("OUTBOX_TEST_SEED");
    if (fixed != nullptr && *fixed != '\0') return std::strtoull(fixed, nullptr, 10);
    return static_cast<std::uint64_t>(std::random_device{}()) << 16U ^
           static_cast<std::uint64_t>(std::chrono::system_clock::now().time_since_epoch().count());
  }();
  return seed;
}

const services& require_services() {
  static const services s = [] {
    services out;
    out.pg_dsn = env_or_fail("OUTBOX_PG_DSN");
    out.kafka_brokers = env_or_fail("OUTBOX_KAFKA_BROKERS");
    const char* redis = std::getenv("OUTBOX_REDIS_URL");
    out.redis_url = redis != nullptr ? redis : "";
    return out;
  }();
  return s;
}

std::string unique_name(std::string_view prefix) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string test_name =
      info != nullptr ? std::string(info->test_suite_name()) + "." + info->name() : std::string("no_test");
  // One generator per test, seeded by its name: the n-th name a test asks for is the same every run.
  static std::map<std::string, std::mt19937_64> generators;
  auto [it, fresh] = generators.try_emplace(test_name);
  if (fresh) it->second.seed(std::hash<std::string>{}(test_name) ^ run_seed());
  char suffix[9];
  std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(it->second() & 0xffffffffU));
  return std::string(prefix) + "_" + suffix;
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout, std::chrono::milliseconds poll) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);  // poll interval, bounded by the deadline above
  }
}

}  // namespace outbox::test
