#pragma once
// How a merchant's answer (or the lack of one) ends an attempt.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace outbox::notify {

/// What one POST to a merchant came back with.
struct http_result {
  bool transport_ok = false;  ///< false: no HTTP answer (timeout, refused, DNS, TLS); see `transport_error`
  bool timed_out = false;
  std::string transport_error;
  long status = 0;
  std::string body;
  std::string retry_after;  ///< the `Retry-After` header as sent, empty when absent
};

/// The verdict on one attempt.
enum class verdict_kind {
  delivered,    ///< 2xx with the expected body
  retry,        ///< 5xx, other 4xx, a 2xx with another body, a timeout, no connection
  retry_after,  ///< 429 or 503 with a readable `Retry-After`: not before `delay`
  fatal,        ///< 400, 401, 403, 404, 410: the signature, the URL or the merchant is wrong or gone
};

struct verdict {
  verdict_kind kind = verdict_kind::retry;
  std::chrono::milliseconds delay{0};  ///< for retry_after
  std::string reason;                  ///< for the status row's `last_error` and the dead letter
};

/// Seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`) relative to `now`; nullopt when unreadable.
/// A date in the past reads as 0.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now);

/// Classifies `r`; success needs a 2xx whose body, without surrounding whitespace, equals `expected_body`.
verdict classify(const http_result& r, std::string_view expected_body,
                 std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

}  // namespace outbox::notify
