#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::ctl {

/// One Kafka header; a null value stays distinct from an empty one.
struct header {
  std::string name;
  std::optional<std::string> value;
};

/// A record read from a dead-letter topic, copied out of librdkafka.
struct dlq_record {
  int partition = 0;
  std::int64_t offset = 0;
  std::int64_t timestamp_ms = -1;  ///< the DLQ record's own timestamp (when it was dead-lettered)
  std::optional<std::string> key;
  std::optional<std::string> value;
  std::vector<header> headers;

  /// The first header called `name` with a non-null value.
  [[nodiscard]] std::optional<std::string> find(std::string_view name) const;
};

/// Which stack wrote a dead letter, told apart by its bookkeeping headers: the consumer SDK (`dlq_*`), the relay
/// (`outbox_dlq_*`, a row or envelope it could not publish), Spring Kafka or Kafka Connect.
enum class dlq_format { outbox, relay, spring, connect, unknown };
std::string_view to_string(dlq_format f) noexcept;

/// What a dead letter says about where it came from and why it failed, whichever stack wrote it.
struct dlq_origin {
  dlq_format format = dlq_format::unknown;
  std::optional<std::string> topic;
  std::optional<std::int64_t> partition;
  std::optional<std::int64_t> offset;
  std::optional<std::int64_t> timestamp_ms;
  std::optional<std::string> consumer_group;
  std::optional<std::string> event_id;  ///< the record's `event_id` header
  std::optional<std::string> error_class;
  std::optional<std::string> error_message;
  std::optional<std::int64_t> attempts;
  std::optional<std::int64_t> first_failure_ms;
  std::optional<std::int64_t> last_failure_ms;
  std::int64_t replay_count = 0;  ///< dlq_replay_count, 0 when absent
  // A relay dead letter only (then `topic` is where the record was going, and `error_class` the reason).
  std::optional<std::string> source_table;  ///< outbox_dlq_table
  std::optional<std::string> source_lsn;    ///< outbox_dlq_lsn, the commit LSN
  std::optional<std::string> value_kind;    ///< outbox_dlq_value_kind: record, row or envelope
  bool truncated = false;                   ///< outbox_dlq_truncated: the value was cut
};

/// Reads the SDK's `dlq_*` headers, else the relay's `outbox_dlq_*`, else Spring Kafka's `kafka_dlt-*`, else Kafka
/// Connect's `__connect.errors.*`.
dlq_origin interpret(const dlq_record& r);

/// Why a dead letter cannot be replayed as it is (a relay dead letter of a row or an envelope, or of a record whose
/// value was cut), or nullopt when it can.
std::optional<std::string> not_replayable(const dlq_origin& o);

/// The headers a replayed record carries: the originals in order without the dead-letter and retry
/// bookkeeping (our `dlq_*` and `retry_*` names, `kafka_dlt-*`, `__connect.errors.*`), plus `dlq_replay_count`.
/// With `to_replay_topic` (a consumer group's replay topic) also where the record first arrived and for which
/// group (record_format::retry_copy's origin headers), so that group runs it as the original.
std::vector<header> replay_headers(const dlq_record& r, const dlq_origin& o, bool to_replay_topic);

/// When the event first arrived (the original record's timestamp, or the dead letter's own when unknown).
std::int64_t first_seen_ms(const dlq_record& r, const dlq_origin& o);

/// An integer header value: decimal text, or Spring's big-endian binary (4 bytes int, 8 bytes long).
std::optional<std::int64_t> header_number(std::string_view raw);

/// The `dlq list` / `dlq replay` filters.
struct dlq_filter {
  std::optional<std::int64_t> since_ms;  ///< inclusive
  std::optional<std::int64_t> until_ms;  ///< exclusive
  std::optional<std::string> key;
  std::optional<std::string> error_contains;
  std::optional<std::string> event_id;
  std::optional<int> partition;        ///< of the dead-letter topic
  std::optional<std::int64_t> offset;  ///< in that partition

  [[nodiscard]] bool matches(const dlq_record& r) const;
};

/// A point in time for --since/--until: RFC 3339 (`2026-11-23T10:00:00Z`, `...+02:00`, fractions) or a
/// duration ago (`90s`, `15m`, `2h`, `7d`, at most 100 years). Milliseconds since the epoch; nullopt when
/// unparseable or out of range.
std::optional<std::int64_t> parse_time(std::string_view text, std::chrono::system_clock::time_point now);

/// A duration such as `90s`, `15m`, `2h`, `7d` in milliseconds (at most 100 years); nullopt when unparseable.
std::optional<std::int64_t> parse_duration(std::string_view text);

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
std::string format_time(std::int64_t ms);

/// Standard base64 with padding.
std::string base64(std::string_view bytes);

/// `s` made safe for one line of a terminal table: control characters escaped, cut to `max` characters.
std::string printable(std::string_view s, std::size_t max);

}  // namespace outbox::ctl
