#pragma once

#include "outbox/config/relay_config.hpp"
#include "outbox/relay/pg_session.hpp"

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace outbox::relay {

/// Ids of one table to delete in one statement.
struct delete_batch {
  std::size_t table = 0;
  std::vector<std::string> ids;
};

/// The rows of `delete_after_publish` tables between being handed to Kafka and being deleted. A row is queued for
/// its delete only once Kafka acknowledged it; one batch is out at a time; a failed batch goes back to the front and
/// is retried later. backlog() counts everything held, so the relay can stop reading before memory grows unbounded.
class published_rows {
 public:
  explicit published_rows(std::size_t tables);

  /// A row of a delete_after_publish table was produced as `event_id`.
  void remember(std::uint64_t event_id, std::size_t table, std::string_view row_id);
  /// Kafka acknowledged `event_id`: its row may be deleted.
  void acked(std::uint64_t event_id);
  /// Forgets rows whose records were never acknowledged (they are republished after a restart and remembered again).
  void forget_unacked();

  /// The next batch, when one is due: `force` (a timer, shutdown) takes whatever is queued, otherwise only a full
  /// batch. Nothing while a batch is out.
  std::optional<delete_batch> take_batch(bool force, std::size_t batch_size);
  /// The batch that was out succeeded (its ids are gone) or failed (they are queued again, first).
  void batch_done(bool ok);

  [[nodiscard]] std::size_t backlog() const noexcept;
  [[nodiscard]] bool batch_out() const noexcept { return m_out.has_value(); }

 private:
  struct pending {
    std::size_t table;
    std::string id;
  };
  std::unordered_map<std::uint64_t, pending> m_remembered;
  std::vector<std::deque<std::string>> m_queued;  ///< per table
  std::size_t m_queued_count = 0;
  std::optional<delete_batch> m_out;
};

/// Deletes `ids` from table `t` whose id column has SQL type `id_type` (one statement, `id = ANY($1)`).
void delete_rows(pg_session& s, const config::table_source& t, std::string_view id_type,
                 const std::vector<std::string>& ids);

}  // namespace outbox::relay
