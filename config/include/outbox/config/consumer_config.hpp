#pragma once

#include "outbox/config/relay_config.hpp"
#include "outbox/config/schema.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::config {

/// The `consumer:` section.
struct consumer_settings {
  std::string brokers;
  std::string group_id;
  std::vector<std::string> topics;
  std::map<std::string, std::string> properties;  ///< passed to librdkafka unchanged
  std::chrono::milliseconds pattern_refresh{};    ///< how often `^regex` subscriptions look for new topics
  int workers = 1;                                ///< handlers running at once (per-key lanes); 1: the polling thread
};

enum class dedupe_store { memory, postgres, sqlite, redis };
std::string_view to_string(dedupe_store s) noexcept;

/// What start-up does when Kafka can redeliver records older than `dedupe.retention`.
enum class retention_check { refuse, warn };
std::string_view to_string(retention_check c) noexcept;

/// The `dedupe:` section; only the field of the chosen store is set.
struct dedupe_config {
  dedupe_store store = dedupe_store::memory;
  std::string dsn;   ///< postgres
  std::string path;  ///< sqlite
  std::string url;   ///< redis
  std::chrono::milliseconds retention{};
  std::chrono::milliseconds keep_at_least{};     ///< postgres: the floor under retention's cleanup
  std::chrono::milliseconds lease{};             ///< a claim's lease, renewed while the handler runs
  std::chrono::milliseconds cleanup_interval{};  ///< how often expired entries are deleted
  int cleanup_batch = 0;                         ///< entries per delete statement
  retention_check check = retention_check::refuse;
  std::string key_header;  ///< deduplicate on this header instead of `event_id`; empty: `event_id`
};

/// The `inbox:` section (with `dedupe.store: postgres`).
struct inbox_config {
  bool create_table = true;  ///< false: the tables come from the service's migrations (dedupe/schema.sql)
  int batch_size = 1;        ///< records per inbox transaction (a savepoint each)
  std::chrono::milliseconds batch_time{10};  ///< a batch commits this long after its first record at the latest
};

enum class retry_schedule { fixed, exponential, decorrelated, list, wechatpay };
std::string_view to_string(retry_schedule s) noexcept;

enum class retry_ordering { per_key, none };
std::string_view to_string(retry_ordering o) noexcept;

/// The `retry:` section.
struct retry_config {
  retry_schedule schedule = retry_schedule::exponential;
  std::chrono::milliseconds initial{};
  std::chrono::milliseconds max{};
  int attempts = 0;
  std::vector<std::chrono::milliseconds> delays;  ///< schedule `list`
  std::vector<std::chrono::milliseconds>
      topics;  ///< non-blocking tiers `<topic>.<group>.retry.<delay>`, one attempt each
  retry_ordering ordering = retry_ordering::per_key;
  std::chrono::milliseconds max_elapsed{};  ///< in-process attempts stop this long after the first failure; 0 = no cap
  int topic_replication_factor = -1;        ///< of created tier, replay and dead-letter topics; -1 = the cluster's
  std::chrono::milliseconds topic_retention{};  ///< of created tier topics (at least 10 times the tier's delay)
};

/// The `dlq:` section.
struct dlq_config {
  std::string topic;  ///< `{topic}` is the original topic, `{group}` the consumer group
  double max_ratio = 0.5;
  int window = 0;
  std::chrono::milliseconds replay_window{};   ///< how long after dead-lettering a record may still be replayed
  std::chrono::milliseconds retention{};       ///< of a created dead-letter topic
  std::chrono::milliseconds probe_interval{};  ///< a halted consumer tries its held record again this often
};

/// The delays of the `wechatpay` preset: 15s 15s 30s 3m 10m 20m 30m 30m 30m 60m 3h 3h 3h 6h 6h (24 h 04 m).
const std::vector<std::chrono::milliseconds>& wechatpay_delays();

/// A consumer service's config file (SPEC §5), validated; `tree` also holds the app's own sections.
struct consumer_config {
  consumer_settings consumer;
  dedupe_config dedupe;
  inbox_config inbox;
  retry_config retry;
  dlq_config dlq;
  metrics_config metrics;
  log_config log;
  values tree;  ///< every key as loaded, e.g. `tree.get<std::string>("ledger.dsn")`
};

/// The declarations behind consumer_config, plus `extra_sections` declared by the embedding app.
schema consumer_schema(std::span<const key_spec> extra_sections = {});

/// Reads and validates a consumer config file; `extra_sections` are the app's own top-level sections.
consumer_config load_consumer_config(const std::string& path, std::span<const key_spec> extra_sections = {});

/// Validates config text; `file_name_for_messages` prefixes every error line.
consumer_config parse_consumer_config(std::string_view yaml_text, std::string_view file_name_for_messages,
                                      std::span<const key_spec> extra_sections = {});

/// The config, app sections included, as YAML with passwords and secrets replaced by `*****`.
std::string dump_redacted(const consumer_config& c);

}  // namespace outbox::config
