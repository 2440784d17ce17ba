#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace outbox::dedupe {

/// What claiming an event id found.
enum class claim_result { claimed, duplicate, in_progress };

/// "claimed", "duplicate" or "in_progress".
std::string_view to_string(claim_result r) noexcept;

/// A dedupe store keyed by (consumer group, event id). Thread-safe.
///
/// Errors are thrown as `outbox_error` with category "dedupe" and a retry class
/// (retryable when the backend is unreachable or busy).
class store {
 public:
  virtual ~store() = default;
  /// Claims the event for processing: `claimed` (go ahead), `duplicate` (already done: skip),
  /// `in_progress` (another worker holds an unexpired lease: try later).
  virtual claim_result claim(std::string_view group, std::string_view event_id) = 0;
  /// Marks a claimed event done (kept for the retention).
  virtual void complete(std::string_view group, std::string_view event_id) = 0;
  /// Gives a claim up (the handler failed and will retry): the event can be claimed again at once.
  virtual void release(std::string_view group, std::string_view event_id) = 0;
  /// Deletes entries older than the retention, at most `limit` per call; returns how many.
  virtual std::size_t cleanup(std::size_t limit) = 0;
};

/// Bounds and expiry of the in-memory store.
struct memory_options {
  std::size_t max_entries = 1'000'000;
  std::size_t max_bytes = 256u << 20;  ///< approximate: key bytes plus a fixed per-entry overhead
  std::chrono::milliseconds ttl = std::chrono::hours(24 * 7);
  /// An in-progress claim older than this may be claimed again (the worker is presumed dead).
  std::chrono::milliseconds lease = std::chrono::seconds(60);
};

/// A process-local store: bounded by entries and bytes, TTL, LRU eviction. Forgets everything on exit.
std::unique_ptr<store> make_memory_store(memory_options options);

/// Where and how long the SQLite store keeps its entries.
struct sqlite_options {
  std::string path;                                            ///< database file, created when missing
  std::chrono::milliseconds retention;                         ///< how long a done mark is kept
  std::chrono::milliseconds lease = std::chrono::seconds(60);  ///< an older in-progress claim may be re-claimed
};

/// An embedded durable store (SQLite, WAL mode) in one file; survives restarts.
std::unique_ptr<store> make_sqlite_store(sqlite_options options);

/// Where and how long the Redis store keeps its entries.
struct redis_options {
  std::string url;                                             ///< redis://[user:password@]host[:port][/db]
  std::chrono::milliseconds retention;                         ///< how long a done mark is kept (key TTL)
  std::chrono::milliseconds lease = std::chrono::seconds(60);  ///< TTL of an in-progress claim
  std::string key_prefix = "outbox:dedupe:";
};

/// A store shared by several instances (Redis `SET NX` with a lease, then a done mark with the retention).
std::unique_ptr<store> make_redis_store(redis_options options);

}  // namespace outbox::dedupe
