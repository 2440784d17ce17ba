#pragma once
// The two sides verify and reconcile read the outbox from: its tables (through a cursor) and its topics (by time).

#include "outbox/ctl/verify.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/relay/pg_session.hpp"
#include "outbox/relay/topic_template.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::ctl::detail {

inline constexpr std::chrono::milliseconds k_request_timeout{10'000};

/// A read-only session on `dsn` in one REPEATABLE READ snapshot, named `application_name`; throws verify_failure.
std::unique_ptr<relay::pg_session> open_snapshot(const std::string& dsn, const std::string& application_name);

/// The rows of every table in the window [since_ms, until_ms) of `o`, read through a cursor in one snapshot, as
/// many times as needed.
class row_source {
 public:
  row_source(const verify_options& o, relay::pg_session& s) : m_o(o), m_s(s) {}

  /// Calls fn(table index, id, topic, written_ms) for every row of the window.
  void scan(const relay::topic_template& tmpl,
            const std::function<void(std::size_t, std::string_view, const std::string&, std::int64_t)>& fn);

 private:
  const verify_options& m_o;
  relay::pg_session& m_s;
};

/// One partition's range to read: [start, end).
struct partition_range {
  std::int32_t partition = 0;
  std::int64_t start = 0;
  std::int64_t end = 0;
};

/// Reads topics with a plain assign()-based consumer (no group, no commits) on `o.brokers`.
class record_source {
 public:
  explicit record_source(const verify_options& o);

  /// The ranges of `topic` from the first record at or after `from_ms` to the current end; empty when the topic does
  /// not exist.
  std::vector<partition_range> ranges(const std::string& topic, std::int64_t from_ms);

  /// Calls fn(event_id, timestamp_ms) for every record of the ranges (records without an event_id give "").
  void read(const std::string& topic, const std::vector<partition_range>& ranges,
            const std::function<void(std::string_view, std::int64_t)>& fn);

 private:
  [[noreturn]] void fail(const std::string& what, rd_kafka_resp_err_t err);

  const verify_options& m_o;
  std::string m_last_error;
  kafka::client_ptr m_rk;
};

}  // namespace outbox::ctl::detail
