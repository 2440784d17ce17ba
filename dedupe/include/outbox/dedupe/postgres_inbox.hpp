#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace pqxx {
class transaction_base;
}  // namespace pqxx

namespace outbox::dedupe {

/// The PostgreSQL inbox: joins the handler's own transaction, so the inbox row and the business effect commit together.
class postgres_inbox {
 public:
  /// The inbox table (optionally schema-qualified) and how long its rows are kept.
  struct options {
    std::string table = "outbox_inbox";
    std::chrono::milliseconds retention;
  };

  /// Creates the table if missing (own connection), and its index on processed_at.
  postgres_inbox(std::string dsn, options opts);
  ~postgres_inbox();
  postgres_inbox(postgres_inbox&&) noexcept;
  postgres_inbox& operator=(postgres_inbox&&) noexcept;
  postgres_inbox(const postgres_inbox&) = delete;
  postgres_inbox& operator=(const postgres_inbox&) = delete;

  /// Inserts (group, event_id) in `tx`; false when it already exists (already done: the caller skips the effect
  /// and commits nothing else). A bad event id (record_format::event_id_problem) throws a fatal outbox_error.
  bool claim_in(pqxx::transaction_base& tx, std::string_view group, std::string_view event_id);
  /// Whether `tx` still sees the row claim_in inserted: false, or an error, means the transaction was rolled back
  /// or aborted behind the caller's back (a handler that caught an SQL error), so committing would lose the event.
  bool still_claimed_in(pqxx::transaction_base& tx, std::string_view group, std::string_view event_id);
  /// Retention cleanup in bounded batches on its own connection; returns rows deleted.
  std::size_t cleanup(std::size_t limit);
  /// The table name as given in the options.
  const std::string& table() const;
  /// How long rows are kept.
  std::chrono::milliseconds retention() const;

 private:
  struct impl;
  std::unique_ptr<impl> m_impl;
};

}  // namespace outbox::dedupe
