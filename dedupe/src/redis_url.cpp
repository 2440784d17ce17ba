#include "outbox/dedupe/redis_url.hpp"

#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace outbox::dedupe {
namespace {

std::optional<int> parse_int(std::string_view s, int min, int max) {
  int value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || value < min || value > max) return std::nullopt;
  return value;
}

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    int byte = 0;
    if (i + 2 >= s.size()) return std::nullopt;
    const auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, byte, 16);
    if (ec != std::errc() || end != s.data() + i + 3) return std::nullopt;
    out += static_cast<char>(byte);
    i += 2;
  }
  return out;
}

}  // namespace

std::optional<redis_endpoint> parse_redis_url(std::string_view url) {
  constexpr std::string_view scheme = "redis://";
  if (!url.starts_with(scheme)) return std::nullopt;
  url.remove_prefix(scheme.size());

  redis_endpoint ep;
  std::string_view authority = url;
  if (const auto slash = url.find('/'); slash != std::string_view::npos) {
    authority = url.substr(0, slash);
    std::string_view path = url.substr(slash + 1);
    if (!path.empty()) {
      const auto db = parse_int(path, 0, 1'000'000);
      if (!db) return std::nullopt;
      ep.db = *db;
    }
  }
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const auto colon = userinfo.find(':');
    auto user = percent_decode(userinfo.substr(0, colon));
    auto password = percent_decode(colon == std::string_view::npos ? std::string_view() : userinfo.substr(colon + 1));
    if (!user || !password) return std::nullopt;
    if (colon == std::string_view::npos) {
      // redis://secret@host: a lone userinfo is the password, as redis-cli reads it.
      ep.password = std::move(*user);
    } else {
      ep.user = std::move(*user);
      ep.password = std::move(*password);
    }
  }
  std::string_view port;
  if (authority.starts_with('[')) {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    ep.host = std::string(authority.substr(1, close - 1));
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      if (port.empty()) return std::nullopt;
    }
  } else {
    const auto colon = authority.rfind(':');
    ep.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return std::nullopt;
    }
  }
  if (ep.host.empty()) return std::nullopt;
  if (!port.empty()) {
    const auto p = parse_int(port, 1, 65535);
    if (!p) return std::nullopt;
    ep.port = *p;
  }
  return ep;
}

}  // namespace outbox::dedupe
