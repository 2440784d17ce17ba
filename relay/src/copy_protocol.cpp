#include "outbox/relay/copy_protocol.hpp"

#include "outbox/base/error.hpp"

#include <cstdio>

namespace outbox::relay {

namespace {

constexpr std::size_t xlog_header_size = 1 + 8 + 8 + 8;
constexpr std::size_t keepalive_size = 1 + 8 + 8 + 1;
constexpr std::size_t status_update_size = 1 + 8 + 8 + 8 + 8 + 1;

/// 2000-01-01 00:00 UTC in microseconds since the Unix epoch.
constexpr std::int64_t pg_epoch_offset_us = 946'684'800LL * 1'000'000LL;

std::uint64_t read_u64(std::string_view data, std::size_t pos) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8U) | static_cast<unsigned char>(data[pos + i]);
  return v;
}

void append_u64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xFFU));
}

std::string describe_tag(char tag) {
  char buf[16];
  const auto byte = static_cast<unsigned char>(tag);
  const int n = byte >= 0x20 && byte < 0x7F ? std::snprintf(buf, sizeof buf, "'%c'", tag)
                                            : std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned>(byte));
  return std::string(buf, static_cast<std::size_t>(n));
}

[[noreturn]] void throw_short(char tag, std::size_t size, std::size_t needed) {
  throw outbox_error("replication", "replication message " + describe_tag(tag) + " is " + std::to_string(size) +
                                        " bytes, shorter than its " + std::to_string(needed) +
                                        "-byte header; the relay stops rather than guess at the stream");
}

}  // namespace

server_message parse_server_message(std::string_view copy_data) {
  if (copy_data.empty()) {
    throw outbox_error("replication", "empty CopyData message in the replication stream; the relay stops");
  }
  const char tag = copy_data[0];
  switch (tag) {
    case 'w': {
      if (copy_data.size() < xlog_header_size) throw_short(tag, copy_data.size(), xlog_header_size);
      return xlog_data{read_u64(copy_data, 1), read_u64(copy_data, 9),
                       static_cast<std::int64_t>(read_u64(copy_data, 17)), copy_data.substr(xlog_header_size)};
    }
    case 'k': {
      if (copy_data.size() < keepalive_size) throw_short(tag, copy_data.size(), keepalive_size);
      return primary_keepalive{read_u64(copy_data, 1), static_cast<std::int64_t>(read_u64(copy_data, 9)),
                               copy_data[17] != 0};
    }
    default:
      throw outbox_error("replication", "unknown replication message type " + describe_tag(tag) +
                                            " (expected 'w' or 'k'); the relay stops rather than skip data");
  }
}

std::string make_standby_status_update(lsn_t written, lsn_t flushed, lsn_t applied, std::int64_t now_pg_us,
                                       bool reply_requested) {
  std::string out;
  out.reserve(status_update_size);
  out.push_back('r');
  append_u64(out, written);
  append_u64(out, flushed);
  append_u64(out, applied);
  append_u64(out, static_cast<std::uint64_t>(now_pg_us));
  out.push_back(reply_requested ? '\1' : '\0');
  return out;
}

std::int64_t to_pg_epoch_us(std::chrono::system_clock::time_point tp) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(tp.time_since_epoch()).count();
  return us - pg_epoch_offset_us;
}

std::chrono::system_clock::time_point from_pg_epoch_us(std::int64_t us) {
  using clock = std::chrono::system_clock;
  using std::chrono::microseconds;
  constexpr auto max_unix = std::chrono::duration_cast<microseconds>(clock::duration::max());
  constexpr auto min_unix = std::chrono::duration_cast<microseconds>(clock::duration::min());
  if (us > max_unix.count() - pg_epoch_offset_us) return clock::time_point::max();
  const auto unix_us = microseconds(us + pg_epoch_offset_us);
  if (unix_us < min_unix) return clock::time_point::min();
  return clock::time_point(std::chrono::duration_cast<clock::duration>(unix_us));
}

}  // namespace outbox::relay
