#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::consumer {

/// One Kafka record as a handler sees it, copied out of librdkafka (SPEC §3).
struct record {
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::optional<std::string> key;
  std::optional<std::string> value;                          ///< nullopt for a tombstone
  std::vector<std::pair<std::string, std::string>> headers;  ///< in order; a null value reads as empty ...
  std::vector<std::size_t>
      null_headers;                ///< ... and its index is listed here (retry and dead-letter copies keep it null)
  std::int64_t timestamp_ms = -1;  ///< -1 when the broker gave none

  /// The first header called `name`, if any.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;
  /// The `event_id` header the relay sets; empty when the record has none.
  [[nodiscard]] std::string_view event_id() const noexcept;
  /// Whether headers[i] had a null value.
  [[nodiscard]] bool header_is_null(std::size_t i) const noexcept;
};

}  // namespace outbox::consumer
