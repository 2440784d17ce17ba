#include "outbox/relay/topic_template.hpp"

#include "outbox/base/error.hpp"

#include <algorithm>

namespace outbox::relay {
namespace {

constexpr std::size_t k_max_topic_length = 249;

bool legal_topic_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

}  // namespace

bool legal_topic(std::string_view t) noexcept {
  if (t.empty() || t.size() > k_max_topic_length || t == "." || t == "..") return false;
  return std::all_of(t.begin(), t.end(), legal_topic_char);
}

topic_template::topic_template(std::string text) : m_text(std::move(text)) {
  auto bad = [&](const std::string& why) {
    return outbox_error("config", "sink.topic_template \"" + m_text + "\" " + why +
                                      "; use literal characters a-z A-Z 0-9 . _ - and the placeholders "
                                      "{aggregate_type}, {event_type}, {schema}, {table}");
  };
  if (m_text.empty()) throw bad("is empty");
  std::size_t literal_length = 0;
  for (std::size_t i = 0; i < m_text.size();) {
    const char c = m_text[i];
    if (c == '{') {
      const std::size_t close = m_text.find('}', i);
      if (close == std::string::npos) throw bad("has a '{' without a closing '}'");
      const std::string_view name = std::string_view(m_text).substr(i + 1, close - i - 1);
      part_kind k{};
      if (name == "aggregate_type") {
        k = part_kind::aggregate_type;
      } else if (name == "event_type") {
        k = part_kind::event_type;
      } else if (name == "schema") {
        k = part_kind::schema;
      } else if (name == "table") {
        k = part_kind::table;
      } else {
        throw bad("has an unknown placeholder {" + std::string(name) + "}");
      }
      m_parts.push_back({k, {}});
      i = close + 1;
      continue;
    }
    if (!legal_topic_char(c))
      throw bad("has the character '" + std::string(1, c) + "', which a Kafka topic name cannot contain");
    if (m_parts.empty() || m_parts.back().kind != part_kind::literal) m_parts.push_back({part_kind::literal, {}});
    m_parts.back().text += c;
    ++literal_length;
    ++i;
  }
  if (literal_length > k_max_topic_length) throw bad("is longer than a Kafka topic name may be (249)");
}

bool topic_template::literal() const noexcept {
  return std::all_of(m_parts.begin(), m_parts.end(), [](const part& p) { return p.kind == part_kind::literal; });
}

void topic_template::render(std::string& out, std::string_view aggregate_type, std::string_view event_type,
                            std::string_view schema, std::string_view table) const {
  out.clear();
  for (const auto& p : m_parts) {
    switch (p.kind) {
      case part_kind::literal:
        out += p.text;
        break;
      case part_kind::aggregate_type:
        out += aggregate_type;
        break;
      case part_kind::event_type:
        out += event_type;
        break;
      case part_kind::schema:
        out += schema;
        break;
      case part_kind::table:
        out += table;
        break;
    }
  }
}

std::string topic_template::render(std::string_view aggregate_type, std::string_view event_type,
                                   std::string_view schema, std::string_view table) const {
  std::string out;
  render(out, aggregate_type, event_type, schema, table);
  return out;
}

}  // namespace outbox::relay
