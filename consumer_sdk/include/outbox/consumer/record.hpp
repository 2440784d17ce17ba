#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::consumer {

/// Where a record stands in its retries, as the handler running it sees it (set before every attempt).
struct attempt_info {
  std::int64_t number = 1;  ///< this attempt, counted over all stages (in process, retry tiers): 1 is the first
  std::int64_t first_failure_ms = 0;  ///< wall-clock ms since the epoch of its first failed attempt; 0 before one
  /// If this attempt asks to retry, the record is dead-lettered instead: no in-process attempt and no retry tier
  /// is left (or it is the probe of a halted consumer). A fatal outcome is dead-lettered on any attempt.
  bool last = false;
  int tier = -1;                   ///< the `retry.topics` entry it was read back from; -1 when read from its own topic
  std::int64_t tier_delay_ms = 0;  ///< that entry's delay; 0 when not from a tier
  bool replay = false;             ///< it came back from the dead-letter topic (`dlq_replay_count` > 0)
  std::int64_t replay_count = 0;   ///< how many times it was replayed
};

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
  attempt_info attempt;            ///< this attempt's context (the SDK fills it in before calling the handler)

  /// The first header called `name`, if any.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;
  /// The `event_id` header the relay sets; empty when the record has none.
  [[nodiscard]] std::string_view event_id() const noexcept;
  /// Whether headers[i] had a null value.
  [[nodiscard]] bool header_is_null(std::size_t i) const noexcept;
};

}  // namespace outbox::consumer
