#pragma once

#include "outbox/consumer/consumer.hpp"
#include "outbox/dedupe/postgres_inbox.hpp"
#include "outbox/dedupe/store.hpp"

#include <pqxx/connection>
#include <pqxx/transaction>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <variant>

namespace outbox::consumer::detail {

class consumer_metrics;

/// How one step of the attempt stage ended.
enum class attempt_kind {
  processed,  ///< the effect is applied and recorded
  duplicate,  ///< the store or the inbox already had the event
  retry,      ///< the handler asked to retry (or threw); one attempt spent
  fatal,      ///< retrying cannot help: dead-letter it
  wait,       ///< a dependency did not answer (store, inbox database, a claim held elsewhere, or the handler's
              ///< own: outcome::infrastructure): try the same step again later, no attempt spent
};

/// The result of a step: for retry and fatal the handler's reason; for wait what failed and which dependency.
struct attempt_result {
  attempt_kind kind = attempt_kind::processed;
  std::string reason;
  std::string error_class;                   ///< fatal: the dead letter's `dlq_error_class`
  std::string dependency;                    ///< wait: `dedupe`, `inbox` or `claim`
  bool ran_handler = false;                  ///< the handler ran (an attempt is counted)
  std::chrono::milliseconds retry_after{0};  ///< retry: the handler's outcome::retry_after delay (0: none)
};

/// A record's claim on its event id in the dedupe store, kept across its in-process attempts.
struct claim_state {
  std::string token;                ///< the caller's token; empty until the first claim
  std::string key;                  ///< the dedupe key claimed (dedupe_key, or the event id)
  bool owned = false;               ///< the store holds this token's claim
  bool complete_pending = false;    ///< the handler said done; the store has not recorded it yet
  bool complete_duplicate = false;  ///< ... and that done was outcome::duplicate
};

/// The attempt: claim → handler → complete, or the inbox transaction (claim, handler and commit together).
/// Owns the dedupe store or the inbox with its connection, and renews a claim's lease while the handler runs.
///
/// Plain path:   claim(token) ──claimed──▶ handler ──done──▶ complete(token) ──▶ processed
///                  │ duplicate ▶ duplicate          │ retry/fatal: the claim is kept for the next attempt and
///                  │ in_progress ▶ wait (claim)     │ given up by let_go() when the record moves on
///               complete failing ▶ wait (dedupe), complete_pending: the next run() only completes
/// Inbox path:   BEGIN; INSERT inbox row; handler(tx); the row still visible?; (a replay: note it in the
///               dead letters); COMMIT
///               (no row, or the transaction aborted: the handler swallowed an SQL error ▶ retry)
class attempt_runner {
 public:
  /// The plain path; `store` may be null (no dedupe) and must outlive the runner.
  attempt_runner(std::string group, handler h, dedupe::store* store, consumer_metrics& metrics,
                 dedupe_key_function key = {}, classifier classify = {}, dead_letter_hook on_dead = {});
  /// The inbox path; connects and creates the inbox table (throws outbox_error on failure).
  attempt_runner(std::string group, transactional_handler h, const inbox_options& inbox, consumer_metrics& metrics,
                 dedupe_key_function key = {}, classifier classify = {}, dead_letter_hook on_dead = {});
  ~attempt_runner();
  attempt_runner(const attempt_runner&) = delete;
  attempt_runner& operator=(const attempt_runner&) = delete;

  /// One attempt of `r` (or, with complete_pending, just the completion).
  attempt_result run(const record& r, claim_state& c);
  /// Gives the claim up before the record moves to a tier or the DLQ; wait when the store fails.
  attempt_result let_go(const record& r, claim_state& c);
  /// With the inbox: records the dead letter in the inbox database (its own short transaction); wait when the
  /// database fails. Without the inbox, or for a record without a usable event id, nothing to do.
  /// The dead-letter hook runs in the same transaction; a record without a usable event id gets no row, but the
  /// hook still runs.
  attempt_result record_dead_letter(const dedupe::dead_letter_entry& e, const record& r, const dead_letter_info& info);
  /// Deletes expired dedupe entries: at most `batch` per statement, until none is left or `budget` passed.
  /// Returns rows deleted and whether it stopped with more left.
  std::pair<std::size_t, bool> cleanup(std::size_t batch, std::chrono::milliseconds budget);
  /// How long a done mark is kept (0 without dedupe).
  [[nodiscard]] std::chrono::milliseconds retention() const noexcept;
  /// The store's evictions so far.
  [[nodiscard]] std::uint64_t evicted() const noexcept;
  [[nodiscard]] bool dedupes() const noexcept { return m_store != nullptr || m_inbox != nullptr; }

  // Batched inbox commits (inbox_options::batch > 1): attempts that the consumer allows join one open transaction,
  // a savepoint each; commit_batch() commits them together.
  /// Whether the next attempts may join the open batch (the consumer allows it only while no record waits).
  void allow_batch(bool on) noexcept { m_batch_allowed = on; }
  [[nodiscard]] bool batch_open() const noexcept { return m_batch != nullptr; }
  [[nodiscard]] std::size_t batch_records() const noexcept { return m_batch_records; }
  [[nodiscard]] std::chrono::steady_clock::time_point batch_opened() const noexcept { return m_batch_opened; }
  /// Commits the open batch (true when none is open). False when the commit failed: the effects of every
  /// record in it are gone (or in doubt), take_batch_lost() says so, and those records must run again.
  bool commit_batch();
  /// Batches committed so far.
  [[nodiscard]] std::uint64_t batch_commits() const noexcept { return m_batch_commits; }
  /// True once after a batch holding applied records was lost (its commit failed, or its connection broke).
  bool take_batch_lost() noexcept { return std::exchange(m_batch_lost, false); }

 private:
  attempt_result run_plain(const record& r, claim_state& c);
  attempt_result run_in_transaction(const record& r);
  attempt_result run_in_batch(const record& r);
  /// The transactional handler on `tx`, its exceptions mapped to outcomes, timed.
  outcome call_in(pqxx::work& tx, const record& r);
  /// After a handler said done in `tx`: whether its inbox row is still there (the transaction alive), noting a
  /// replay's effect in the dead letters; PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK and
  /// no error, and libpqxx does not look. `before` goes in the same round trip (postgres_inbox::still_claimed_in).
  bool still_applied(pqxx::work& tx, const record& r, std::string_view id, std::string_view before = {});
  /// The retry of a handler that returned done on an aborted transaction.
  static attempt_result swallowed_sql_error();
  /// The result of an inbox transaction that threw.
  attempt_result inbox_failure(const std::exception& e);
  /// The open batch is unusable: drops it, and flags it lost when it held applied records.
  void lose_batch() noexcept;
  /// The batch's last record's pending savepoint release and check (run_in_batch) before the commit; throws when
  /// they fail, false when its inbox row is gone.
  bool settle_last_record();
  /// The record's dedupe key, or the fatal result of a missing or bad one; `what` ends its reason.
  std::variant<std::string, attempt_result> key_of(const record& r, const char* what) const;
  pqxx::connection& database();
  std::string new_token();
  void keep_lease(std::string_view event_id, const std::string& token);
  void drop_lease();
  void renew_loop();

  std::string m_group;
  handler m_handler;
  transactional_handler m_tx_handler;
  dedupe_key_function m_key;
  classifier m_classify;
  dead_letter_hook m_on_dead;
  bool m_drop_db = false;  ///< the connection broke under a transaction still open: reconnect before the next
  dedupe::store* m_store = nullptr;
  std::unique_ptr<dedupe::postgres_inbox> m_inbox;
  std::string m_dsn;
  std::unique_ptr<pqxx::connection> m_db;
  std::size_t m_batch_size = 1;
  bool m_batch_allowed = false;
  std::unique_ptr<pqxx::work> m_batch;  // after m_db: gone before its connection
  std::size_t m_batch_records = 0;
  std::chrono::steady_clock::time_point m_batch_opened;
  std::uint64_t m_batch_commits = 0;
  bool m_batch_lost = false;
  // The batch's last record, already reported: its savepoint is released, and its inbox row checked, with the next
  // record's claim or before the commit (one round trip less a record).
  bool m_release_pending = false;
  std::string m_check_pending;  ///< the event id whose row is to be checked; empty when none is (a duplicate)
  consumer_metrics& m_metrics;
  std::uint64_t m_token_prefix;
  std::uint64_t m_token_counter = 0;

  // The lease renewer: a thread that renews the claim of the handler now running, every third of the lease.
  std::mutex m_lease_mutex;
  std::condition_variable m_lease_cv;
  std::string m_lease_event;
  std::string m_lease_token;
  std::chrono::steady_clock::time_point m_lease_started{};  ///< when the running handler's claim was taken
  bool m_lease_active = false;
  bool m_lease_parked = false;  ///< the renewer waits for a handler to start: only then does keep_lease wake it
  bool m_lease_stop = false;
  std::thread m_renewer;
};

}  // namespace outbox::consumer::detail
