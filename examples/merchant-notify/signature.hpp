#pragma once
// The notification signature a merchant verifies (README "Verifying a notification").

#include <string>
#include <string_view>

namespace outbox::notify {

/// What is signed: `timestamp + "." + nonce + "." + body`.
std::string string_to_sign(std::string_view timestamp, std::string_view nonce, std::string_view body);

/// HMAC-SHA256 of `message` under `key`, as 64 lowercase hex digits.
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

/// The `X-Notify-Signature` header value: `v1=` and the HMAC of string_to_sign under the merchant's key.
std::string signature_header(std::string_view key, std::string_view timestamp, std::string_view nonce,
                             std::string_view body);

/// 16 random bytes from OpenSSL's generator, as 32 hex digits: the `X-Notify-Nonce` of one request.
std::string random_nonce();

}  // namespace outbox::notify
