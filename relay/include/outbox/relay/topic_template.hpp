#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace outbox::relay {

/// `sink.topic_template` parsed once: literals and the placeholders {aggregate_type}, {event_type}, {schema}, {table}.
class topic_template {
 public:
  /// Throws outbox_error("config") on an unknown placeholder, an unclosed brace, a character a topic cannot have,
  /// or literals longer than a topic may be.
  explicit topic_template(std::string text);

  /// Renders into `out` (cleared first).
  void render(std::string& out, std::string_view aggregate_type, std::string_view event_type, std::string_view schema,
              std::string_view table) const;
  [[nodiscard]] std::string render(std::string_view aggregate_type, std::string_view event_type,
                                   std::string_view schema, std::string_view table) const;

  [[nodiscard]] const std::string& text() const noexcept { return m_text; }
  /// True when the template has no placeholders (every record goes to one topic).
  [[nodiscard]] bool literal() const noexcept;

 private:
  enum class part_kind : unsigned char { literal, aggregate_type, event_type, schema, table };
  struct part {
    part_kind kind;
    std::string text;
  };
  std::string m_text;
  std::vector<part> m_parts;
};

/// A legal Kafka topic name: 1 to 249 of a-z A-Z 0-9 . _ -, not "." or "..".
bool legal_topic(std::string_view topic) noexcept;

}  // namespace outbox::relay
