#include "outbox/dedupe/store.hpp"

#include "outbox/base/error.hpp"

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace outbox::dedupe {
namespace {

/// The state column: 0 = in progress (claimed, lease running), 1 = done.
constexpr int k_done = 1;
constexpr int k_busy_timeout_ms = 5000;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

/// Busy, locked, I/O and disk-full errors may pass; a corrupt, unreadable or read-only file will not.
retry_class classify(int code) {
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_INTERRUPT:
      return retry_class::retryable;
    default:
      return retry_class::fatal;
  }
}

/// One prepared statement, reset after every use.
class statement {
 public:
  statement() = default;
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  ~statement() { sqlite3_finalize(m_stmt); }

  void prepare(sqlite3* db, const std::string& sql) {
    if (int rc = sqlite3_prepare_v3(db, sql.c_str(), static_cast<int>(sql.size() + 1), SQLITE_PREPARE_PERSISTENT,
                                    &m_stmt, nullptr);
        rc != SQLITE_OK) {
      throw outbox_error("dedupe", std::string("sqlite: cannot prepare '") + sql + "': " + sqlite3_errmsg(db),
                         classify(rc));
    }
  }
  [[nodiscard]] sqlite3_stmt* get() const { return m_stmt; }

 private:
  sqlite3_stmt* m_stmt = nullptr;
};

class sqlite_store final : public store {
 public:
  explicit sqlite_store(sqlite_options o) : m_options(std::move(o)) {
    if (m_options.path.empty()) {
      throw outbox_error("dedupe", "sqlite store: dedupe.path is empty; set it to a writable file", retry_class::fatal);
    }
    if (m_options.retention.count() <= 0 || m_options.lease.count() <= 0) {
      throw outbox_error("dedupe", "sqlite store " + m_options.path + ": retention and lease must be positive",
                         retry_class::fatal);
    }
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(m_options.path.c_str(), &db,
                                   SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    m_handle.reset(db);
    m_db = db;
    if (rc != SQLITE_OK) {
      std::string message = m_db != nullptr ? sqlite3_errmsg(m_db) : sqlite3_errstr(rc);
      throw outbox_error("dedupe",
                         "sqlite store: cannot open " + m_options.path + ": " + message +
                             "; check that the directory exists and is writable",
                         retry_class::fatal);
    }
    sqlite3_busy_timeout(m_db, k_busy_timeout_ms);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
    exec(
        "CREATE TABLE IF NOT EXISTS outbox_dedupe ("
        " consumer_group TEXT NOT NULL, event_id TEXT NOT NULL,"
        " state INTEGER NOT NULL, updated_ms INTEGER NOT NULL,"
        " PRIMARY KEY (consumer_group, event_id)) WITHOUT ROWID");
    exec("CREATE INDEX IF NOT EXISTS outbox_dedupe_updated ON outbox_dedupe (updated_ms)");
    // A row is (re)claimed when new, when its in-progress lease ran out, or when its done mark outlived the
    // retention without being cleaned up yet. The WHERE makes the claim atomic across connections.
    m_claim.prepare(m_db,
                    "INSERT INTO outbox_dedupe (consumer_group, event_id, state, updated_ms) VALUES (?1, ?2, 0, ?3)"
                    " ON CONFLICT (consumer_group, event_id) DO UPDATE SET state = 0, updated_ms = excluded.updated_ms"
                    " WHERE (state = 0 AND updated_ms < ?4) OR (state = 1 AND updated_ms < ?5)");
    m_state.prepare(m_db, "SELECT state, updated_ms FROM outbox_dedupe WHERE consumer_group = ?1 AND event_id = ?2");
    m_complete.prepare(m_db,
                       "INSERT INTO outbox_dedupe (consumer_group, event_id, state, updated_ms) VALUES (?1, ?2, 1, ?3)"
                       " ON CONFLICT (consumer_group, event_id) DO UPDATE SET state = 1, updated_ms = ?3");
    m_release.prepare(m_db, "DELETE FROM outbox_dedupe WHERE consumer_group = ?1 AND event_id = ?2 AND state = 0");
    m_cleanup.prepare(m_db,
                      "DELETE FROM outbox_dedupe WHERE (consumer_group, event_id) IN"
                      " (SELECT consumer_group, event_id FROM outbox_dedupe WHERE updated_ms < ?1 LIMIT ?2)");
  }

  claim_result claim(std::string_view group, std::string_view event_id) override {
    std::lock_guard lock(m_mutex);
    // Another connection to the same file may change the row between the read and the write: then look again.
    for (int attempt = 0; attempt < 3; ++attempt) {
      const std::int64_t now = now_ms();
      // Read first, so a redelivered or busy event costs no write transaction.
      bind_key(m_state, group, event_id);
      const int rc = sqlite3_step(m_state.get());
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail(rc, m_state, "claim");
      const bool found = rc == SQLITE_ROW;
      const int state = found ? sqlite3_column_int(m_state.get(), 0) : -1;
      const std::int64_t updated_ms = found ? sqlite3_column_int64(m_state.get(), 1) : 0;
      sqlite3_reset(m_state.get());
      sqlite3_clear_bindings(m_state.get());
      if (found && state == k_done && updated_ms >= now - m_options.retention.count()) return claim_result::duplicate;
      if (found && state != k_done && updated_ms >= now - m_options.lease.count()) return claim_result::in_progress;

      bind_key(m_claim, group, event_id);
      bind_int(m_claim, 3, now);
      bind_int(m_claim, 4, now - m_options.lease.count());
      bind_int(m_claim, 5, now - m_options.retention.count());
      step_done(m_claim, "claim");
      if (sqlite3_changes(m_db) == 1) return claim_result::claimed;
    }
    throw outbox_error("dedupe",
                       "sqlite store " + m_options.path + ": claim kept racing with another writer; try again",
                       retry_class::retryable);
  }

  void complete(std::string_view group, std::string_view event_id) override {
    std::lock_guard lock(m_mutex);
    bind_key(m_complete, group, event_id);
    bind_int(m_complete, 3, now_ms());
    step_done(m_complete, "complete");
  }

  void release(std::string_view group, std::string_view event_id) override {
    std::lock_guard lock(m_mutex);
    bind_key(m_release, group, event_id);
    step_done(m_release, "release");
  }

  std::size_t cleanup(std::size_t limit) override {
    if (limit == 0) return 0;
    std::lock_guard lock(m_mutex);
    bind_int(m_cleanup, 1, now_ms() - m_options.retention.count());
    bind_int(m_cleanup, 2, static_cast<std::int64_t>(limit));
    step_done(m_cleanup, "cleanup");
    return static_cast<std::size_t>(sqlite3_changes(m_db));
  }

 private:
  void exec(const char* sql) {
    char* error = nullptr;
    if (int rc = sqlite3_exec(m_db, sql, nullptr, nullptr, &error); rc != SQLITE_OK) {
      std::string message = error != nullptr ? error : sqlite3_errstr(rc);
      sqlite3_free(error);
      throw outbox_error("dedupe", "sqlite store " + m_options.path + ": " + sql + ": " + message, classify(rc));
    }
  }

  void bind_key(statement& s, std::string_view group, std::string_view event_id) {
    sqlite3_bind_text(s.get(), 1, group.data(), static_cast<int>(group.size()), SQLITE_STATIC);
    sqlite3_bind_text(s.get(), 2, event_id.data(), static_cast<int>(event_id.size()), SQLITE_STATIC);
  }

  static void bind_int(statement& s, int index, std::int64_t value) { sqlite3_bind_int64(s.get(), index, value); }

  /// Runs a statement that returns no rows, then resets it and clears its bindings.
  void step_done(statement& s, const char* what) {
    const int rc = sqlite3_step(s.get());
    if (rc != SQLITE_DONE) fail(rc, s, what);
    sqlite3_reset(s.get());
    sqlite3_clear_bindings(s.get());
  }

  /// Throws the statement's error (message taken before the reset).
  [[noreturn]] void fail(int rc, statement& s, const char* what) {
    std::string message = sqlite3_errmsg(m_db);
    sqlite3_reset(s.get());
    sqlite3_clear_bindings(s.get());
    throw outbox_error("dedupe", "sqlite store " + m_options.path + ": " + what + " failed: " + message, classify(rc));
  }

  struct close_db {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };

  sqlite_options m_options;
  std::mutex m_mutex;
  std::unique_ptr<sqlite3, close_db> m_handle;  ///< closed after the statements (declared before them)
  sqlite3* m_db = nullptr;
  statement m_claim;
  statement m_state;
  statement m_complete;
  statement m_release;
  statement m_cleanup;
};

}  // namespace

std::unique_ptr<store> make_sqlite_store(sqlite_options options) {
  return std::make_unique<sqlite_store>(std::move(options));
}

}  // namespace outbox::dedupe
