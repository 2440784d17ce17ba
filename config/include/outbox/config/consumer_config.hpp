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
};

enum class dedupe_store { memory, postgres, sqlite, redis };
std::string_view to_string(dedupe_store s) noexcept;

/// The `dedupe:` section; only the field of the chosen store is set.
struct dedupe_config {
  dedupe_store store = dedupe_store::memory;
  std::string dsn;   ///< postgres
  std::string path;  ///< sqlite
  std::string url;   ///< redis
  std::chrono::milliseconds retention{};
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
  std::vector<std::chrono::milliseconds> topics;  ///< non-blocking tiers `<topic>.retry.<delay>`
  retry_ordering ordering = retry_ordering::per_key;
  std::chrono::milliseconds max_elapsed{};  ///< in-process attempts stop this long after the first failure; 0 = no cap
};

/// The `dlq:` section.
struct dlq_config {
  std::string topic;  ///< `{topic}` is the original topic
  double max_ratio = 0.5;
  int window = 0;
  std::chrono::milliseconds replay_window{};  ///< how long after dead-lettering a record may still be replayed
};

/// A consumer service's config file (SPEC §5), validated; `tree` also holds the app's own sections.
struct consumer_config {
  consumer_settings consumer;
  dedupe_config dedupe;
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
