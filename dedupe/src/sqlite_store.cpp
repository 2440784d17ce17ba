#include "outbox/dedupe/store.hpp"

#include "outbox/base/error.hpp"
#include "outbox/dedupe/key_holds.hpp"

#include "event_id_check.hpp"

#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
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

/// One SQLite connection in WAL mode with the busy timeout, shared by the store and its key holds' helpers.
class sqlite_file {
 public:
  explicit sqlite_file(const std::string& path) : m_path(path) {
    if (m_path.empty()) {
      throw outbox_error("dedupe", "sqlite store: dedupe.path is empty; set it to a writable file", retry_class::fatal);
    }
    sqlite3* db = nullptr;
    const int rc =
        sqlite3_open_v2(m_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    m_handle.reset(db);
    if (rc != SQLITE_OK) {
      std::string message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      throw outbox_error(
          "dedupe",
          "sqlite store: cannot open " + m_path + ": " + message + "; check that the directory exists and is writable",
          retry_class::fatal);
    }
    sqlite3_busy_timeout(db, k_busy_timeout_ms);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=NORMAL");
  }

  [[nodiscard]] sqlite3* db() const { return m_handle.get(); }
  [[nodiscard]] const std::string& path() const { return m_path; }

  void exec(const char* sql) {
    char* error = nullptr;
    if (int rc = sqlite3_exec(db(), sql, nullptr, nullptr, &error); rc != SQLITE_OK) {
      std::string message = error != nullptr ? error : sqlite3_errstr(rc);
      sqlite3_free(error);
      throw outbox_error("dedupe", "sqlite store " + m_path + ": " + sql + ": " + message, classify(rc));
    }
  }

  /// Whether `table` has a column `column`.
  bool has_column(const std::string& table, const std::string& column) {
    statement s;
    s.prepare(db(), "SELECT 1 FROM pragma_table_info('" + table + "') WHERE name = '" + column + "'");
    const int rc = sqlite3_step(s.get());
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) fail(rc, s, "table_info");
    return rc == SQLITE_ROW;
  }

  static void bind_text(statement& s, int index, std::string_view text) {
    sqlite3_bind_text(s.get(), index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
  }
  static void bind_blob(statement& s, int index, std::string_view bytes) {
    sqlite3_bind_blob(s.get(), index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
  }
  static void bind_int(statement& s, int index, std::int64_t value) { sqlite3_bind_int64(s.get(), index, value); }

  /// Runs a statement that returns no rows, then resets it and clears its bindings; returns the rows changed.
  int step_done(statement& s, const char* what) {
    const int rc = sqlite3_step(s.get());
    if (rc != SQLITE_DONE) fail(rc, s, what);
    sqlite3_reset(s.get());
    sqlite3_clear_bindings(s.get());
    return sqlite3_changes(db());
  }

  /// Throws the statement's error (message taken before the reset).
  [[noreturn]] void fail(int rc, statement& s, const char* what) {
    std::string message = sqlite3_errmsg(db());
    sqlite3_reset(s.get());
    sqlite3_clear_bindings(s.get());
    throw outbox_error("dedupe", "sqlite store " + m_path + ": " + what + " failed: " + message, classify(rc));
  }

 private:
  struct close_db {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  std::string m_path;
  std::unique_ptr<sqlite3, close_db> m_handle;
};

class sqlite_store final : public store {
 public:
  explicit sqlite_store(sqlite_options o) : m_options(std::move(o)), m_file(m_options.path) {
    if (m_options.retention.count() <= 0 || m_options.lease.count() <= 0) {
      throw outbox_error("dedupe", "sqlite store " + m_options.path + ": retention and lease must be positive",
                         retry_class::fatal);
    }
    m_file.exec(
        "CREATE TABLE IF NOT EXISTS outbox_dedupe ("
        " consumer_group TEXT NOT NULL, event_id TEXT NOT NULL,"
        " state INTEGER NOT NULL, updated_ms INTEGER NOT NULL, owner TEXT,"
        " PRIMARY KEY (consumer_group, event_id)) WITHOUT ROWID");
    // A file written before claims had owners gains the column; its old claims have none and simply expire.
    if (!m_file.has_column("outbox_dedupe", "owner")) m_file.exec("ALTER TABLE outbox_dedupe ADD COLUMN owner TEXT");
    m_file.exec("CREATE INDEX IF NOT EXISTS outbox_dedupe_updated ON outbox_dedupe (updated_ms)");
    sqlite3* db = m_file.db();
    // A row is (re)claimed when new, when it is the caller's own claim, when its in-progress lease ran out, or
    // when its done mark outlived the retention without being cleaned up yet. The WHERE makes the claim atomic
    // across connections.
    m_claim.prepare(db,
                    "INSERT INTO outbox_dedupe (consumer_group, event_id, state, updated_ms, owner)"
                    " VALUES (?1, ?2, 0, ?3, ?6)"
                    " ON CONFLICT (consumer_group, event_id) DO UPDATE SET state = 0, updated_ms = excluded.updated_ms,"
                    " owner = excluded.owner"
                    " WHERE (state = 0 AND (owner IS ?6 OR updated_ms < ?4)) OR (state = 1 AND updated_ms < ?5)");
    m_state.prepare(db,
                    "SELECT state, updated_ms, owner FROM outbox_dedupe WHERE consumer_group = ?1 AND event_id = ?2");
    m_renew.prepare(db,
                    "UPDATE outbox_dedupe SET updated_ms = ?3"
                    " WHERE consumer_group = ?1 AND event_id = ?2 AND state = 0 AND owner IS ?4");
    m_complete.prepare(db,
                       "INSERT INTO outbox_dedupe (consumer_group, event_id, state, updated_ms, owner)"
                       " VALUES (?1, ?2, 1, ?3, NULL)"
                       " ON CONFLICT (consumer_group, event_id) DO UPDATE SET state = 1, updated_ms = ?3, owner = NULL"
                       " WHERE state = 1 OR owner IS ?4 OR updated_ms < ?5");
    m_release.prepare(db,
                      "DELETE FROM outbox_dedupe"
                      " WHERE consumer_group = ?1 AND event_id = ?2 AND state = 0 AND owner IS ?3");
    m_cleanup.prepare(db,
                      "DELETE FROM outbox_dedupe WHERE (consumer_group, event_id) IN"
                      " (SELECT consumer_group, event_id FROM outbox_dedupe WHERE updated_ms < ?1 LIMIT ?2)");
  }

  claim_result claim(std::string_view group, std::string_view event_id, std::string_view token) override {
    detail::check_event_id(event_id);
    std::lock_guard lock(m_mutex);
    // Another connection to the same file may change the row between the read and the write: then look again.
    for (int attempt = 0; attempt < 3; ++attempt) {
      const std::int64_t now = now_ms();
      // Read first, so a redelivered or busy event costs no write transaction.
      bind_key(m_state, group, event_id);
      const int rc = sqlite3_step(m_state.get());
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) m_file.fail(rc, m_state, "claim");
      const bool found = rc == SQLITE_ROW;
      const int state = found ? sqlite3_column_int(m_state.get(), 0) : -1;
      const std::int64_t updated_ms = found ? sqlite3_column_int64(m_state.get(), 1) : 0;
      const auto* owner_text = found ? sqlite3_column_text(m_state.get(), 2) : nullptr;
      const bool mine = owner_text != nullptr && token == reinterpret_cast<const char*>(owner_text);
      sqlite3_reset(m_state.get());
      sqlite3_clear_bindings(m_state.get());
      if (found && state == k_done && updated_ms >= now - m_options.retention.count()) return claim_result::duplicate;
      if (found && state != k_done && !mine && updated_ms >= now - m_options.lease.count()) {
        return claim_result::in_progress;
      }
      bind_key(m_claim, group, event_id);
      sqlite_file::bind_int(m_claim, 3, now);
      sqlite_file::bind_int(m_claim, 4, now - m_options.lease.count());
      sqlite_file::bind_int(m_claim, 5, now - m_options.retention.count());
      sqlite_file::bind_text(m_claim, 6, token);
      if (m_file.step_done(m_claim, "claim") == 1) return claim_result::claimed;
    }
    throw outbox_error("dedupe",
                       "sqlite store " + m_options.path + ": claim kept racing with another writer; try again",
                       retry_class::retryable);
  }

  bool renew(std::string_view group, std::string_view event_id, std::string_view token) override {
    detail::check_event_id(event_id);
    std::lock_guard lock(m_mutex);
    bind_key(m_renew, group, event_id);
    sqlite_file::bind_int(m_renew, 3, now_ms());
    sqlite_file::bind_text(m_renew, 4, token);
    return m_file.step_done(m_renew, "renew") == 1;
  }

  bool complete(std::string_view group, std::string_view event_id, std::string_view token) override {
    detail::check_event_id(event_id);
    std::lock_guard lock(m_mutex);
    const std::int64_t now = now_ms();
    bind_key(m_complete, group, event_id);
    sqlite_file::bind_int(m_complete, 3, now);
    sqlite_file::bind_text(m_complete, 4, token);
    sqlite_file::bind_int(m_complete, 5, now - m_options.lease.count());
    return m_file.step_done(m_complete, "complete") == 1;
  }

  bool release(std::string_view group, std::string_view event_id, std::string_view token) override {
    detail::check_event_id(event_id);
    std::lock_guard lock(m_mutex);
    bind_key(m_release, group, event_id);
    sqlite_file::bind_text(m_release, 3, token);
    return m_file.step_done(m_release, "release") == 1;
  }

  std::size_t cleanup(std::size_t limit) override {
    if (limit == 0) return 0;
    std::lock_guard lock(m_mutex);
    sqlite_file::bind_int(m_cleanup, 1, now_ms() - m_options.retention.count());
    sqlite_file::bind_int(m_cleanup, 2, static_cast<std::int64_t>(limit));
    return static_cast<std::size_t>(m_file.step_done(m_cleanup, "cleanup"));
  }

  [[nodiscard]] std::chrono::milliseconds retention() const noexcept override { return m_options.retention; }
  [[nodiscard]] std::chrono::milliseconds lease() const noexcept override { return m_options.lease; }

 private:
  static void bind_key(statement& s, std::string_view group, std::string_view event_id) {
    sqlite_file::bind_text(s, 1, group);
    sqlite_file::bind_text(s, 2, event_id);
  }

  sqlite_options m_options;
  std::mutex m_mutex;
  sqlite_file m_file;  ///< closed after the statements (declared before them)
  statement m_claim;
  statement m_state;
  statement m_renew;
  statement m_complete;
  statement m_release;
  statement m_cleanup;
};

/// Key holds in table outbox_parked of the store's file: `seq` keeps the order records were parked in.
class sqlite_key_holds final : public key_holds {
 public:
  sqlite_key_holds(const sqlite_options& o, std::chrono::milliseconds lapse) : m_file(o.path), m_lapse(lapse) {
    m_file.exec(
        "CREATE TABLE IF NOT EXISTS outbox_parked ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT, consumer_group TEXT NOT NULL, topic TEXT NOT NULL,"
        " key BLOB NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL, added_ms INTEGER NOT NULL,"
        " UNIQUE (consumer_group, topic, key, partition, offset))");
    sqlite3* db = m_file.db();
    m_add.prepare(db,
                  "INSERT OR IGNORE INTO outbox_parked (consumer_group, topic, key, partition, offset, added_ms)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    m_lapse_stmt.prepare(db,
                         "DELETE FROM outbox_parked WHERE consumer_group = ?1 AND topic = ?2 AND key = ?3"
                         " AND added_ms < ?4");
    m_head.prepare(db,
                   "SELECT partition, offset FROM outbox_parked WHERE consumer_group = ?1 AND topic = ?2 AND key = ?3"
                   " ORDER BY seq LIMIT 1");
    m_remove.prepare(db,
                     "DELETE FROM outbox_parked WHERE consumer_group = ?1 AND topic = ?2 AND key = ?3"
                     " AND partition = ?4 AND offset = ?5");
  }

  void add(std::string_view group, std::string_view topic, std::string_view key, held_record r) override {
    std::lock_guard lock(m_mutex);
    bind_ident(m_add, group, topic, key);
    sqlite_file::bind_int(m_add, 4, r.partition);
    sqlite_file::bind_int(m_add, 5, r.offset);
    sqlite_file::bind_int(m_add, 6, now_ms());
    m_file.step_done(m_add, "hold");
  }

  std::optional<held_record> head(std::string_view group, std::string_view topic, std::string_view key) override {
    std::lock_guard lock(m_mutex);
    bind_ident(m_lapse_stmt, group, topic, key);
    sqlite_file::bind_int(m_lapse_stmt, 4, now_ms() - m_lapse.count());
    m_file.step_done(m_lapse_stmt, "hold lapse");
    bind_ident(m_head, group, topic, key);
    const int rc = sqlite3_step(m_head.get());
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) m_file.fail(rc, m_head, "hold head");
    std::optional<held_record> out;
    if (rc == SQLITE_ROW) {
      out = held_record{static_cast<std::int32_t>(sqlite3_column_int(m_head.get(), 0)),
                        sqlite3_column_int64(m_head.get(), 1)};
    }
    sqlite3_reset(m_head.get());
    sqlite3_clear_bindings(m_head.get());
    return out;
  }

  void remove(std::string_view group, std::string_view topic, std::string_view key, held_record r) override {
    std::lock_guard lock(m_mutex);
    bind_ident(m_remove, group, topic, key);
    sqlite_file::bind_int(m_remove, 4, r.partition);
    sqlite_file::bind_int(m_remove, 5, r.offset);
    m_file.step_done(m_remove, "hold release");
  }

 private:
  static void bind_ident(statement& s, std::string_view group, std::string_view topic, std::string_view key) {
    sqlite_file::bind_text(s, 1, group);
    sqlite_file::bind_text(s, 2, topic);
    sqlite_file::bind_blob(s, 3, key);
  }

  std::mutex m_mutex;
  sqlite_file m_file;
  std::chrono::milliseconds m_lapse;
  statement m_add;
  statement m_lapse_stmt;
  statement m_head;
  statement m_remove;
};

}  // namespace

std::unique_ptr<store> make_sqlite_store(sqlite_options options) {
  return std::make_unique<sqlite_store>(std::move(options));
}

std::unique_ptr<key_holds> make_sqlite_key_holds(const sqlite_options& options, std::chrono::milliseconds lapse) {
  return std::make_unique<sqlite_key_holds>(options, lapse);
}

}  // namespace outbox::dedupe
