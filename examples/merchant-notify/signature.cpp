#include "signature.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace outbox::notify {
namespace {

std::string to_hex(const unsigned char* data, std::size_t n) {
  static constexpr char k_digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out.push_back(k_digits[data[i] >> 4U]);
    out.push_back(k_digits[data[i] & 0xfU]);
  }
  return out;
}

}  // namespace

std::string string_to_sign(std::string_view timestamp, std::string_view nonce, std::string_view body) {
  std::string s;
  s.reserve(timestamp.size() + nonce.size() + body.size() + 2);
  s.append(timestamp).append(".").append(nonce).append(".").append(body);
  return s;
}

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac.data(), &len) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed in OpenSSL");
  }
  return to_hex(mac.data(), len);
}

std::string signature_header(std::string_view key, std::string_view timestamp, std::string_view nonce,
                             std::string_view body) {
  return "v1=" + hmac_sha256_hex(key, string_to_sign(timestamp, nonce, body));
}

std::string random_nonce() {
  std::array<unsigned char, 16> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    throw std::runtime_error("OpenSSL RAND_bytes failed: no nonce for the notification");
  }
  return to_hex(bytes.data(), bytes.size());
}

}  // namespace outbox::notify
