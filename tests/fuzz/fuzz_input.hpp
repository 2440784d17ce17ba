#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

namespace outbox::fuzz {

/// Cuts a fuzz input into pieces: length-prefixed (big-endian u16) or up to a separator byte.
class input {
 public:
  input(const std::uint8_t* data, std::size_t size) : m_rest(reinterpret_cast<const char*>(data), size) {}

  [[nodiscard]] bool empty() const noexcept { return m_rest.empty(); }

  /// The next byte, or 0 when the input is used up.
  std::uint8_t byte() noexcept {
    if (m_rest.empty()) return 0;
    const auto b = static_cast<std::uint8_t>(m_rest.front());
    m_rest.remove_prefix(1);
    return b;
  }

  /// A piece of at most 65535 bytes after its 2-byte length (shorter when the input ends first).
  std::string_view framed() noexcept {
    const std::size_t n = std::size_t{byte()} << 8U | byte();
    return take(n);
  }

  /// The bytes up to the next `sep` (dropped), or the rest.
  std::string_view until(char sep) noexcept {
    const auto at = m_rest.find(sep);
    if (at == std::string_view::npos) return take(m_rest.size());
    const auto out = m_rest.substr(0, at);
    m_rest.remove_prefix(at + 1);
    return out;
  }

  /// Whatever is left.
  std::string_view rest() noexcept { return take(m_rest.size()); }

 private:
  std::string_view take(std::size_t n) noexcept {
    const auto out = m_rest.substr(0, n);
    m_rest.remove_prefix(out.size());
    return out;
  }
  std::string_view m_rest;
};

/// A broken invariant: abort so that libFuzzer keeps the input as a crash.
[[noreturn]] inline void violated() { std::abort(); }

}  // namespace outbox::fuzz
