#pragma once

#include "outbox/relay/router.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace outbox::relay {

/// One outbox table the relay tails.
struct table_settings {
  table_route route;
  bool delete_after_publish = false;
};

/// Everything the relay runs with, resolved from the configuration file; immutable once built.
struct settings {
  std::string dsn;  ///< libpq connection string without `replication=`
  std::string slot = "outbox_relay";
  std::string publication = "outbox_pub";
  std::vector<table_settings> tables;
  std::optional<std::string> message_prefix;  ///< the logical-message source, when configured
  std::chrono::milliseconds heartbeat_interval{10'000};

  std::string brokers = "127.0.0.1:9092";
  std::string topic_template = "{aggregate_type}";
  std::vector<std::pair<std::string, std::string>> kafka_properties;  ///< passed to librdkafka unchanged

  std::size_t max_inflight_messages = 100'000;
  std::uint64_t max_inflight_bytes = 64ULL << 20U;
  std::chrono::milliseconds status_interval{1'000};
  std::chrono::milliseconds shutdown_timeout{30'000};
  std::chrono::milliseconds stall_timeout{120'000};

  /// The prefix of heartbeat messages: `<prefix>-heartbeat`.
  [[nodiscard]] std::string heartbeat_prefix() const { return message_prefix.value_or("outbox") + "-heartbeat"; }
};

}  // namespace outbox::relay
