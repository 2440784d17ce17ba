#pragma once

#include <string>
#include <string_view>

namespace outbox::config {

/// Hides the password of a libpq DSN or of any `scheme://user:password@host` URL; other text is returned as is.
std::string redact_credentials(std::string_view text);

}  // namespace outbox::config
