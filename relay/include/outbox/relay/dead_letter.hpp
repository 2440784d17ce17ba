#pragma once

#include "outbox/base/record_format.hpp"
#include "outbox/relay/lsn.hpp"
#include "outbox/relay/pgoutput_decoder.hpp"
#include "outbox/relay/router.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace outbox::relay {

/// The headers of a relay dead letter (`sink.on_invalid_record: dead_letter`), declared in record_format and read
/// back by `outboxctl dlq`.
namespace dlq_headers {
inline constexpr std::string_view reason = record_format::k_relay_dlq_reason;
inline constexpr std::string_view error = record_format::k_relay_dlq_error;
inline constexpr std::string_view table = record_format::k_relay_dlq_table;
inline constexpr std::string_view lsn = record_format::k_relay_dlq_lsn;
inline constexpr std::string_view xid = record_format::k_relay_dlq_xid;
inline constexpr std::string_view column = record_format::k_relay_dlq_column;
inline constexpr std::string_view topic = record_format::k_relay_dlq_topic;
inline constexpr std::string_view value_kind = record_format::k_relay_dlq_value_kind;
inline constexpr std::string_view truncated = record_format::k_relay_dlq_truncated;
inline constexpr std::string_view event_id = record_format::k_event_id;
}  // namespace dlq_headers

/// Where a dead letter came from.
struct dead_letter_origin {
  std::string_view table;  ///< schema.table or message:<prefix>
  lsn_t commit_lsn = 0;
  std::uint32_t xid = 0;
};

/// The most value bytes a dead letter carries; a longer value is cut (and marked truncated).
inline constexpr std::size_t k_max_dead_letter_value = 512 * 1024;

/// A dead letter for a record the relay built but could not publish (too large, topic refused): the record's key,
/// value (cut to k_max_dead_letter_value) and headers, plus the outbox_dlq_* headers.
kafka_record dead_letter_of_record(std::string_view dlq_topic, const record_view& r, const invalid_record& why,
                                   const dead_letter_origin& from);

/// A dead letter for a row that could not become a record: the row as a JSON object of column to text (NULL as null;
/// a value that is not UTF-8 as {"base64": "…"}), keyed by `key` and carrying `event_id` when known.
kafka_record dead_letter_of_row(std::string_view dlq_topic, const relation& rel, std::span<const tuple_value> values,
                                std::optional<std::string_view> key, std::string_view event_id,
                                const invalid_record& why, const dead_letter_origin& from);

/// A dead letter for an envelope that could not become a record: its content as it was emitted.
kafka_record dead_letter_of_envelope(std::string_view dlq_topic, std::string_view content, const invalid_record& why,
                                     const dead_letter_origin& from);

}  // namespace outbox::relay
