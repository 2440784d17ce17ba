#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <string>
#include <string_view>

namespace outbox::log {

enum class level { trace, debug, info, warn, error };
enum class format { json, text };

/// Parses "trace|debug|info|warn|error"; nullopt otherwise.
std::optional<level> parse_level(std::string_view s) noexcept;
std::string_view to_string(level l) noexcept;

/// One key/value on a log line; numbers stay numbers in JSON output.
struct field {
  field(std::string_view k, std::string_view v) : key(k), text(v) {}
  field(std::string_view k, const char* v) : key(k), text(v) {}
  field(std::string_view k, const std::string& v) : key(k), text(v) {}
  template <typename N>
  requires std::is_arithmetic_v<N> field(std::string_view k, N v) : key(k), text(std::to_string(v)), numeric(true) {}

  std::string_view key;
  std::string text;
  bool numeric = false;
};

/// Sets the process-wide threshold and line format; safe to call before any thread starts.
void configure(level threshold, format fmt);
[[nodiscard]] bool enabled(level l) noexcept;

/// Writes one line to stderr: ts, level, component, msg, then the fields.
void write(level l, std::string_view component, std::string_view msg, std::initializer_list<field> fields = {});

inline void debug(std::string_view c, std::string_view m, std::initializer_list<field> f = {}) {
  write(level::debug, c, m, f);
}
inline void info(std::string_view c, std::string_view m, std::initializer_list<field> f = {}) {
  write(level::info, c, m, f);
}
inline void warn(std::string_view c, std::string_view m, std::initializer_list<field> f = {}) {
  write(level::warn, c, m, f);
}
inline void error(std::string_view c, std::string_view m, std::initializer_list<field> f = {}) {
  write(level::error, c, m, f);
}

/// Replaces the value of password=... in a libpq keyword/value string or the password of a URI.
std::string redact_dsn(std::string_view dsn);

}  // namespace outbox::log
