#pragma once

#include "outbox/consumer/outcome.hpp"
#include "outbox/consumer/record.hpp"
#include "outbox/consumer/retry_schedule.hpp"
#include "outbox/metrics/registry.hpp"
#include "outbox/dedupe/key_holds.hpp"
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
/// transaction and commits it only when the outcome is done (the exactly-once-effect path). A statement that
/// is allowed to fail belongs in a `pqxx::subtransaction`: a handler that catches an SQL error and returns done
/// leaves the transaction aborted, and the SDK retries the record instead of losing it.
using transactional_handler = std::function<outcome(const record&, pqxx::work& tx)>;

/// The key a record is deduplicated on: the dedupe store's key and the inbox row's `event_id`. Empty, or not valid
/// as an event id (record_format::event_id_problem), dead-letters the record (`missing_event_id`, `bad_event_id`);
/// an exception it throws counts as an empty key.
using dedupe_key_function = std::function<std::string(const record&)>;

/// A dedupe key read from header `name` (e.g. the provider's `transaction_id`); empty when the record lacks it.
dedupe_key_function dedupe_key_from_header(std::string name);

/// What the SDK decided about a record it gave up on, as a dead-letter hook sees it.
struct dead_letter_info {
  std::string error_class;    ///< the dead letter's `dlq_error_class` (fatal, retry_exhausted, missing_event_id, ...)
  std::string reason;         ///< the last failure, as in `dlq_error_message`
  std::int64_t attempts = 0;  ///< handler attempts over all stages
  std::string dlq_topic;      ///< where the dead letter went
};

/// Runs inside the inbox transaction that records the dead letter in `outbox_dead_letters`, after Kafka took the
/// dead letter and before the offset may move: what it writes commits together with that row (e.g.
/// `UPDATE notifications SET status = 'failed'`). If it throws, nothing of it or of the row commits and the step
/// is tried again with a capped backoff, the partition waiting; a crash before the commit runs the record again,
/// so the hook may run again for the same event and should write idempotently.
using dead_letter_hook = std::function<void(const record&, const dead_letter_info&, pqxx::work& tx)>;

/// The PostgreSQL inbox of the transactional path: the application's own database.
struct inbox_options {
  std::string dsn;                     ///< libpq string or URI of the database the handler writes to
  std::string table = "outbox_inbox";  ///< may be schema-qualified; held keys go to `<table>_parked`
  std::chrono::milliseconds retention = std::chrono::hours(24 * 7);
  /// Cleanup never deletes inbox rows (or recorded dead letters) younger than this, whatever `retention` says:
  /// `outboxctl reconcile` reads a whole day of them the day after. The default is `dedupe.keep_at_least`'s.
  std::chrono::milliseconds keep_at_least = std::chrono::hours(72);
  /// Where dead letters are recorded; empty: `outbox_dead_letters` in the inbox table's schema.
  std::string dead_letter_table;
  /// Create the inbox, dead-letter and held-key tables at start when missing; false for a role that may not
  /// create tables: they must exist (dedupe/schema.sql), and start-up fails naming the missing one.
  bool create_table = true;
  /// Records whose effects share one transaction (a savepoint each), committed together when this many are in
  /// it, `batch_time` after the first, when no record is waiting to be read, or before anything else (a record
  /// that has to wait, a dead letter, a rebalance, stop). Offsets move only after that commit; a commit that
  /// fails runs every record of the batch again. 1: a transaction per record. Needs `workers` 1.
  std::size_t batch = 1;
  std::chrono::milliseconds batch_time{10};
};

/// 5 in-process attempts, exponential backoff with full jitter from 200ms, at most 30s apart.
retry_policy default_retry_policy();

/// What start-up does when Kafka could redeliver records older than the dedupe retention.
enum class retention_check {
  refuse,  ///< throw outbox_error("config") naming the numbers
  warn,    ///< log them and start
  off,     ///< do not look (brokers that refuse DescribeConfigs, tests on the mock cluster)
};

/// Everything a consumer needs; build it by hand or with from_config().
struct consumer_options {
  std::string brokers;
  std::string group_id;                                         ///< letters, digits, `.`, `_`, `-`
  std::vector<std::string> topics;                              ///< `^regex` subscribes by pattern
  std::vector<std::pair<std::string, std::string>> properties;  ///< librdkafka properties, passed unchanged
  std::unique_ptr<dedupe::store> dedupe;  ///< optional: skip records whose event_id is already done
  std::optional<inbox_options> inbox;     ///< required by (and only used with) a transactional_handler
  /// Where per-key holds live; when null, the SDK uses the store's (from_config sets it) or, without one, memory.
  std::unique_ptr<dedupe::key_holds> holds;
  /// What records are deduplicated on; empty: the `event_id` header. Set it when one effect can arrive as several
  /// events, e.g. a payment callback delivered twice over HTTP and written as two outbox rows: key on the
  /// provider's transaction id and the second one is a duplicate. Dead letters are still recorded by event id.
  dedupe_key_function dedupe_key;
  /// How an exception a handler throws ends: asked first, nullopt leaves it to default_classification (JSON
  /// shape errors and SQLSTATE classes 22/23/42 fatal; lost connections, commits in doubt, 40001, 40P01, 55P03
  /// infrastructure; the rest retry). E.g. a provider SDK's "invalid signature" exception -> outcome::fatal.
  classifier classify;
  /// With the inbox (a transactional_handler): runs in the transaction that records each dead letter.
  dead_letter_hook on_dead_letter;

  /// In-process, blocking attempts: the delays between them and, in `max_attempts`, how many there are
  /// (0: retry in process until the record is done or fatal, and never move it to a retry topic).
  retry_policy retry = default_retry_policy();
  /// Non-blocking tiers after the in-process attempts, one attempt each: a record that still fails is
  /// produced to `<topic>.<group>.retry.<delay>` and tried again when due; after the last entry it is
  /// dead-lettered. A delay may repeat: both entries share the tier topic and each is one attempt.
  std::vector<std::chrono::milliseconds> retry_topics;
  /// While a key has a record parked in a retry tier, later records of that key are parked behind it.
  bool per_key_ordering = true;
  /// Handlers running at once (1 to 256). 1: every record runs on the thread that called run(), a partition
  /// strictly in order. More: records go to `workers` lanes by a hash of their key (keyless records by their
  /// partition), each lane a thread running its records in order, so the records of one key stay in order while
  /// different keys run side by side (a record waiting for an in-process retry holds its lane only). Offsets
  /// still commit only below the oldest unfinished record of each partition; a partition with 1000 records in
  /// flight is paused until half of them are finished. The handler, `dedupe_key` and `classify` must then be
  /// safe to call from several threads at once; with the inbox each worker has its own database connection.
  int workers = 1;
  /// Dead-letter topic; `{topic}` is the original topic, `{group}` the group. Fatal and exhausted records go there.
  std::string dlq_topic = "{topic}.{group}.dlq";
  double dlq_max_ratio = 0.5;  ///< the breaker halts consumption when more than this share of ...
  int dlq_window = 200;        ///< ... the last this many records would be dead-lettered (replays not counted)
  /// A halted consumer runs its held record again this often; success closes the breaker and resumes.
  std::chrono::milliseconds probe_interval = std::chrono::minutes(5);

  /// Create the tier, replay and dead-letter topics at start (or verify them when they exist); when false
  /// they must exist already.
  bool prepare_topics = true;
  int topic_replication_factor = -1;  ///< of created topics; -1 = the cluster's default
  std::chrono::milliseconds retry_topic_retention = std::chrono::hours(24 * 7);  ///< at least 10x each delay
  std::chrono::milliseconds dlq_retention = std::chrono::hours(24 * 30);
  /// How long after dead-lettering a record may be replayed; the dedupe retention must cover it.
  std::chrono::milliseconds replay_window = std::chrono::hours(24);
  retention_check check_retention = retention_check::refuse;
  /// How often `^regex` topics are matched against the cluster's topics again.
  std::chrono::milliseconds pattern_refresh = std::chrono::seconds(30);

  std::chrono::milliseconds commit_interval = std::chrono::seconds(1);   ///< how often finished offsets go out
  std::chrono::milliseconds stop_timeout = std::chrono::seconds(30);     ///< bound on commit and close after stop()
  std::chrono::milliseconds cleanup_interval = std::chrono::minutes(1);  ///< dedupe retention cleanup cadence
  std::size_t cleanup_batch = 1000;  ///< rows/entries per cleanup statement; a run deletes until caught up
  /// When set, outbox_consumer_* metrics (SPEC §5) are registered here; it must outlive the consumer.
  metrics::registry* metrics = nullptr;
};

/// The name of retry tier `delay` of `group` for `topic`: `<topic>.<group>.retry.<delay>`, e.g.
/// `payments.ledger.retry.10s` (see record_format::retry_topic_name).
std::string retry_topic_name(const std::string& topic, const std::string& group, std::chrono::milliseconds delay);

/// Builds options from a loaded consumer config: Kafka settings, retry backoff, topics to create, and the
/// dedupe store with its lease and its key holds (`memory`, `sqlite`, `redis` as `dedupe`; `postgres` as `inbox`).
consumer_options from_config(const config::consumer_config& c);

/// How many records ended which way since start.
struct consumer_stats {
  std::uint64_t processed = 0;          ///< handler said done
  std::uint64_t duplicate = 0;          ///< skipped: the dedupe store or inbox already had the event id
  std::uint64_t retried = 0;            ///< attempts that ended in retry
  std::uint64_t fatal = 0;              ///< records dead-lettered at once (fatal, bad or missing event id)
  std::uint64_t dead_lettered = 0;      ///< records produced to the dead-letter topic (fatal or retries exhausted)
  std::uint64_t parked = 0;             ///< records produced to a retry tier (after failing, or held behind their key)
  std::uint64_t held = 0;               ///< of those, held behind an earlier record of their key
  std::uint64_t commits = 0;            ///< offset commits the broker confirmed
  std::uint64_t dependency_errors = 0;  ///< tries a dependency failed (no attempt of a record is spent on them)
  std::uint64_t foreign_copies = 0;     ///< another group's retry copies skipped
};

/// A Kafka consumer-group member that runs a handler on every record and commits offsets only after the
/// outcome is durable. The thread that calls run() polls Kafka and commits; handlers run on it too, or on
/// `workers` threads of their own.
class consumer {
 public:
  /// Checks the options and creates the Kafka client (throws outbox_error, category "config", on bad ones).
  consumer(consumer_options options, handler h);
  /// The exactly-once-effect variant; `options.inbox` is required.
  consumer(consumer_options options, transactional_handler h);
  ~consumer();
  consumer(const consumer&) = delete;
  consumer& operator=(const consumer&) = delete;

  /// Prepares the topics (creates or verifies tiers, replay and dead-letter topics; checks the dedupe retention
  /// against Kafka's), subscribes and processes records until stop(); then commits finished offsets and leaves
  /// the group, within `stop_timeout`. Throws outbox_error: "config" when a check refuses, "kafka" on a fatal
  /// Kafka error. While Kafka does not answer at start it keeps trying until stop().
  void run();
  /// Asks run() to return; async-signal-safe and callable from any thread.
  void stop() noexcept;
  /// Counters so far; callable from any thread.
  [[nodiscard]] consumer_stats stats() const noexcept;
  /// True while this member holds at least one partition; safe from any thread.
  [[nodiscard]] bool assigned() const noexcept;
  /// True while consumption is halted (the DLQ breaker tripped, or Kafka refuses a dead letter); it resumes on
  /// its own once a probe of the held record succeeds. Safe from any thread.
  [[nodiscard]] bool halted() const noexcept;
  /// Why it is halted (empty when it is not); safe from any thread.
  [[nodiscard]] std::string halt_reason() const;

 private:
  class impl;
  std::unique_ptr<impl> m_impl;
};

}  // namespace outbox::consumer
