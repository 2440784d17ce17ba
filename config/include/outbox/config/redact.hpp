#pragma once

#include <string>
#include <string_view>

namespace outbox::config {

/// True for keys whose values must never be printed: any name containing `password` or `secret`, any case.
bool is_secret_key(std::string_view key) noexcept;

/// Hides the password of a libpq DSN or of any `scheme://user:password@host` URL; other text is returned as is.
std::string redact_credentials(std::string_view text);

}  // namespace outbox::config
