#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct pg_conn;
struct pg_result;

namespace outbox::relay {

/// libpq connection parameters: the user's DSN (key=value string or URI), plus what the relay adds. A value the
/// DSN already sets wins over set_default(); set() and add_option() win over the DSN.
class conn_params {
 public:
  /// Parses `dsn`; throws outbox_error("config") saying what is wrong (never quoting a password).
  static conn_params parse(std::string_view dsn);

  void set(std::string key, std::string value);
  void set_default(std::string key, std::string value);
  /// Appends `-c name=value` to libpq's `options` (server settings for the session).
  void add_option(std::string_view name, std::string_view value);
  [[nodiscard]] std::optional<std::string> get(std::string_view key) const;

  /// The DSN as the user wrote it, with the password hidden: for messages.
  [[nodiscard]] std::string describe() const;

  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& entries() const noexcept { return m_entries; }

 private:
  std::vector<std::pair<std::string, std::string>> m_entries;
  std::string m_original;
};

/// One query result; rows and fields as text views valid while the result lives.
class pg_rows {
 public:
  pg_rows() = default;
  explicit pg_rows(pg_result* r) noexcept;
  pg_rows(pg_rows&& o) noexcept;
  pg_rows& operator=(pg_rows&& o) noexcept;
  pg_rows(const pg_rows&) = delete;
  pg_rows& operator=(const pg_rows&) = delete;
  ~pg_rows();

  [[nodiscard]] int size() const noexcept;
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }
  [[nodiscard]] int columns() const noexcept;
  [[nodiscard]] bool is_null(int row, int col) const noexcept;
  /// The value as text ("" for NULL).
  [[nodiscard]] std::string_view text(int row, int col) const noexcept;
  /// The value, or nullopt for NULL.
  [[nodiscard]] std::optional<std::string> value(int row, int col) const;
  [[nodiscard]] bool boolean(int row, int col) const noexcept { return text(row, col) == "t"; }
  /// The command tag's row count (INSERT/UPDATE/DELETE), 0 if none.
  [[nodiscard]] long long affected() const noexcept;

 private:
  pg_result* m_res = nullptr;
};

/// One PostgreSQL connection (libpq) whose connect and queries never block longer than their timeouts and can be
/// abandoned from another thread: every wait polls the socket in short slices and checks `abandon()`.
/// Used by one thread at a time; abandon() may be called from any thread.
class pg_session {
 public:
  /// `what` names the connection in errors ("side connection", "replication connection").
  pg_session(conn_params params, std::string what);
  ~pg_session();
  pg_session(const pg_session&) = delete;
  pg_session& operator=(const pg_session&) = delete;

  /// Connects; throws outbox_error("source") with PostgreSQL's reason and the redacted DSN: fatal for a refused
  /// login, retryable otherwise. `timeout` bounds the whole attempt.
  void connect(std::chrono::milliseconds timeout);
  [[nodiscard]] bool connected() const noexcept { return m_conn != nullptr; }
  void close() noexcept;

  /// Runs one statement; throws outbox_error("source") classified by SQLSTATE (a broken connection or an
  /// abandoned wait: retryable, and the connection is closed).
  pg_rows exec(std::string_view sql);
  /// Runs one statement with text parameters ($1, $2, ...; nullopt is NULL).
  pg_rows exec(std::string_view sql, const std::vector<std::optional<std::string>>& params);

  /// Makes the current and every later wait fail at once (from any thread); the session is then unusable.
  void abandon() noexcept;
  /// Also gives up whenever `*flag` is true (a flag shared by every session of one task).
  void abandon_with(const std::atomic<bool>* flag) noexcept { m_also = flag; }
  [[nodiscard]] bool abandoned() const noexcept { return m_abandoned.load() || (m_also != nullptr && m_also->load()); }

  [[nodiscard]] int server_version() const noexcept;  ///< e.g. 150004; 0 when not connected
  [[nodiscard]] std::string quote_ident(std::string_view name) const;
  [[nodiscard]] std::string quote_literal(std::string_view text) const;
  [[nodiscard]] const conn_params& params() const noexcept { return m_params; }

  /// The raw connection, for the replication protocol (streaming uses it without blocking waits).
  [[nodiscard]] pg_conn* raw() const noexcept { return m_conn; }

 private:
  /// Waits until the socket is readable (or writable) or the session is abandoned; false when abandoned.
  bool wait_socket(bool for_write, std::chrono::steady_clock::time_point deadline);
  pg_rows finish_query(std::string_view sql);
  [[noreturn]] void broken(const std::string& what);

  conn_params m_params;
  std::string m_what;
  pg_conn* m_conn = nullptr;
  std::atomic<bool> m_abandoned{false};
  const std::atomic<bool>* m_also = nullptr;
};

/// `a.b` quoted as an identifier pair.
std::string quote_qualified(const pg_session& s, std::string_view schema, std::string_view table);

}  // namespace outbox::relay
