#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace outbox::dedupe {

/// A parsed `redis://[user:password@]host[:port][/db]` address.
struct redis_endpoint {
  std::string host;
  int port = 6379;
  std::string user;      ///< empty: AUTH with the password only (or no AUTH)
  std::string password;  ///< empty: no AUTH
  int db = 0;
};

/// Parses a Redis URL (user and password percent-decoded, `[v6]` hosts allowed); nullopt when malformed.
std::optional<redis_endpoint> parse_redis_url(std::string_view url);

}  // namespace outbox::dedupe
