#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace pqxx {
class transaction_base;
}  // namespace pqxx

namespace outbox::dedupe {

/// A record the consumer gave up on, as `outbox_dead_letters` keeps it: one row per (group, event id), the latest
/// dead-lettering wins.
struct dead_letter_entry {
  std::string group;
  std::string event_id;
  std::string topic;  ///< where the record was first read (the original topic, not a tier)
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string error_class;    ///< the dead letter's `dlq_error_class`
  std::string error_message;  ///< cut to 1 KiB like the header
  bool replayed = false;      ///< it came back from a replay (`dlq_replay_count` > 0) and failed again
};

/// The PostgreSQL inbox: joins the handler's own transaction, so the inbox row and the business effect commit together.
class postgres_inbox {
 public:
  /// The inbox table (optionally schema-qualified) and how long its rows are kept.
  struct options {
    std::string table = "outbox_inbox";
    std::chrono::milliseconds retention;
    /// The floor of the cleanup: rows younger than this are kept whatever `retention` says (0: retention alone).
    std::chrono::milliseconds keep_at_least{0};
    /// The table of recorded dead letters; empty: `outbox_dead_letters` in the inbox table's schema.
    std::string dead_letter_table;
    /// Create the tables and indexes when missing; when false (a role that may not create tables) they must
    /// exist already, made by the service's migrations from `dedupe/schema.sql`.
    bool create_tables = true;
  };

  /// Creates the inbox and dead-letter tables if missing (own connection), with their indexes on time; with
  /// `create_tables` false only checks that they exist (throws a fatal outbox_error naming schema.sql when not).
  postgres_inbox(std::string dsn, options opts);
  ~postgres_inbox();
  postgres_inbox(postgres_inbox&&) noexcept;
  postgres_inbox& operator=(postgres_inbox&&) noexcept;
  postgres_inbox(const postgres_inbox&) = delete;
  postgres_inbox& operator=(const postgres_inbox&) = delete;

  /// Inserts (group, event_id) in `tx`; false when it already exists (already done: the caller skips the effect
  /// and commits nothing else). A bad event id (record_format::event_id_problem) throws a fatal outbox_error.
  /// A non-empty `before` (one SQL statement, e.g. a SAVEPOINT, that returns no rows) runs first in the same round
  /// trip: both go as one simple query, the ids as quoted literals.
  bool claim_in(pqxx::transaction_base& tx, std::string_view group, std::string_view event_id,
                std::string_view before = {});
  /// Whether `tx` still sees the row claim_in inserted: false, or an error, means the transaction was rolled back
  /// or aborted behind the caller's back (a handler that caught an SQL error), so committing would lose the event.
  /// `before` as for claim_in: an error in it (e.g. a RELEASE SAVEPOINT in an aborted transaction) throws.
  bool still_claimed_in(pqxx::transaction_base& tx, std::string_view group, std::string_view event_id,
                        std::string_view before = {});
  /// What claim_after_in found.
  struct claim_and_check {
    bool claimed = false;        ///< as claim_in's result
    bool previous_held = false;  ///< `tx` still sees the row claimed earlier for `previous`
  };
  /// claim_in of `event_id` and still_claimed_in of `previous` (claimed earlier in `tx`) in one statement, after
  /// `before` and in the same round trip: a batch checks the record before while it claims the next. The check
  /// sees `tx` as it was before this claim, so a `previous` equal to `event_id` is held and not claimed again.
  claim_and_check claim_after_in(pqxx::transaction_base& tx, std::string_view group, std::string_view event_id,
                                 std::string_view previous, std::string_view before = {});
  /// Records in `tx` that the record was dead-lettered (insert, or update the group's row for that event id).
  void record_dead_letter(pqxx::transaction_base& tx, const dead_letter_entry& e);
  /// Notes in `tx` (the inbox transaction of a replayed record that is being applied) when it was replayed.
  void note_replay_applied(pqxx::transaction_base& tx, std::string_view group, std::string_view event_id);
  /// Retention cleanup in bounded batches on its own connection, never of rows younger than keep_at_least; the
  /// inbox first, then the dead letters; returns rows deleted.
  std::size_t cleanup(std::size_t limit);
  /// The table name as given in the options.
  const std::string& table() const;
  /// The dead-letter table's name (derived when the options left it empty).
  const std::string& dead_letter_table() const;
  /// How long rows are kept.
  std::chrono::milliseconds retention() const;

 private:
  struct impl;
  std::unique_ptr<impl> m_impl;
};

}  // namespace outbox::dedupe
