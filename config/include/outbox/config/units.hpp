#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace outbox::config {

/// A parsed scalar, or the reason the text is not one.
template <typename T>
struct parsed {
  std::optional<T> value;
  std::string error;

  [[nodiscard]] explicit operator bool() const noexcept { return value.has_value(); }
};

/// Parses `250ms`, `10s`, `5m`, `1h`, `7d`: a whole non-negative number and a unit, nothing else.
parsed<std::chrono::milliseconds> parse_duration(std::string_view text);

/// Parses `512KiB`, `64MiB`, `1GiB`, `1MB` (powers of 1000), `100B` or a bare number of bytes.
parsed<std::uint64_t> parse_size(std::string_view text);

/// Writes a duration in the largest unit that keeps it exact, e.g. `90s` -> `90s`, `120000ms` -> `2m`.
std::string format_duration(std::chrono::milliseconds d);

/// Writes a size in the largest unit that keeps it exact, e.g. `67108864` -> `64MiB`.
std::string format_size(std::uint64_t bytes);

}  // namespace outbox::config
