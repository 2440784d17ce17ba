#pragma once

#include "outbox/base/error.hpp"
#include "outbox/config/relay_config.hpp"
#include "outbox/relay/pg_session.hpp"
#include "outbox/relay/pgoutput_decoder.hpp"
#include "outbox/relay/source_setup.hpp"

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace outbox::relay {

/// Which rows a backfill reads.
struct backfill_spec {
  std::vector<std::size_t> tables;  ///< indexes into source.tables
  std::string import_snapshot;      ///< an exported snapshot to import ("" = a fresh REPEATABLE READ snapshot)
  std::string visible_in;           ///< pg_snapshot text: only rows whose inserting transaction it sees ("" = all)
  bool commit_timestamps = false;   ///< track_commit_timestamp is on: order by commit time first
};

/// One batch of rows of one table, as text, with the relation they belong to.
struct backfill_batch {
  std::size_t table = 0;
  std::shared_ptr<const relation> rel;
  pg_rows rows;       ///< the published columns in order, then xmin, then the commit time in Unix ms (or NULL)
  bool last = false;  ///< no rows follow in any table
};

/// Reads the outbox rows visible in one snapshot, table by table and per table in commit order (by commit time
/// when track_commit_timestamp is on, else by transaction id: the order of transactions that serialize on their
/// aggregate), through a server-side cursor, one batch per request: memory stays bounded whatever the table's size.
/// Runs on a thread of its own with its own session (a long REPEATABLE READ transaction).
class backfill_reader {
 public:
  using batch_handler = std::function<void(backfill_batch)>;
  using error_handler = std::function<void(const outbox_error&)>;

  /// Starts the thread: connects, opens the snapshot, declares the first cursor, and reads the first batch.
  backfill_reader(conn_params params, std::chrono::milliseconds connect_timeout, const config::relay_config& c,
                  std::vector<table_facts> facts, backfill_spec spec, std::size_t batch_rows, batch_handler on_batch,
                  error_handler on_error);
  ~backfill_reader();
  backfill_reader(const backfill_reader&) = delete;
  backfill_reader& operator=(const backfill_reader&) = delete;

  /// Asks for the next batch (after the loop took the previous one).
  void request();
  /// Abandons the session and joins the thread.
  void stop() noexcept;

 private:
  void run();
  void open_table(std::size_t i);

  pg_session m_session;
  std::chrono::milliseconds m_connect_timeout;
  const config::relay_config& m_config;
  std::vector<table_facts> m_facts;
  backfill_spec m_spec;
  std::size_t m_batch_rows;
  batch_handler m_on_batch;
  error_handler m_on_error;
  std::mutex m_mutex;
  std::condition_variable m_wake;
  int m_requests = 1;
  bool m_stopping = false;
  std::thread m_thread;
};

}  // namespace outbox::relay
