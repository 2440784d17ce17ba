#pragma once

#include "outbox/consumer/outcome.hpp"
#include "outbox/consumer/record.hpp"
#include "outbox/metrics/registry.hpp"
#include "outbox/dedupe/store.hpp"

#include <pqxx/transaction>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace outbox::config {
struct consumer_config;
}  // namespace outbox::config

namespace outbox::consumer {

/// A handler: applies one record's effect and says how it went (or throws; see outcome_from_exception).
using handler = std::function<outcome(const record&)>;

/// A handler that applies its effect inside `tx`; the SDK has already inserted the inbox row in the same
/// transaction and commits it only when the outcome is done (the exactly-once-effect path).
using transactional_handler = std::function<outcome(const record&, pqxx::work& tx)>;

/// The PostgreSQL inbox of the transactional path: the application's own database.
struct inbox_options {
  std::string dsn;                     ///< libpq string or URI of the database the handler writes to
  std::string table = "outbox_inbox";  ///< may be schema-qualified
  std::chrono::milliseconds retention = std::chrono::hours(24 * 7);
};

/// Everything a consumer needs; build it by hand or with from_config().
struct consumer_options {
  std::string brokers;
  std::string group_id;
  std::vector<std::string> topics;                              ///< `^regex` subscribes by pattern
  std::vector<std::pair<std::string, std::string>> properties;  ///< librdkafka properties, passed unchanged
  std::unique_ptr<dedupe::store> dedupe;  ///< optional: skip records whose event_id is already done
  std::optional<inbox_options> inbox;     ///< required by (and only used with) a transactional_handler

  std::chrono::milliseconds retry_initial = std::chrono::milliseconds(200);  ///< first in-process backoff
  std::chrono::milliseconds retry_max = std::chrono::seconds(30);            ///< longest in-process backoff
  std::chrono::milliseconds commit_interval = std::chrono::seconds(1);       ///< how often finished offsets go out
  std::chrono::milliseconds stop_timeout = std::chrono::seconds(30);         ///< bound on commit and close after stop()
  std::chrono::milliseconds cleanup_interval = std::chrono::minutes(1);      ///< dedupe retention cleanup cadence
  std::size_t cleanup_batch = 1000;                                          ///< rows/entries per cleanup call
  /// When set, outbox_consumer_* metrics (SPEC §5) are registered here; it must outlive the consumer.
  metrics::registry* metrics = nullptr;
};

/// Builds options from a loaded consumer config: Kafka settings, retry backoff, and the dedupe store
/// (`memory`, `sqlite`, `redis` as `dedupe`; `postgres` as `inbox`).
consumer_options from_config(const config::consumer_config& c);

/// How many records ended which way since start (the future `outbox_consumer_messages_total`).
struct consumer_stats {
  std::uint64_t processed = 0;  ///< handler said done
  std::uint64_t duplicate = 0;  ///< skipped: the dedupe store or inbox already had the event id
  std::uint64_t retried = 0;    ///< attempts that ended in retry
  std::uint64_t fatal = 0;      ///< records given up on (would be dead-lettered): logged and committed past
  std::uint64_t commits = 0;    ///< offset commits the broker confirmed
};

/// A Kafka consumer-group member that runs a handler on every record and commits offsets only after the
/// outcome is durable. One processing thread: the one that calls run().
class consumer {
 public:
  /// Creates the Kafka client (throws outbox_error, category "config", on a bad property).
  consumer(consumer_options options, handler h);
  /// The exactly-once-effect variant; `options.inbox` is required.
  consumer(consumer_options options, transactional_handler h);
  ~consumer();
  consumer(const consumer&) = delete;
  consumer& operator=(const consumer&) = delete;

  /// Subscribes and processes records until stop(); then commits finished offsets and leaves the group,
  /// within `stop_timeout`. Throws outbox_error on a fatal Kafka error.
  void run();
  /// Asks run() to return; async-signal-safe and callable from any thread.
  void stop() noexcept;
  /// Counters so far; callable from any thread.
  [[nodiscard]] consumer_stats stats() const noexcept;
  /// True while this member holds at least one partition; safe from any thread.
  [[nodiscard]] bool assigned() const noexcept;

 private:
  class impl;
  std::unique_ptr<impl> m_impl;
};

}  // namespace outbox::consumer
