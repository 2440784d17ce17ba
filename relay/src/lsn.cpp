#include "outbox/relay/lsn.hpp"

#include <cstdio>

namespace outbox::relay {

namespace {

constexpr std::size_t max_half_digits = 8;

std::optional<std::uint32_t> parse_half(std::string_view digits) {
  if (digits.empty() || digits.size() > max_half_digits) return std::nullopt;
  std::uint32_t value = 0;
  for (const char c : digits) {
    std::uint32_t nibble = 0;
    if (c >= '0' && c <= '9') {
      nibble = static_cast<std::uint32_t>(c - '0');
    } else if (c >= 'A' && c <= 'F') {
      nibble = static_cast<std::uint32_t>(c - 'A' + 10);
    } else if (c >= 'a' && c <= 'f') {
      nibble = static_cast<std::uint32_t>(c - 'a' + 10);
    } else {
      return std::nullopt;
    }
    value = (value << 4U) | nibble;
  }
  return value;
}

}  // namespace

std::string format_lsn(lsn_t lsn) {
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "%X/%08X", static_cast<unsigned>(lsn >> 32U),
                              static_cast<unsigned>(lsn & 0xFFFF'FFFFU));
  return std::string(buf, static_cast<std::size_t>(n));
}

std::optional<lsn_t> parse_lsn(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto hi = parse_half(text.substr(0, slash));
  const auto lo = parse_half(text.substr(slash + 1));
  if (!hi || !lo) return std::nullopt;
  return (static_cast<lsn_t>(*hi) << 32U) | *lo;
}

}  // namespace outbox::relay
