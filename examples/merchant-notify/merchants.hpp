#pragma once
// The merchants a notification goes to and the `notify:` config section they are declared in.

#include "outbox/config/schema.hpp"

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace outbox::notify {

/// One merchant: where its notifications go and how they are signed and accepted.
struct merchant {
  std::string id;
  std::string url;
  std::string key;                                  ///< the HMAC-SHA256 key, shared with the merchant
  std::string expected_body;                        ///< the body of a 2xx that means "accepted"
  std::vector<std::chrono::milliseconds> schedule;  ///< its own delays after each failure; empty: retry.topics
};

/// The `notify:` section, as loaded.
struct notify_settings {
  std::string dsn;    ///< the status table's database, also the inbox's (dedupe.dsn)
  std::string table;  ///< the status table
  std::chrono::milliseconds connect_timeout{};
  std::chrono::milliseconds request_timeout{};
  int breaker_failures = 0;  ///< consecutive failures that open a merchant's circuit
  std::chrono::milliseconds breaker_cooldown{};
  int max_in_flight = 0;  ///< requests to one merchant at a time
  std::map<std::string, merchant> merchants;
};

/// The declaration of the `notify:` section (passed to config::load_consumer_config).
const std::vector<config::key_spec>& notify_section();

/// Reads the loaded `notify:` section.
notify_settings settings_from(const config::values& tree);

}  // namespace outbox::notify
