#include "interpolate.hpp"

#include <cstdlib>

namespace outbox::config::detail {
namespace {

bool is_name_start(char c) noexcept { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool is_name_char(char c) noexcept { return is_name_start(c) || (c >= '0' && c <= '9'); }

bool is_variable_name(std::string_view name) noexcept {
  if (name.empty() || !is_name_start(name.front())) return false;
  for (const char c : name) {
    if (!is_name_char(c)) return false;
  }
  return true;
}

}  // namespace

interpolation interpolate(std::string_view raw) {
  interpolation out;
  out.text.reserve(raw.size());
  std::size_t i = 0;
  while (i < raw.size()) {
    const char c = raw[i];
    if (c != '$' || i + 1 == raw.size()) {
      out.text += c;
      ++i;
      continue;
    }
    if (raw[i + 1] == '$') {
      out.text += '$';
      i += 2;
      continue;
    }
    if (raw[i + 1] != '{') {
      out.text += c;
      ++i;
      continue;
    }
    const std::size_t close = raw.find('}', i + 2);
    if (close == std::string_view::npos) {
      out.errors.emplace_back("`${` has no closing `}`; write `$${` for a literal `${`");
      return out;
    }
    const std::string_view body = raw.substr(i + 2, close - i - 2);
    const std::size_t sep = body.find(":-");
    const std::string_view name = body.substr(0, sep);
    if (!is_variable_name(name)) {
      out.errors.push_back("`${" + std::string(body) +
                           "}` is not a variable reference; write ${NAME} or ${NAME:-default}, or $$ for a literal $");
    } else {
      const char* env = std::getenv(std::string(name).c_str());
      if (sep != std::string_view::npos) {
        out.text += (env != nullptr && *env != '\0') ? std::string_view(env) : body.substr(sep + 2);
      } else if (env != nullptr) {
        out.text += env;
      } else {
        out.errors.push_back("environment variable " + std::string(name) + " is not set; set it or write ${" +
                             std::string(name) + ":-default}");
      }
    }
    i = close + 1;
  }
  return out;
}

}  // namespace outbox::config::detail
