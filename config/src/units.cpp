#include "outbox/config/units.hpp"

#include <array>
#include <charconv>
#include <limits>

namespace outbox::config {
namespace {

struct unit {
  std::string_view suffix;
  std::uint64_t factor;
};

constexpr std::array<unit, 5> k_duration_units{
    {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}}};

constexpr std::array<unit, 10> k_size_units{{{"B", 1},
                                             {"KiB", 1ULL << 10},
                                             {"MiB", 1ULL << 20},
                                             {"GiB", 1ULL << 30},
                                             {"TiB", 1ULL << 40},
                                             {"KB", 1000},
                                             {"kB", 1000},
                                             {"MB", 1000ULL * 1000},
                                             {"GB", 1000ULL * 1000 * 1000},
                                             {"TB", 1000ULL * 1000 * 1000 * 1000}}};

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

/// Splits `text` into its leading digits and the rest; empty digits when it does not start with one.
std::pair<std::string_view, std::string_view> split_number(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && is_digit(text[i])) ++i;
  return {text.substr(0, i), text.substr(i)};
}

std::string backquoted(std::string_view text) { return "`" + std::string(text) + "`"; }

}  // namespace

parsed<std::chrono::milliseconds> parse_duration(std::string_view text) {
  constexpr std::string_view forms = "write a whole number and a unit: 250ms, 10s, 5m, 1h or 7d";
  if (text.empty()) return {std::nullopt, "is empty; " + std::string(forms)};
  if (text.front() == '-') return {std::nullopt, backquoted(text) + " is negative; durations cannot be"};
  const auto [digits, suffix] = split_number(text);
  if (digits.empty()) return {std::nullopt, backquoted(text) + " is not a duration; " + std::string(forms)};
  if (!suffix.empty() && (suffix.front() == '.' || suffix.front() == 'e' || suffix.front() == 'E')) {
    return {std::nullopt, backquoted(text) + " is not a whole number; use a smaller unit, e.g. 1500ms for 1.5s"};
  }
  if (suffix.empty()) return {std::nullopt, backquoted(text) + " has no unit; " + std::string(forms)};
  const unit* u = nullptr;
  for (const auto& candidate : k_duration_units) {
    if (candidate.suffix == suffix) u = &candidate;
  }
  if (u == nullptr) {
    return {std::nullopt, backquoted(text) + " has an unknown unit " + backquoted(suffix) + "; " + std::string(forms)};
  }
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::chrono::milliseconds::rep>::max());
  if (ec != std::errc{} || end != digits.data() + digits.size() || n > limit / u->factor) {
    return {std::nullopt, backquoted(text) + " is too long a duration"};
  }
  return {std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(n * u->factor)), {}};
}

parsed<std::uint64_t> parse_size(std::string_view text) {
  constexpr std::string_view forms = "write a whole number and a unit: 512KiB, 64MiB, 1GiB, 1MB or 4096B";
  if (text.empty()) return {std::nullopt, "is empty; " + std::string(forms)};
  if (text.front() == '-') return {std::nullopt, backquoted(text) + " is negative; sizes cannot be"};
  const auto [digits, suffix] = split_number(text);
  if (digits.empty()) return {std::nullopt, backquoted(text) + " is not a size; " + std::string(forms)};
  if (!suffix.empty() && (suffix.front() == '.' || suffix.front() == 'e' || suffix.front() == 'E')) {
    return {std::nullopt, backquoted(text) + " is not a whole number; use a smaller unit, e.g. 1536MiB for 1.5GiB"};
  }
  std::uint64_t factor = 1;
  if (!suffix.empty()) {
    const unit* u = nullptr;
    for (const auto& candidate : k_size_units) {
      if (candidate.suffix == suffix) u = &candidate;
    }
    if (u == nullptr) {
      return {std::nullopt,
              backquoted(text) + " has an unknown unit " + backquoted(suffix) + "; " + std::string(forms)};
    }
    factor = u->factor;
  }
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  if (ec != std::errc{} || end != digits.data() + digits.size() ||
      n > std::numeric_limits<std::uint64_t>::max() / factor) {
    return {std::nullopt, backquoted(text) + " is too large a size"};
  }
  return {n * factor, {}};
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms == 0) return "0s";
  for (std::size_t i = k_duration_units.size(); i-- > 0;) {  // largest unit first
    const auto factor = static_cast<std::chrono::milliseconds::rep>(k_duration_units[i].factor);
    if (ms % factor == 0) return std::to_string(ms / factor) + std::string(k_duration_units[i].suffix);
  }
  return std::to_string(ms) + "ms";
}

std::string format_size(std::uint64_t bytes) {
  if (bytes == 0) return "0B";
  constexpr std::array<unit, 8> preferred{{{"TiB", 1ULL << 40},
                                           {"GiB", 1ULL << 30},
                                           {"MiB", 1ULL << 20},
                                           {"KiB", 1ULL << 10},
                                           {"TB", 1000ULL * 1000 * 1000 * 1000},
                                           {"GB", 1000ULL * 1000 * 1000},
                                           {"MB", 1000ULL * 1000},
                                           {"KB", 1000}}};
  for (const auto& u : preferred) {
    if (bytes % u.factor == 0) return std::to_string(bytes / u.factor) + std::string(u.suffix);
  }
  return std::to_string(bytes) + "B";
}

}  // namespace outbox::config
