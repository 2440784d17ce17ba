#include "validators.hpp"

#include <algorithm>
#include <charconv>
#include <regex>

namespace outbox::config::detail {
namespace {

constexpr std::size_t k_max_identifier = 63;
constexpr std::size_t k_max_topic = 249;

bool is_topic_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

std::string check_identifier(std::string_view id, std::string_view what) {
  if (id.empty()) return std::string(what) + " is empty";
  if (id.size() > k_max_identifier) {
    return std::string(what) + " is longer than PostgreSQL's " + std::to_string(k_max_identifier) + " bytes";
  }
  if (std::any_of(id.begin(), id.end(), [](char c) { return c == ' ' || c == '\t' || c == '"'; })) {
    return std::string(what) + " `" + std::string(id) + "` has a space or quote; use plain names";
  }
  return {};
}

std::string check_topic(std::string_view topic) {
  if (topic.empty()) return "is empty; give a topic name";
  if (topic.size() > k_max_topic) return "is longer than Kafka's 249 characters";
  if (topic == "." || topic == "..") return "`" + std::string(topic) + "` is not a valid topic name";
  const auto bad = std::find_if_not(topic.begin(), topic.end(), is_topic_char);
  if (bad != topic.end()) {
    return "has `" + std::string(1, *bad) + "`; Kafka topic names allow only letters, digits, `.`, `_` and `-`";
  }
  return {};
}

}  // namespace

std::pair<std::string, std::string> split_table_name(std::string_view name) {
  const std::size_t dot = name.find('.');
  if (dot == std::string_view::npos) return {"public", std::string(name)};
  return {std::string(name.substr(0, dot)), std::string(name.substr(dot + 1))};
}

validator pg_identifier() {
  return [](const value& v) { return check_identifier(std::get<std::string>(v), "the name"); };
}

validator slot_name() {
  return [](const value& v) -> std::string {
    const auto& s = std::get<std::string>(v);
    const bool ok = !s.empty() && s.size() <= k_max_identifier && std::all_of(s.begin(), s.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    });
    if (ok) return {};
    return "`" + s + "` is not a valid slot name; use 1 to 63 lower case letters, digits and `_`";
  };
}

validator table_name() {
  return [](const value& v) -> std::string {
    const auto& s = std::get<std::string>(v);
    if (std::count(s.begin(), s.end(), '.') > 1) return "`" + s + "` has more than one `.`; write `schema.table`";
    const auto [schema_name, table] = split_table_name(s);
    if (auto e = check_identifier(schema_name, "the schema"); !e.empty()) return e + "; write `schema.table`";
    if (auto e = check_identifier(table, "the table"); !e.empty()) return e + "; write `schema.table`";
    return {};
  };
}

validator topic_template(std::vector<std::string> allowed) {
  return [allowed = std::move(allowed)](const value& v) -> std::string {
    const auto& s = std::get<std::string>(v);
    if (s.empty()) return "is empty; give a topic name or template";
    std::string literal;
    std::size_t i = 0;
    while (i < s.size()) {
      if (s[i] == '}') return "has a `}` without its `{`";
      if (s[i] != '{') {
        literal += s[i++];
        continue;
      }
      const std::size_t close = s.find('}', i);
      if (close == std::string::npos) return "has a `{` without its `}`";
      const std::string name = s.substr(i + 1, close - i - 1);
      if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
        std::string known;
        for (const auto& a : allowed) known += (known.empty() ? "" : ", ") + ("`{" + a + "}`");
        return "has an unknown placeholder `{" + name + "}`; the placeholders are " + known;
      }
      literal += 'x';
      i = close + 1;
    }
    return check_topic(literal);
  };
}

validator topic_list() {
  return [](const value& v) -> std::string {
    const auto& topics = std::get<std::vector<std::string>>(v);
    if (topics.empty()) return "is empty; list at least one topic";
    for (const auto& t : topics) {
      if (!t.empty() && t.front() == '^') continue;
      if (auto e = check_topic(t); !e.empty()) return "topic `" + t + "` " + e;
    }
    return {};
  };
}

validator topic_patterns() {
  return [](const value& v) -> std::string {
    for (const auto& t : std::get<std::vector<std::string>>(v)) {
      if (!t.empty() && t.front() == '^') {
        try {
          std::regex re(t, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          return "pattern `" + t + "` is not a valid regular expression (" + e.what() + ")";
        }
        continue;
      }
      if (auto e = check_topic(t); !e.empty()) return "topic `" + t + "` " + e;
    }
    return {};
  };
}

validator listen_address() {
  return [](const value& v) -> std::string {
    const auto& s = std::get<std::string>(v);
    const std::string form = "; write host:port, e.g. 127.0.0.1:9187, 0.0.0.0:9187 or [::1]:9187";
    const std::size_t colon = s.rfind(':');
    if (colon == std::string::npos) return "`" + s + "` has no port" + form;
    const std::string_view host = std::string_view(s).substr(0, colon);
    const std::string_view port = std::string_view(s).substr(colon + 1);
    if (host.empty()) return "`" + s + "` has no host" + form;
    if (host.find(':') != std::string_view::npos && (host.front() != '[' || host.back() != ']')) {
      return "`" + s + "` has an IPv6 host without brackets" + form;
    }
    unsigned n = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || n > 65535) {
      return "`" + s + "` has no valid port (0 to 65535)" + form;
    }
    return {};
  };
}

validator not_empty() {
  return [](const value& v) -> std::string { return std::get<std::string>(v).empty() ? "must not be empty" : ""; };
}

validator positive() {
  return [](const value& v) -> std::string {
    if (const auto* d = std::get_if<std::chrono::milliseconds>(&v); d != nullptr && d->count() <= 0) {
      return "must be longer than 0s";
    }
    if (const auto* b = std::get_if<std::uint64_t>(&v); b != nullptr && *b == 0) return "must be larger than 0";
    return {};
  };
}

validator ratio() {
  return [](const value& v) -> std::string {
    const double d = std::get<double>(v);
    return d > 0.0 && d <= 1.0 ? "" : "must be greater than 0 and at most 1, e.g. 0.5";
  };
}

validator reject(std::string choice, std::string message) {
  return [choice = std::move(choice), message = std::move(message)](const value& v) -> std::string {
    return std::get<std::string>(v) == choice ? message : "";
  };
}

}  // namespace outbox::config::detail
