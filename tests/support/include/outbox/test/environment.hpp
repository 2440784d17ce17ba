#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace outbox::test {

/// Connection settings of the local services, read from the variables scripts/services.sh prints.
struct services {
  std::string pg_dsn;         ///< OUTBOX_PG_DSN: superuser on the test database
  std::string kafka_brokers;  ///< OUTBOX_KAFKA_BROKERS
  std::string redis_url;      ///< OUTBOX_REDIS_URL
};

/// The services, or a test failure naming the missing variable and how to start them.
const services& require_services();

/// This run's seed: OUTBOX_TEST_SEED when set (to reproduce a run), else random; printed at start.
std::uint64_t run_seed();

/// A name unique to the running test: `<prefix>_<8 hex>`, from a generator seeded by the test's
/// full name and the run seed, so tests never share objects, a rerun never meets the topics of
/// an earlier one, and OUTBOX_TEST_SEED reproduces a run's names. Lower case, a valid SQL
/// identifier and Kafka topic name.
std::string unique_name(std::string_view prefix);

/// Polls `done` until it returns true or `timeout` passes; returns the last result.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout,
                std::chrono::milliseconds poll = std::chrono::milliseconds(50));

}  // namespace outbox::test
