#pragma once

#include "outbox/relay/copy_protocol.hpp"
#include "outbox/relay/lsn.hpp"
#include "outbox/relay/pg_session.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace outbox::relay {

/// What IDENTIFY_SYSTEM answered.
struct system_identity {
  std::string system_id;
  int timeline = 0;
  lsn_t wal_position = 0;
  std::string database;
};

/// The advisory lock class of the leader lock ("OBRX"); its object id is leader_lock_key(slot).
inline constexpr std::int32_t k_leader_lock_class = 0x4F425258;
/// The leader lock's object id for `slot`: a stable 31-bit hash (FNV-1a) of the slot name.
std::int32_t leader_lock_key(std::string_view slot);

/// A slot CREATE_REPLICATION_SLOT made: where it starts, and the exported snapshot when one was asked for.
struct created_slot {
  lsn_t consistent_point = 0;
  std::string snapshot_name;  ///< empty without EXPORT_SNAPSHOT
};

/// One replication connection (`replication=database`) streaming a pgoutput slot. Connecting, creating the slot
/// and START_REPLICATION may run on any one thread (they wait, abandonably); streaming reads never block.
class replication_stream {
 public:
  explicit replication_stream(conn_params params);
  ~replication_stream();
  replication_stream(const replication_stream&) = delete;
  replication_stream& operator=(const replication_stream&) = delete;

  /// Connects and runs IDENTIFY_SYSTEM. Throws outbox_error, retryable when the server is unreachable.
  system_identity connect(std::chrono::milliseconds timeout);
  /// CREATE_REPLICATION_SLOT `slot` LOGICAL pgoutput, exporting a snapshot when asked (the connection must then
  /// stay idle until the snapshot is imported), as a failover slot when asked (PostgreSQL 17+).
  created_slot create_slot(std::string_view slot, bool export_snapshot, bool failover);
  /// Tries to take the leader lock `key` (a session advisory lock, classid k_leader_lock_class) on this
  /// connection, so that it ends with the stream: a relay that crashes, or that the server drops after
  /// wal_sender_timeout, loses it. False when another session holds it.
  bool try_leader_lock(std::int32_t key);
  /// Who holds the leader lock `key` (pid, application name, client address, since), for the standby's log; empty
  /// when no one does or it is not visible to this role.
  std::string leader_lock_holder(std::int32_t key);
  /// START_REPLICATION of `slot` from `from` with pgoutput v1 and the publication; logical messages only when
  /// `messages` (PostgreSQL then decodes and ships every message of the database).
  void start(std::string_view slot, std::string_view publication, lsn_t from, bool messages);

  /// The socket to watch for readability; -1 when not connected.
  [[nodiscard]] int socket() const;
  [[nodiscard]] int server_version() const noexcept { return m_session.server_version(); }

  enum class read_result { message, would_block, ended };
  /// Reads and parses one CopyData message without blocking; `out` (and the views inside it) stay valid until
  /// the next call. Throws outbox_error (retryable) when the connection breaks.
  read_result read(server_message& out);

  /// Sends a standby status update: WAL received up to `written`, safe to discard up to `flushed`;
  /// `reply_requested` asks the server to answer at once (the liveness probe).
  void send_status(lsn_t written, lsn_t flushed, bool reply_requested = false);

  /// Makes a connect or slot creation in progress on another thread give up.
  void abandon() noexcept { m_session.abandon(); }
  void abandon_with(const std::atomic<bool>* flag) noexcept { m_session.abandon_with(flag); }
  /// Ends the stream cleanly: flushes what is queued (the last status update), ends the copy and waits, at most
  /// `timeout`, until the server has answered, so that it has processed the last confirmed LSN before the
  /// connection goes; then closes.
  void finish(std::chrono::milliseconds timeout);
  /// Closes the connection (idempotent).
  void close();

 private:
  void free_buffer();

  pg_session m_session;
  char* m_buffer = nullptr;
};

}  // namespace outbox::relay
