#include "outbox/config/redact.hpp"

#include "outbox/base/log.hpp"

#include <regex>

namespace outbox::config {
std::string redact_credentials(std::string_view text) {
  // redact_dsn knows libpq's forms; the URL pattern adds redis://, amqp:// and the like.
  static const std::regex url(R"(^([A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*:)([^/?#]*)(@))");
  return std::regex_replace(outbox::log::redact_dsn(text), url, "$1*****$3");
}

}  // namespace outbox::config
