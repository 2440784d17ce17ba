#pragma once

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace outbox {

/// `text` as a decimal 64-bit integer (an optional leading `-`, nothing else around it), or nullopt.
[[nodiscard]] inline std::optional<std::int64_t> parse_int64(std::string_view text) noexcept {
  std::int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end) return std::nullopt;
  return v;
}

/// True when `s` is well-formed UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
[[nodiscard]] bool valid_utf8(std::string_view s) noexcept;

/// The length of the well-formed UTF-8 sequence starting at `s[i]`, or 0 when there is none.
[[nodiscard]] std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept;

/// At most `max` bytes of `s`, cut on a UTF-8 character boundary.
[[nodiscard]] std::string cut_utf8(std::string_view s, std::size_t max);

}  // namespace outbox
