#pragma once

#include "outbox/relay/lsn.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

namespace outbox::relay {

/// XLogData ('w'): a chunk of the replication stream; `payload` points into the parsed buffer.
struct xlog_data {
  lsn_t wal_start;
  lsn_t wal_end;
  std::int64_t send_time_us;
  std::string_view payload;
};

/// Primary keepalive ('k'): the server's WAL end and whether it wants a status update now.
struct primary_keepalive {
  lsn_t wal_end;
  std::int64_t send_time_us;
  bool reply_requested;
};

/// A message the server sends inside START_REPLICATION's CopyBoth stream.
using server_message = std::variant<xlog_data, primary_keepalive>;

/// Parses one CopyData message; throws outbox_error("replication") when it is short or of unknown type.
server_message parse_server_message(std::string_view copy_data);

/// Builds a standby status update ('r', 34 bytes) reporting the written, flushed and applied LSNs.
std::string make_standby_status_update(lsn_t written, lsn_t flushed, lsn_t applied, std::int64_t now_pg_us,
                                       bool reply_requested);

/// Microseconds since 2000-01-01 00:00 UTC, the epoch of the replication protocol's timestamps.
std::int64_t to_pg_epoch_us(std::chrono::system_clock::time_point tp);

/// The inverse of to_pg_epoch_us.
std::chrono::system_clock::time_point from_pg_epoch_us(std::int64_t us);

}  // namespace outbox::relay
