#include "attempt.hpp"

#include "consumer_metrics.hpp"
#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/base/record_format.hpp"
#include "outbox/base/text.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <cstdio>
#include <random>

namespace outbox::consumer::detail {
namespace {

using clock = std::chrono::steady_clock;
namespace rf = record_format;

constexpr std::string_view k_component = "consumer";
constexpr const char* k_previous_lost =
    "the inbox row of a record already run in this batch is gone (its handler rolled back, or deleted the row); the "
    "batch is lost and its records run again, a transaction each";
constexpr const char* k_previous_failed =
    "the batch's transaction failed after a record already run in it (its handler swallowed an SQL error, or ended "
    "the transaction); the batch is lost and its records run again, a transaction each";
/// Bounds the inbox's row-lock waits (a zombie's transaction) and abandoned transactions on the SDK's connection.
constexpr std::string_view k_session_settings =
    "SET lock_timeout = '10s'; SET idle_in_transaction_session_timeout = '10min'";

double seconds_since(clock::time_point t0) { return std::chrono::duration<double>(clock::now() - t0).count(); }

attempt_result wait_on(std::string dependency, std::string why) {
  return {attempt_kind::wait, std::move(why), {}, std::move(dependency), false, {}};
}

attempt_result from_outcome(const outcome& o) {
  switch (o.kind) {
    case outcome_kind::done:
      return {attempt_kind::processed, {}, {}, {}, true};
    case outcome_kind::duplicate:
      return {attempt_kind::duplicate, {}, {}, {}, true};
    case outcome_kind::infrastructure:
      return {attempt_kind::wait, o.reason, {}, "handler", false, {}};
    case outcome_kind::retry:
      return {attempt_kind::retry, o.reason, {}, {}, true, std::max(o.retry_delay, std::chrono::milliseconds(0))};
    case outcome_kind::fatal:
      return {attempt_kind::fatal,
              o.reason,
              o.error_class.empty() ? std::string(rf::k_class_fatal) : o.error_class,
              {},
              true,
              {}};
  }
  return {attempt_kind::retry, o.reason, {}, {}, true, {}};
}

/// Whether the handler's outcome is recorded in the dedupe store or committed with the inbox row.
bool applied(const outcome& o) { return o.kind == outcome_kind::done || o.kind == outcome_kind::duplicate; }

/// An exception from the inbox database that is not the record's fault (connection lost, commit in doubt, a
/// retryable SQLSTATE such as 40001, 55P03 or 57P01): the text to wait on; nullopt for the record's own errors.
std::optional<std::string> database_failure(const std::exception& e) {
  if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
    return std::string("PostgreSQL connection lost: ") + e.what();
  }
  if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
    return std::string("commit in doubt (the next attempt finds the inbox row if it committed): ") + e.what();
  }
  if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
    if (classify_sqlstate(sql->sqlstate()) != retry_class::fatal) {
      return std::string(e.what()) + " (SQLSTATE " + sql->sqlstate() + ")";
    }
  }
  if (const auto* o = dynamic_cast<const outbox_error*>(&e); o != nullptr && o->value().retry != retry_class::fatal) {
    return e.what();
  }
  return std::nullopt;
}

}  // namespace

attempt_runner::attempt_runner(std::string group, handler h, dedupe::store* store, consumer_metrics& metrics,
                               dedupe_key_function key, classifier classify, dead_letter_hook on_dead)
    : m_group(std::move(group)),
      m_handler(std::move(h)),
      m_key(std::move(key)),
      m_classify(std::move(classify)),
      m_on_dead(std::move(on_dead)),
      m_store(store),
      m_metrics(metrics),
      m_token_prefix(std::random_device{}() ^ (static_cast<std::uint64_t>(std::random_device{}()) << 32U)) {
  if (m_store != nullptr) m_renewer = std::thread([this] { renew_loop(); });
}

attempt_runner::attempt_runner(std::string group, transactional_handler h, const inbox_options& inbox,
                               consumer_metrics& metrics, dedupe_key_function key, classifier classify,
                               dead_letter_hook on_dead)
    : m_group(std::move(group)),
      m_tx_handler(std::move(h)),
      m_key(std::move(key)),
      m_classify(std::move(classify)),
      m_on_dead(std::move(on_dead)),
      m_inbox(std::make_unique<dedupe::postgres_inbox>(
          inbox.dsn, dedupe::postgres_inbox::options{inbox.table, inbox.retention, inbox.keep_at_least,
                                                     inbox.dead_letter_table, inbox.create_table})),
      m_dsn(inbox.dsn),
      m_batch_size(std::max<std::size_t>(inbox.batch, 1)),
      m_metrics(metrics),
      m_token_prefix(0) {}

attempt_runner::~attempt_runner() {
  if (m_renewer.joinable()) {
    {
      std::lock_guard lock(m_lease_mutex);
      m_lease_stop = true;
    }
    m_lease_cv.notify_all();
    m_renewer.join();
  }
}

std::string attempt_runner::new_token() {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%016llx-%llu", static_cast<unsigned long long>(m_token_prefix),
                static_cast<unsigned long long>(++m_token_counter));
  return buf;
}

std::variant<std::string, attempt_result> attempt_runner::key_of(const record& r, const char* what) const {
  const auto fatal = [&](std::string_view error_class, std::string why) {
    return attempt_result{
        attempt_kind::fatal, std::move(why) + ", so " + what, std::string(error_class), {}, false, {}};
  };
  if (!m_key) {
    const auto id = r.header(rf::k_event_id);
    if (!id) return fatal(rf::k_class_missing_event_id, "record has no event_id header");
    if (auto problem = rf::event_id_problem(*id)) return fatal(rf::k_class_bad_event_id, "event_id " + *problem);
    return std::string(*id);
  }
  std::string key;
  try {
    key = m_key(r);
  } catch (const std::exception& e) {
    return fatal(rf::k_class_missing_event_id, std::string("the dedupe key function threw: ") + e.what());
  } catch (...) {
    return fatal(rf::k_class_missing_event_id, "the dedupe key function threw a non-standard exception");
  }
  if (key.empty()) return fatal(rf::k_class_missing_event_id, "the record's dedupe key is empty");
  if (auto problem = rf::event_id_problem(key)) return fatal(rf::k_class_bad_event_id, "the dedupe key " + *problem);
  return key;
}

attempt_result attempt_runner::run(const record& r, claim_state& c) {
  if (!m_inbox) return run_plain(r, c);
  if (m_batch_size > 1 && m_batch_allowed) return run_in_batch(r);
  if (m_batch && !commit_batch()) {
    log::warn(k_component, "a batch of inbox records was lost; its records run again");
  }
  return run_in_transaction(r);
}

attempt_result attempt_runner::run_plain(const record& r, claim_state& c) {
  if (m_store == nullptr) {
    outcome o;
    const auto t0 = clock::now();
    try {
      o = m_handler(r);
    } catch (...) {
      o = outcome_from_exception(std::current_exception(), m_classify);
    }
    m_metrics.handler_time(r.topic, seconds_since(t0));
    return from_outcome(o);
  }
  if (c.key.empty()) {
    auto key = key_of(r, "it cannot be deduplicated");
    if (auto* bad = std::get_if<attempt_result>(&key)) return *bad;
    c.key = std::move(std::get<std::string>(key));
  }
  const std::string_view id = c.key;
  if (c.token.empty()) c.token = new_token();
  if (c.complete_pending) {
    try {
      m_store->complete(m_group, id, c.token);
    } catch (const std::exception& e) {
      return wait_on("dedupe", std::string("the dedupe store could not record a done event: ") + e.what());
    }
    c.complete_pending = false;
    c.owned = false;
    return {c.complete_duplicate ? attempt_kind::duplicate : attempt_kind::processed, {}, {}, {}, false, {}};
  }
  try {
    const auto t0 = clock::now();
    const auto claimed = m_store->claim(m_group, id, c.token);
    m_metrics.dedupe_time(seconds_since(t0));
    switch (claimed) {
      case dedupe::claim_result::claimed:
        c.owned = true;
        break;
      case dedupe::claim_result::duplicate:
        c.owned = false;
        return {attempt_kind::duplicate, {}, {}, {}, false, {}};
      case dedupe::claim_result::in_progress:
        return wait_on("claim",
                       "another worker holds the claim on this event id; waiting for it to finish or for its "
                       "lease to run out");
    }
  } catch (const std::exception& e) {
    return wait_on("dedupe", std::string("dedupe store claim failed: ") + e.what());
  }

  outcome o;
  const auto t0 = clock::now();
  keep_lease(id, c.token);
  try {
    o = m_handler(r);
  } catch (...) {
    o = outcome_from_exception(std::current_exception(), m_classify);
  }
  drop_lease();
  m_metrics.handler_time(r.topic, seconds_since(t0));
  if (!applied(o)) return from_outcome(o);  // the claim stays ours for the next attempt
  try {
    if (!m_store->complete(m_group, id, c.token)) {
      log::warn(k_component,
                "the claim on this event id passed to another worker while the handler ran (its lease ran out "
                "unrenewed); that worker records the outcome",
                {{"event_id", id}, {"topic", r.topic}, {"offset", r.offset}});
    }
    c.owned = false;
  } catch (const std::exception& e) {
    // The effect is applied: record it before the offset moves, without running the handler again.
    c.complete_pending = true;
    c.complete_duplicate = o.kind == outcome_kind::duplicate;
    attempt_result w = wait_on("dedupe", std::string("the dedupe store could not record a done event: ") + e.what());
    w.ran_handler = true;
    return w;
  }
  return from_outcome(o);
}

attempt_result attempt_runner::let_go(const record& r, claim_state& c) {
  if (m_store == nullptr || !c.owned) return {};
  try {
    m_store->release(m_group, c.key.empty() ? r.event_id() : std::string_view(c.key), c.token);
  } catch (const std::exception& e) {
    return wait_on("dedupe", std::string("the dedupe store could not release a claim: ") + e.what());
  }
  c.owned = false;
  return {};
}

outcome attempt_runner::call_in(pqxx::work& tx, const record& r) {
  outcome o;
  const auto t0 = clock::now();
  try {
    o = m_tx_handler(r, tx);
  } catch (const std::exception& e) {
    // The connection goes once `tx` is gone; the next transaction opens a new one.
    if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) m_drop_db = true;
    o = outcome_from_exception(std::current_exception(), m_classify);
  } catch (...) {
    o = outcome_from_exception(std::current_exception(), m_classify);
  }
  m_metrics.handler_time(r.topic, seconds_since(t0));
  return o;
}

bool attempt_runner::still_applied(pqxx::work& tx, const record& r, std::string_view id, std::string_view before) {
  bool alive = false;
  try {
    alive = m_inbox->still_claimed_in(tx, m_group, id, before);
  } catch (const outbox_error& e) {
    if (e.value().retry != retry_class::fatal) throw;
  }
  if (!alive) return false;
  if (const auto n = r.header(rf::k_dlq_replay_count); n && parse_int64(*n).value_or(0) > 0) {
    // Dead letters are recorded by event id, whatever the dedupe key is.
    if (const auto event = r.event_id(); !event.empty() && !rf::event_id_problem(event)) {
      m_inbox->note_replay_applied(tx, m_group, event);
    }
  }
  return true;
}

attempt_result attempt_runner::swallowed_sql_error() {
  return {attempt_kind::retry,
          "the handler returned done on a transaction that was aborted or rolled back (did it catch an SQL error? run "
          "statements that may fail in a pqxx::subtransaction); nothing was committed",
          {},
          {},
          true,
          {}};
}

attempt_result attempt_runner::inbox_failure(const std::exception& e) {
  if (m_db && (!m_db->is_open() || dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
               dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr)) {
    m_db.reset();
  }
  if (auto down = database_failure(e)) return wait_on("inbox", *down);
  if (const auto* o = dynamic_cast<const outbox_error*>(&e); o != nullptr && o->value().category == "dedupe") {
    // The inbox refused its own statement (e.g. the table is missing or not writable): not the record's fault.
    return wait_on("inbox", e.what());
  }
  return wait_on("inbox", std::string("transaction failed: ") + e.what());
}

attempt_result attempt_runner::run_in_batch(const record& r) {
  auto key = key_of(r, "the inbox cannot deduplicate it");
  if (auto* bad = std::get_if<attempt_result>(&key)) return *bad;
  const std::string_view id = std::get<std::string>(key);
  try {
    if (!m_batch) {
      m_batch = std::make_unique<pqxx::work>(database());
      m_batch_opened = clock::now();
      m_batch_records = 0;
    }
    pqxx::work& tx = *m_batch;
    // Two round trips a record: one message, and the handler's statements. The message releases the savepoint of
    // the record before, checks that its inbox row is still there, opens this record's savepoint and inserts its
    // inbox row. The record before was reported done already: when its release or its check fails (its handler
    // swallowed an SQL error, or rolled back), the batch is lost and its records run again a transaction each
    // (the consumer's read_again), where the one at fault fails alone.
    const char* const before =
        m_release_pending ? "RELEASE SAVEPOINT outbox_record; SAVEPOINT outbox_record" : "SAVEPOINT outbox_record";
    const bool checks_previous = !m_check_pending.empty();
    const auto c0 = clock::now();
    bool claimed = false;
    try {
      if (checks_previous) {
        const auto got = m_inbox->claim_after_in(tx, m_group, id, m_check_pending, before);
        if (!got.previous_held) {
          log::warn(k_component, k_previous_lost, {{"event_id", m_check_pending}, {"next_event_id", id}});
          lose_batch();
          return wait_on("inbox", k_previous_lost);
        }
        claimed = got.claimed;
      } else {
        claimed = m_inbox->claim_in(tx, m_group, id, before);
      }
    } catch (const std::exception& e) {
      if (!m_release_pending || (m_db && !m_db->is_open()) ||
          dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
        throw;
      }
      log::warn(k_component, k_previous_failed, {{"next_event_id", id}, {"error", e.what()}});
      lose_batch();
      return wait_on("inbox", std::string(k_previous_failed) + ": " + e.what());
    }
    m_release_pending = false;
    m_check_pending.clear();
    m_metrics.dedupe_time(seconds_since(c0));
    if (!claimed) {
      // Committed earlier, or by a record before it in this batch (which runs again with it if the batch is lost).
      m_release_pending = true;
      ++m_batch_records;
      return {attempt_kind::duplicate, {}, {}, {}, false, {}};
    }
    const outcome o = call_in(tx, r);
    if (m_drop_db) {
      lose_batch();
      return wait_on("inbox", o.reason.empty() ? std::string("the inbox connection broke") : o.reason);
    }
    const auto undo = [&] { tx.exec0("ROLLBACK TO SAVEPOINT outbox_record"); };
    if (o.kind == outcome_kind::infrastructure) {
      undo();
      return wait_on("inbox", o.reason);
    }
    if (!applied(o)) {
      undo();
      return from_outcome(o);
    }
    if (!r.header(rf::k_dlq_replay_count)) {
      m_release_pending = true;  // and checked with the next record's claim, or before the commit
      m_check_pending = id;
      ++m_batch_records;
      return from_outcome(o);
    }
    bool alive = false;  // a replayed dead letter also notes its replay: checked now, as a record alone is
    try {
      alive = still_applied(tx, r, id, "RELEASE SAVEPOINT outbox_record");
    } catch (const std::exception&) {
      // An aborted transaction (the handler swallowed an SQL error) fails the release, or a lost connection: undoing
      // the record's savepoint, still there, tells which, and a lost connection loses the batch below. A row gone
      // after the release leaves no savepoint to undo: that loses the batch below too.
    }
    if (!alive) {
      undo();
      return swallowed_sql_error();
    }
    ++m_batch_records;
    return from_outcome(o);
  } catch (const std::exception& e) {
    lose_batch();  // the transaction is unusable: every record applied in it runs again
    return inbox_failure(e);
  }
}

void attempt_runner::lose_batch() noexcept {
  m_release_pending = false;
  m_check_pending.clear();
  if (!m_batch) return;
  try {
    m_batch->abort();
  } catch (...) {  // NOLINT(bugprone-empty-catch): the connection is gone; so is the transaction
  }
  m_batch.reset();
  if (m_batch_records > 0) m_batch_lost = true;
  m_batch_records = 0;
}

bool attempt_runner::commit_batch() {
  if (!m_batch) return true;
  const std::size_t records = m_batch_records;
  try {
    if (!settle_last_record()) {
      log::warn(k_component, k_previous_lost, {{"event_id", m_check_pending}, {"records", records}});
      lose_batch();
      return false;
    }
    m_batch->commit();
    m_batch.reset();
    m_batch_records = 0;
    ++m_batch_commits;
    return true;
  } catch (const std::exception& e) {
    log::warn(k_component, "committing a batch of inbox records failed; they run again",
              {{"records", records}, {"error", e.what()}});
    m_release_pending = false;
    m_check_pending.clear();
    m_batch.reset();
    m_batch_records = 0;
    if (records > 0) m_batch_lost = true;
    if (m_db && (!m_db->is_open() || dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr ||
                 dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr)) {
      m_db.reset();
    }
    return false;
  }
}

bool attempt_runner::settle_last_record() {
  if (m_check_pending.empty()) return true;  // a pending release alone: the commit releases every savepoint
  // The check alone would do (a SELECT fails in an aborted transaction too); the release keeps its error the same
  // as with a next record.
  if (!m_inbox->still_claimed_in(*m_batch, m_group, m_check_pending, "RELEASE SAVEPOINT outbox_record")) return false;
  m_release_pending = false;
  m_check_pending.clear();
  return true;
}

attempt_result attempt_runner::run_in_transaction(const record& r) {
  auto key = key_of(r, "the inbox cannot deduplicate it");
  if (auto* bad = std::get_if<attempt_result>(&key)) return *bad;
  const std::string_view id = std::get<std::string>(key);
  try {
    pqxx::work tx(database());
    const auto c0 = clock::now();
    const bool claimed = m_inbox->claim_in(tx, m_group, id);
    m_metrics.dedupe_time(seconds_since(c0));
    if (!claimed) {
      tx.abort();
      return {attempt_kind::duplicate, {}, {}, {}, false, {}};
    }
    const outcome o = call_in(tx, r);
    if (o.kind == outcome_kind::infrastructure) {
      if (!m_drop_db) tx.abort();
      return wait_on("inbox", o.reason);
    }
    if (!applied(o)) {
      tx.abort();
      return from_outcome(o);
    }
    // PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK and no error, and libpqxx does not
    // look: check first that the transaction is alive and still holds the inbox row.
    if (!still_applied(tx, r, id)) {
      tx.abort();
      return swallowed_sql_error();
    }
    tx.commit();  // inbox row and effect together; in doubt -> the next attempt finds the row if it committed
    return from_outcome(o);
  } catch (const std::exception& e) {
    return inbox_failure(e);
  }
}

pqxx::connection& attempt_runner::database() {
  if (m_drop_db) {
    m_db.reset();
    m_drop_db = false;
  }
  if (!m_db) {
    m_db = std::make_unique<pqxx::connection>(m_dsn);
    pqxx::nontransaction settings(*m_db);
    settings.exec(std::string(k_session_settings));
  }
  return *m_db;
}

attempt_result attempt_runner::record_dead_letter(const dedupe::dead_letter_entry& e, const record& r,
                                                  const dead_letter_info& info) {
  if (!m_inbox) return {};
  const bool row = !e.event_id.empty() && !rf::event_id_problem(e.event_id);
  if (!row && !m_on_dead) return {};
  commit_batch();  // the connection holds one transaction at a time; a lost batch is flagged for the consumer
  try {
    pqxx::work tx(database());
    if (row) m_inbox->record_dead_letter(tx, e);
    if (m_on_dead) {
      try {
        m_on_dead(r, info, tx);
      } catch (const std::exception& ex) {
        if (dynamic_cast<const pqxx::broken_connection*>(&ex) != nullptr) m_drop_db = true;
        return wait_on("inbox", std::string("the dead-letter hook failed (nothing of it or of the recorded dead "
                                            "letter is committed): ") +
                                    ex.what());
      }
    }
    tx.commit();
  } catch (const std::exception& ex) {
    if (m_db && (!m_db->is_open() || dynamic_cast<const pqxx::broken_connection*>(&ex) != nullptr ||
                 dynamic_cast<const pqxx::in_doubt_error*>(&ex) != nullptr)) {
      m_db.reset();
    }
    return wait_on("inbox", std::string("could not record the dead letter in the inbox database: ") + ex.what());
  }
  return {};
}

std::pair<std::size_t, bool> attempt_runner::cleanup(std::size_t batch, std::chrono::milliseconds budget) {
  if (!dedupes() || batch == 0) return {0, false};
  const auto until = clock::now() + budget;
  std::size_t removed = 0;
  while (true) {
    const std::size_t n = m_inbox ? m_inbox->cleanup(batch) : m_store->cleanup(batch);
    removed += n;
    if (n < batch) return {removed, false};
    if (clock::now() >= until) return {removed, true};
  }
}

std::chrono::milliseconds attempt_runner::retention() const noexcept {
  if (m_inbox) return m_inbox->retention();
  if (m_store != nullptr) return m_store->retention();
  return std::chrono::milliseconds(0);
}

std::uint64_t attempt_runner::evicted() const noexcept { return m_store != nullptr ? m_store->evicted() : 0; }

void attempt_runner::keep_lease(std::string_view event_id, const std::string& token) {
  bool wake = false;
  {
    std::lock_guard lock(m_lease_mutex);
    m_lease_event.assign(event_id);
    m_lease_token = token;
    m_lease_started = clock::now();
    m_lease_active = true;
    wake = m_lease_parked;
  }
  // The renewer sleeps until the running handler's first renewal is due, and looks again then: handlers that start
  // and finish between two of its wake-ups do not wake it (a wake-up a record cost the loop a third of its rate).
  if (wake) m_lease_cv.notify_all();
}

void attempt_runner::drop_lease() {
  std::lock_guard lock(m_lease_mutex);
  m_lease_active = false;
}

void attempt_runner::renew_loop() {
  const auto every = std::max(std::chrono::milliseconds(20), m_store->lease() / 3);
  std::string renewed_token;  // the claim renewed last, and when
  clock::time_point renewed_at{};
  std::unique_lock lock(m_lease_mutex);
  while (!m_lease_stop) {
    if (!m_lease_active) {
      m_lease_parked = true;
      m_lease_cv.wait(lock, [&] { return m_lease_stop || m_lease_active; });
      m_lease_parked = false;
      continue;
    }
    // A handler runs: its claim is renewed once it has run a third of the lease, then every third after that.
    const std::string token = m_lease_token;
    const clock::time_point due = (token == renewed_token ? renewed_at : m_lease_started) + every;
    m_lease_cv.wait_until(lock, due, [&] { return m_lease_stop; });
    if (m_lease_stop) return;
    if (!m_lease_active || m_lease_token != token) continue;  // it finished; one running now has its own start
    const std::string event = m_lease_event;
    lock.unlock();
    bool renewed = true;
    try {
      renewed = m_store->renew(m_group, event, token);
    } catch (const std::exception& e) {
      log::warn(k_component, "could not renew the claim on an event id; trying again",
                {{"event_id", event}, {"error", e.what()}});
    }
    lock.lock();
    renewed_token = token;
    renewed_at = clock::now();
    // A handler that finished meanwhile completed the claim: only a claim still running can have been lost.
    if (!renewed && m_lease_active && m_lease_token == token) {
      log::error(k_component,
                 "lost the claim on an event id while its handler runs: another worker may run it too; raise "
                 "dedupe.lease if Redis or the store was unreachable for that long",
                 {{"event_id", event}});
    }
  }
}

}  // namespace outbox::consumer::detail
