#include "response.hpp"

#include <charconv>
#include <ctime>

namespace outbox::notify {
namespace {

std::string_view trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

std::string excerpt(std::string_view body) {
  constexpr std::size_t k_max = 200;
  return body.size() <= k_max ? std::string(body) : std::string(body.substr(0, k_max)) + "...";
}

}  // namespace

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  long long seconds = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec == std::errc{} && end == value.data() + value.size()) {
    if (seconds < 0) return std::nullopt;
    return std::chrono::seconds(seconds);
  }
  std::tm tm{};
  const std::string text(value);
  const char* parsed = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (parsed == nullptr || *parsed != '\0') return std::nullopt;
  const auto when = std::chrono::system_clock::from_time_t(timegm(&tm));
  if (when <= now) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(when - now);
}

verdict classify(const http_result& r, std::string_view expected_body, std::chrono::system_clock::time_point now) {
  if (!r.transport_ok) {
    return {verdict_kind::retry, {}, (r.timed_out ? "timeout: " : "no HTTP answer: ") + r.transport_error};
  }
  const std::string status = "HTTP " + std::to_string(r.status);
  if (r.status >= 200 && r.status < 300) {
    if (trim(r.body) == trim(expected_body)) return {verdict_kind::delivered, {}, {}};
    return {verdict_kind::retry,
            {},
            status + " without the expected body '" + std::string(expected_body) + "': " + excerpt(r.body)};
  }
  switch (r.status) {
    case 400:
    case 401:
    case 403:
    case 404:
    case 410:
      return {verdict_kind::fatal, {}, status + " (signature, URL or merchant refused or gone): " + excerpt(r.body)};
    case 429:
    case 503:
      if (const auto delay = parse_retry_after(r.retry_after, now)) {
        return {verdict_kind::retry_after, *delay, status + " Retry-After " + r.retry_after};
      }
      break;
    default:
      break;
  }
  return {verdict_kind::retry, {}, status + ": " + excerpt(r.body)};
}

}  // namespace outbox::notify
