#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
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
/// A claim belongs to the caller's `token` (unique per worker and record, e.g. a random prefix and a
/// counter) and lasts `lease()`; the caller renews it while its handler runs. Only the token's owner
/// completes or releases it, so a worker whose lease ran out cannot undo the claim of the worker that took
/// over, and a call repeated after a lost reply finds the caller's own claim instead of a stranger's.
///
/// Event ids are checked (record_format::event_id_problem): a bad one throws a fatal `outbox_error`.
/// Other errors are thrown as `outbox_error` with category "dedupe" and a retry class (retryable when the
/// backend is unreachable or busy).
class store {
 public:
  virtual ~store() = default;
  /// Claims the event for `token`: `claimed` when it is new, its lease ran out, or `token` already holds it
  /// (the lease starts again); `duplicate` when it is done; `in_progress` when another token holds a lease.
  virtual claim_result claim(std::string_view group, std::string_view event_id, std::string_view token) = 0;
  /// Extends the caller's lease by lease() from now; false when the claim is not the caller's any more.
  virtual bool renew(std::string_view group, std::string_view event_id, std::string_view token) = 0;
  /// Marks the event done (kept for the retention) when `token` holds the claim or nobody does; false, and
  /// nothing written, when another token holds it now.
  virtual bool complete(std::string_view group, std::string_view event_id, std::string_view token) = 0;
  /// Gives the caller's claim up so the event can be claimed again at once; a done mark and another
  /// token's claim are left alone (false).
  virtual bool release(std::string_view group, std::string_view event_id, std::string_view token) = 0;
  /// Deletes entries older than the retention, at most `limit` per call; returns how many.
  virtual std::size_t cleanup(std::size_t limit) = 0;
  /// How long a done mark is kept.
  [[nodiscard]] virtual std::chrono::milliseconds retention() const noexcept = 0;
  /// How long a claim lasts unless renewed.
  [[nodiscard]] virtual std::chrono::milliseconds lease() const noexcept = 0;
  /// Entries dropped before their time to stay within bounds (the memory store); 0 for the others.
  [[nodiscard]] virtual std::uint64_t evicted() const noexcept { return 0; }
};

/// The default lease: librdkafka's default `max.poll.interval.ms`, so a handler that lost its partition
/// through a slow poll still holds its claim while the partition moves.
inline constexpr std::chrono::milliseconds k_default_lease{300'000};

/// Bounds and expiry of the in-memory store.
struct memory_options {
  std::size_t max_entries = 1'000'000;
  std::size_t max_bytes = 256u << 20;  ///< approximate: key bytes plus a fixed per-entry overhead
  std::chrono::milliseconds ttl = std::chrono::hours(24 * 7);
  /// An in-progress claim not renewed for this long may be claimed by another token (its worker is
  /// presumed dead).
  std::chrono::milliseconds lease = k_default_lease;
};

/// A process-local store: bounded by entries and bytes, TTL, LRU eviction. Forgets everything on exit.
std::unique_ptr<store> make_memory_store(memory_options options);

/// Where and how long the SQLite store keeps its entries.
struct sqlite_options {
  std::string path;                                   ///< database file, created when missing
  std::chrono::milliseconds retention;                ///< how long a done mark is kept
  std::chrono::milliseconds lease = k_default_lease;  ///< an older, unrenewed in-progress claim may be taken over
};

/// An embedded durable store (SQLite, WAL mode) in one file; survives restarts.
std::unique_ptr<store> make_sqlite_store(sqlite_options options);

/// Where and how long the Redis store keeps its entries.
struct redis_options {
  std::string url;                                    ///< redis://[user:password@]host[:port][/db]
  std::chrono::milliseconds retention;                ///< how long a done mark is kept (key TTL)
  std::chrono::milliseconds lease = k_default_lease;  ///< TTL of an in-progress claim, renewed by its owner
  std::string key_prefix = "outbox:dedupe:";
};

/// A store shared by several instances: a claim is `SET NX PX <lease>` holding the caller's token; complete,
/// renew and release are scripts that act only while the key holds that token.
std::unique_ptr<store> make_redis_store(redis_options options);

}  // namespace outbox::dedupe
