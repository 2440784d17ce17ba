#include "http_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <stdexcept>

namespace outbox::notify {
namespace {

constexpr std::size_t k_max_body = 64 * 1024;  // a merchant's answer is a word; keep no more than this

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* out = static_cast<std::string*>(user);
  const std::size_t len = size * n;
  if (out->size() < k_max_body) out->append(data, std::min(len, k_max_body - out->size()));
  return len;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  const std::size_t len = size * n;
  std::string line(data, len);
  const auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    if (name == "retry-after") {
      std::string value = line.substr(colon + 1);
      const auto first = value.find_first_not_of(" \t");
      const auto last = value.find_last_not_of(" \t\r\n");
      *static_cast<std::string*>(user) = first == std::string::npos ? "" : value.substr(first, last - first + 1);
    }
  }
  return len;
}

struct easy_deleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct slist_deleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

void http_global_init() {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw std::runtime_error("curl_global_init failed");
}

http_result http_post(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
                      const std::string& body, std::chrono::milliseconds connect_timeout,
                      std::chrono::milliseconds request_timeout) {
  http_result r;
  const std::unique_ptr<CURL, easy_deleter> curl(curl_easy_init());
  if (!curl) {
    r.transport_error = "curl_easy_init failed";
    return r;
  }
  curl_slist* raw = nullptr;
  for (const auto& [name, value] : headers) raw = curl_slist_append(raw, (name + ": " + value).c_str());
  raw = curl_slist_append(raw, "Expect:");  // no 100-continue round trip
  const std::unique_ptr<curl_slist, slist_deleter> list(raw);
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(request_timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // timeouts without SIGALRM: safe on any thread
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &r.retry_after);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "merchant-notify");
  const CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    r.timed_out = rc == CURLE_OPERATION_TIMEDOUT;
    r.transport_error = curl_easy_strerror(rc);
    return r;
  }
  r.transport_ok = true;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

}  // namespace outbox::notify
