#pragma once

#include "outbox/relay/lsn.hpp"

#include <string>
#include <string_view>

struct pg_conn;

namespace outbox::relay {

/// What IDENTIFY_SYSTEM answered.
struct system_identity {
  std::string system_id;
  int timeline = 0;
  lsn_t wal_position = 0;
  std::string database;
};

/// One libpq replication connection (`replication=database`) streaming a pgoutput slot.
/// Owned and used by the relay's event-loop thread only.
class replication_stream {
 public:
  explicit replication_stream(std::string dsn);
  ~replication_stream();
  replication_stream(const replication_stream&) = delete;
  replication_stream& operator=(const replication_stream&) = delete;

  /// Connects and runs IDENTIFY_SYSTEM. Throws outbox_error, retryable when the server is unreachable.
  system_identity connect();
  /// START_REPLICATION of `slot` from `from` with pgoutput v1, the publication and logical messages.
  void start(std::string_view slot, std::string_view publication, lsn_t from);

  /// The socket to watch for readability; -1 when not connected.
  [[nodiscard]] int socket() const;

  enum class read_result { message, would_block, ended };
  /// Reads one CopyData message without blocking; `out` stays valid until the next call.
  /// Throws outbox_error (retryable) when the connection breaks.
  read_result read(std::string_view& out);

  /// Sends a standby status update: WAL received up to `written`, safe to discard up to `flushed`.
  void send_status(lsn_t written, lsn_t flushed, bool reply_requested = false);

  /// Closes the connection (idempotent).
  void close();

 private:
  void free_buffer();

  std::string m_dsn;
  pg_conn* m_conn = nullptr;
  char* m_buffer = nullptr;
};

}  // namespace outbox::relay
