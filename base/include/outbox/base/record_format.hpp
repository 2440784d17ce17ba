#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

/// What a Kafka record of this project carries, declared once and used by the relay, the consumer SDK and
/// outboxctl: the headers the relay sets (SPEC §3), the bookkeeping of retry-tier copies and dead letters
/// (SPEC §5), their error classes, and the names of the topics the SDK derives from a source topic.
namespace outbox::record_format {

// The relay's headers, in the order it writes them (the row's own headers come between aggregate_type and
// outbox_lsn).
inline constexpr std::string_view k_event_id = "event_id";
inline constexpr std::string_view k_event_type = "event_type";
inline constexpr std::string_view k_aggregate_type = "aggregate_type";
inline constexpr std::string_view k_outbox_lsn = "outbox_lsn";
inline constexpr std::string_view k_outbox_xid = "outbox_xid";
inline constexpr std::string_view k_outbox_commit_ts_ms = "outbox_commit_ts_ms";
inline constexpr std::string_view k_outbox_table = "outbox_table";

// A retry-tier copy (and a replayed record on a group's replay topic).
inline constexpr std::string_view k_retry_attempt = "retry_attempt";
inline constexpr std::string_view k_retry_due_ms = "retry_due_ms";
inline constexpr std::string_view k_retry_original_topic = "retry_original_topic";
inline constexpr std::string_view k_retry_original_partition = "retry_original_partition";
inline constexpr std::string_view k_retry_original_offset = "retry_original_offset";
inline constexpr std::string_view k_retry_original_timestamp_ms = "retry_original_timestamp_ms";
inline constexpr std::string_view k_retry_first_failure_ms = "retry_first_failure_ms";
inline constexpr std::string_view k_retry_reason = "retry_reason";
inline constexpr std::string_view k_retry_consumer_group = "retry_consumer_group";
inline constexpr std::string_view k_retry_tier = "retry_tier";

// A dead letter.
inline constexpr std::string_view k_dlq_original_topic = "dlq_original_topic";
inline constexpr std::string_view k_dlq_original_partition = "dlq_original_partition";
inline constexpr std::string_view k_dlq_original_offset = "dlq_original_offset";
inline constexpr std::string_view k_dlq_original_timestamp_ms = "dlq_original_timestamp_ms";
inline constexpr std::string_view k_dlq_consumer_group = "dlq_consumer_group";
inline constexpr std::string_view k_dlq_error_class = "dlq_error_class";
inline constexpr std::string_view k_dlq_error_message = "dlq_error_message";
inline constexpr std::string_view k_dlq_attempts = "dlq_attempts";
inline constexpr std::string_view k_dlq_first_failure_ms = "dlq_first_failure_ms";
inline constexpr std::string_view k_dlq_last_failure_ms = "dlq_last_failure_ms";
/// Added by `outboxctl dlq replay`: how often the record was replayed; kept through later dead letters.
inline constexpr std::string_view k_dlq_replay_count = "dlq_replay_count";

// A relay dead letter (`sink.on_invalid_record: dead_letter`): a row or envelope the relay could not publish.
inline constexpr std::string_view k_relay_dlq_reason = "outbox_dlq_reason";  ///< stable code, e.g. bad_topic
inline constexpr std::string_view k_relay_dlq_error = "outbox_dlq_error";    ///< the message, at most 1 KiB
inline constexpr std::string_view k_relay_dlq_table = "outbox_dlq_table";    ///< schema.table or message:<prefix>
inline constexpr std::string_view k_relay_dlq_lsn = "outbox_dlq_lsn";        ///< commit LSN, X/XXXXXXXX
inline constexpr std::string_view k_relay_dlq_xid = "outbox_dlq_xid";
inline constexpr std::string_view k_relay_dlq_column = "outbox_dlq_column";  ///< column or envelope field at fault
inline constexpr std::string_view k_relay_dlq_topic = "outbox_dlq_topic";    ///< where the record was going
inline constexpr std::string_view k_relay_dlq_value_kind = "outbox_dlq_value_kind";  ///< record | row | envelope
inline constexpr std::string_view k_relay_dlq_truncated = "outbox_dlq_truncated";    ///< "true" when cut
/// `outbox_dlq_value_kind`: the record as built (its key, headers and value), the raw row, or the envelope.
inline constexpr std::string_view k_relay_kind_record = "record";
inline constexpr std::string_view k_relay_kind_row = "row";
inline constexpr std::string_view k_relay_kind_envelope = "envelope";

// `dlq_error_class` values.
inline constexpr std::string_view k_class_fatal = "fatal";
inline constexpr std::string_view k_class_deserialization = "deserialization";
inline constexpr std::string_view k_class_retry_exhausted = "retry_exhausted";
inline constexpr std::string_view k_class_missing_event_id = "missing_event_id";
inline constexpr std::string_view k_class_bad_event_id = "bad_event_id";
/// Kafka refused the retry-tier copy for good (too large, not authorized): dead-lettered instead.
inline constexpr std::string_view k_class_retry_refused = "retry_refused";

/// Error texts in retry copies and dead letters are cut to this many bytes.
inline constexpr std::size_t k_max_error_message = 1024;
/// The longest event id a dedupe store accepts.
inline constexpr std::size_t k_max_event_id = 1024;

/// The default dead-letter topic template: `{topic}` and `{group}` are filled in.
inline constexpr std::string_view k_default_dead_letter_template = "{topic}.{group}.dlq";

/// One header as read back; the value is nullopt for a null header.
using header_lookup = std::function<std::optional<std::string_view>(std::string_view name)>;
/// Header name/value pairs to append to a copy.
using header_pairs = std::vector<std::pair<std::string, std::string>>;

/// Where a record first arrived, before any retry tier or dead-letter topic.
struct origin {
  std::string topic;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
  std::int64_t timestamp_ms = -1;
};

/// The bookkeeping of a retry-tier copy: which group parked it, where it came from, which tier entry it
/// waits for, and how it failed so far.
struct retry_copy {
  origin from;
  std::string consumer_group;
  int tier = 0;               ///< index into the group's `retry.topics`
  std::int64_t attempts = 0;  ///< handler attempts before this copy was parked
  std::int64_t due_ms = 0;    ///< when the copy should run (Unix ms)
  std::int64_t first_failure_ms = 0;
  std::string reason;  ///< the last failure, cut to k_max_error_message

  /// The `retry_*` headers, to append after the record's own.
  [[nodiscard]] header_pairs headers() const;
  /// Reads the `retry_*` headers; a missing or unreadable field keeps its default (`tier` -1 when absent).
  static retry_copy read(const header_lookup& find);
};

/// The bookkeeping of a dead letter (SPEC §5 `dlq_*`).
struct dead_letter {
  origin from;
  std::string consumer_group;
  std::string error_class;
  std::string error_message;  ///< cut to k_max_error_message
  std::int64_t attempts = 0;
  std::int64_t first_failure_ms = 0;
  std::int64_t last_failure_ms = 0;

  /// The `dlq_*` headers, to append after the record's own.
  [[nodiscard]] header_pairs headers() const;
};

/// True for the SDK's own retry bookkeeping headers (the exact `retry_*` names above, not any `retry_` name):
/// they are dropped when a copy is parked again or dead-lettered, every other header is kept.
[[nodiscard]] bool is_retry_header(std::string_view name) noexcept;
/// True for the `dlq_*` headers of a dead letter other than `dlq_replay_count`.
[[nodiscard]] bool is_dead_letter_header(std::string_view name) noexcept;
/// True for the `outbox_dlq_*` headers of a relay dead letter.
[[nodiscard]] bool is_relay_dead_letter_header(std::string_view name) noexcept;

/// The spelling of a delay in tier names: the largest of d, h, m, s that divides it, else ms (`10s`, `1m`,
/// `90s`, `1500ms`). Fixed here so that tier names never change with how durations are printed elsewhere.
[[nodiscard]] std::string delay_name(std::chrono::milliseconds delay);

/// Retry tier topic `<topic>.<group>.retry.<delay>`: one per distinct delay; a delay listed twice shares it.
[[nodiscard]] std::string retry_topic_name(std::string_view topic, std::string_view group,
                                           std::chrono::milliseconds delay);
/// A group's replay topic `<topic>.<group>.replay`: `outboxctl dlq replay` sends a dead letter there, so
/// only the group that failed it runs it again.
[[nodiscard]] std::string replay_topic_name(std::string_view topic, std::string_view group);
/// The dead-letter topic: `tmpl` with every `{topic}` and `{group}` filled in.
[[nodiscard]] std::string dead_letter_topic_name(std::string_view tmpl, std::string_view topic, std::string_view group);

/// What is wrong with an event id a dedupe store would key on, or nullopt when it is fine: empty, longer
/// than k_max_event_id bytes, containing NUL, or not UTF-8.
[[nodiscard]] std::optional<std::string> event_id_problem(std::string_view id);

}  // namespace outbox::record_format
