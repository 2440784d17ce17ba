#include "outbox/config/redact.hpp"

#include "outbox/base/log.hpp"

#include <algorithm>
#include <cctype>
#include <regex>

namespace outbox::config {
namespace {

bool contains_ignoring_case(std::string_view text, std::string_view word) noexcept {
  const auto it = std::search(text.begin(), text.end(), word.begin(), word.end(), [](char a, char b) {
    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
  });
  return it != text.end();
}

}  // namespace

bool is_secret_key(std::string_view key) noexcept {
  return contains_ignoring_case(key, "password") || contains_ignoring_case(key, "secret");
}

std::string redact_credentials(std::string_view text) {
  // redact_dsn knows libpq's forms; the URL pattern adds redis://, amqp:// and the like.
  static const std::regex url(R"(^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)([^/?#]*)(@))");
  return std::regex_replace(outbox::log::redact_dsn(text), url, "$1*****$3");
}

}  // namespace outbox::config
