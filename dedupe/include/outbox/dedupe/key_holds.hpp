#pragma once

#include "outbox/dedupe/store.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace outbox::dedupe {

/// A record of a key that waits in a retry tier, named by where it first arrived.
struct held_record {
  std::int32_t partition = 0;
  std::int64_t offset = 0;

  friend bool operator==(const held_record& a, const held_record& b) = default;
};

/// The records of each key that wait in retry tiers, in the order they were parked, shared by every
/// instance of a consumer group: what per-key ordering needs to survive rebalances and restarts. A key is
/// held while it has an entry; its oldest entry (the head) is the only record of the key allowed to run.
///
/// An entry not removed within the `lapse` given at creation (its copy was lost, e.g. the tier topic's
/// retention passed) is dropped by head(), so a key is never held forever. Thread-safe; errors are thrown as
/// `outbox_error` (category "dedupe", retryable when the backend is unreachable).
class key_holds {
 public:
  virtual ~key_holds() = default;
  /// Appends `r` to the key's entries; adding one that is there already keeps its place.
  virtual void add(std::string_view group, std::string_view topic, std::string_view key, held_record r) = 0;
  /// The key's oldest entry, or nullopt when the key is not held.
  virtual std::optional<held_record> head(std::string_view group, std::string_view topic, std::string_view key) = 0;
  /// Removes `r` from the key's entries (nothing when it is not there).
  virtual void remove(std::string_view group, std::string_view topic, std::string_view key, held_record r) = 0;
};

/// Holds in this process only: lost on restart and not shared (for the memory store and for no store).
std::unique_ptr<key_holds> make_memory_key_holds(std::chrono::milliseconds lapse);

/// Holds in the SQLite store's file (table `outbox_parked`), kept across restarts of one instance.
std::unique_ptr<key_holds> make_sqlite_key_holds(const sqlite_options& options, std::chrono::milliseconds lapse);

/// Holds in Redis next to the store's keys (`<key_prefix>%held:…`), shared by every instance.
std::unique_ptr<key_holds> make_redis_key_holds(const redis_options& options, std::chrono::milliseconds lapse);

/// Holds in the PostgreSQL inbox's database (table `<inbox table>_parked`, created when missing), shared by
/// every instance; its own connection, outside the handler's transaction.
/// `create_table` false: `<inbox_table>_parked` must exist already (dedupe/schema.sql).
std::unique_ptr<key_holds> make_postgres_key_holds(const std::string& dsn, const std::string& inbox_table,
                                                   std::chrono::milliseconds lapse, bool create_table = true);

}  // namespace outbox::dedupe
