#pragma once
// One POST to a merchant over libcurl: an easy handle per call, so any thread may call it.

#include "response.hpp"

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace outbox::notify {

/// Calls curl_global_init once; call before starting threads.
void http_global_init();

/// POSTs `body` to `url` with `headers`; never throws for a network failure (it is in the result).
http_result http_post(const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers,
                      const std::string& body, std::chrono::milliseconds connect_timeout,
                      std::chrono::milliseconds request_timeout);

}  // namespace outbox::notify
