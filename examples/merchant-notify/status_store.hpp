#pragma once
// The status table: every write and read of `notify.table`, in one place.

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace outbox::notify {

/// The stored row a resend needs.
struct stored_notification {
  std::string event_id;
  std::string merchant;
  std::string status;
  std::string url;
  std::string body;
};

/// Reads and writes the status table `table` (a plain or schema-qualified name, checked by the constructor).
class status_store {
 public:
  status_store(std::string dsn, std::string table);

  /// Creates the table and its index when missing (the statements of schema.sql).
  void create_if_missing();

  /// On its own connection, committed at once: an attempt is going out (status delivering, attempts + 1).
  void begin_attempt(const std::string& event_id, const std::string& merchant, const std::string& url,
                     const std::string& body);
  /// On its own connection: an attempt sent nothing (the merchant's circuit is open or it is at its limit).
  void skipped(const std::string& event_id, const std::string& merchant, const std::string& url,
               const std::string& body, const std::string& why, std::optional<std::chrono::milliseconds> next_attempt);
  /// On its own connection: the attempt failed and another is due around `next_attempt` (status pending).
  void attempt_failed(const std::string& event_id, long http_status, const std::string& error,
                      std::optional<std::chrono::milliseconds> next_attempt);
  /// In the inbox transaction: delivered (commits with the inbox row). Returns the seconds since the row was
  /// created (the first attempt), or a negative number when there is no row.
  double delivered(pqxx::work& tx, const std::string& event_id, long http_status) const;
  /// In the dead-letter transaction: failed for good (commits with the recorded dead letter).
  void failed(pqxx::work& tx, const std::string& event_id, const std::string& merchant, const std::string& error) const;
  /// After a manual resend, on its own connection.
  void resent(const std::string& event_id, bool ok, long http_status, const std::string& error);

  /// One row as JSON, or nullopt.
  std::optional<nlohmann::json> find(const std::string& event_id);
  /// The newest `limit` rows matching the filters (empty = any), as JSON.
  nlohmann::json list(const std::string& merchant, const std::string& status, int limit);
  /// What a resend needs, or nullopt.
  std::optional<stored_notification> for_resend(const std::string& event_id);

 private:
  /// Runs `fn` on a pooled connection in its own transaction; a broken connection is dropped, not returned.
  template <typename Fn>
  auto with_connection(Fn&& fn);

  std::string m_dsn;
  std::string m_table;
  std::mutex m_mutex;
  std::vector<std::unique_ptr<pqxx::connection>> m_idle;
};

}  // namespace outbox::notify
