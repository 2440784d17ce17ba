#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::relay {

/// What kind of JSON value a span holds.
enum class json_kind : unsigned char { object, array, string, number, boolean, null };

/// One member of a JSON object: its name (decoded) and its value exactly as written.
struct json_member {
  std::string_view raw_name;  ///< the name's literal without quotes, escapes not decoded
  bool name_escaped = false;  ///< raw_name holds a backslash escape
  json_kind kind = json_kind::null;
  std::string_view raw;  ///< the value's bytes as written (a string keeps its quotes)

  /// The member name, decoded.
  [[nodiscard]] std::string name() const;
};

/// A small validating JSON reader (RFC 8259, UTF-8 checked, nesting bounded) that keeps every top-level value's
/// exact bytes, so a payload or header value is published as stored, never re-serialized through a double.
class json_scan {
 public:
  /// Reads `text` as one JSON object with optional surrounding whitespace. True on success and `members` holds
  /// its top-level members in order (views into `text`); false and `error` says what is wrong and where.
  static bool object(std::string_view text, std::vector<json_member>& members, std::string& error);

  /// Checks `text` is exactly one JSON value; false with `error` otherwise.
  static bool value(std::string_view text, std::string& error);

  /// Decodes a name or string body without quotes.
  static std::string decode_body(std::string_view body);
};

}  // namespace outbox::relay
