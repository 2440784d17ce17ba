#include "json_scan.hpp"

#include "outbox/base/text.hpp"

#include <cstdint>
#include <cstring>

namespace outbox::relay {
namespace {

constexpr int k_max_depth = 256;

/// Whether the eight bytes at `p` are all ASCII from 0x20, none of them '"' or '\\': what a string literal's body
/// mostly is, and can skip without looking at each byte.
bool plain_ascii(const char* p) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t highs = 0x8080808080808080ULL;
  std::uint64_t w = 0;
  std::memcpy(&w, p, sizeof w);
  auto has_zero = [&](std::uint64_t x) { return ((x - ones) & ~x & highs) != 0; };
  if ((w & highs) != 0) return false;                        // a byte from 0x80
  if (((w - 0x20 * ones) & ~w & highs) != 0) return false;   // a byte below 0x20
  return !has_zero(w ^ ('"' * ones)) && !has_zero(w ^ ('\\' * ones));
}

class scanner {
 public:
  explicit scanner(std::string_view text) : m_s(text) {}

  [[nodiscard]] std::size_t pos() const noexcept { return m_pos; }
  [[nodiscard]] bool at_end() const noexcept { return m_pos >= m_s.size(); }
  [[nodiscard]] const std::string& error() const noexcept { return m_error; }

  void skip_ws() noexcept {
    while (m_pos < m_s.size() && (m_s[m_pos] == ' ' || m_s[m_pos] == '\t' || m_s[m_pos] == '\n' || m_s[m_pos] == '\r'))
      ++m_pos;
  }

  bool fail(const std::string& what) {
    if (m_error.empty()) m_error = what + " at byte " + std::to_string(m_pos);
    return false;
  }

  /// A string literal at the current position; sets `body` (between the quotes) and whether it has escapes.
  bool string(std::string_view& body, bool& escaped) {
    if (at_end() || m_s[m_pos] != '"') return fail("expected a string");
    const std::size_t start = ++m_pos;
    escaped = false;
    while (m_pos < m_s.size()) {
      // Eight bytes at a time while none is a quote, a backslash, a control character or outside ASCII.
      if (m_pos + 8 <= m_s.size() && plain_ascii(m_s.data() + m_pos)) {
        m_pos += 8;
        continue;
      }
      const auto c = static_cast<unsigned char>(m_s[m_pos]);
      if (c < 0x80 && c >= 0x20 && c != '"' && c != '\\') {
        ++m_pos;
        continue;
      }
      if (c == '"') {
        body = m_s.substr(start, m_pos - start);
        ++m_pos;
        return true;
      }
      if (c < 0x20) return fail("a control character inside a string");
      if (c == '\\') {
        escaped = true;
        if (++m_pos >= m_s.size()) break;
        const char e = m_s[m_pos];
        if (e == 'u') {
          if (m_pos + 4 >= m_s.size()) return fail("a truncated \\u escape");
          for (int k = 1; k <= 4; ++k) {
            const char h = m_s[m_pos + static_cast<std::size_t>(k)];
            const bool hex = (h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F');
            if (!hex) return fail("a bad \\u escape");
          }
          m_pos += 5;
          continue;
        }
        if (e != '"' && e != '\\' && e != '/' && e != 'b' && e != 'f' && e != 'n' && e != 'r' && e != 't') {
          return fail("an unknown escape \\" + std::string(1, e));
        }
        ++m_pos;
        continue;
      }
      const std::size_t n = utf8_sequence_length(m_s, m_pos);
      if (n == 0) return fail("bytes that are not valid UTF-8");
      m_pos += n;
    }
    return fail("an unterminated string");
  }

  bool number() {
    const std::size_t start = m_pos;
    if (m_pos < m_s.size() && m_s[m_pos] == '-') ++m_pos;
    if (m_pos >= m_s.size()) return fail("a truncated number");
    if (m_s[m_pos] == '0') {
      ++m_pos;
    } else if (m_s[m_pos] >= '1' && m_s[m_pos] <= '9') {
      while (m_pos < m_s.size() && m_s[m_pos] >= '0' && m_s[m_pos] <= '9') ++m_pos;
    } else {
      m_pos = start;
      return fail("an invalid value");
    }
    if (m_pos < m_s.size() && m_s[m_pos] == '.') {
      ++m_pos;
      if (m_pos >= m_s.size() || m_s[m_pos] < '0' || m_s[m_pos] > '9') return fail("a number without digits after '.'");
      while (m_pos < m_s.size() && m_s[m_pos] >= '0' && m_s[m_pos] <= '9') ++m_pos;
    }
    if (m_pos < m_s.size() && (m_s[m_pos] == 'e' || m_s[m_pos] == 'E')) {
      ++m_pos;
      if (m_pos < m_s.size() && (m_s[m_pos] == '+' || m_s[m_pos] == '-')) ++m_pos;
      if (m_pos >= m_s.size() || m_s[m_pos] < '0' || m_s[m_pos] > '9') return fail("a number with an empty exponent");
      while (m_pos < m_s.size() && m_s[m_pos] >= '0' && m_s[m_pos] <= '9') ++m_pos;
    }
    return true;
  }

  bool literal(std::string_view word) {
    if (m_s.substr(m_pos, word.size()) != word) return fail("an invalid value");
    m_pos += word.size();
    return true;
  }

  /// Any value; `kind` tells which. Members of a nested object or array are checked, not collected.
  bool value(json_kind& kind, int depth) {
    skip_ws();
    if (at_end()) return fail("a missing value");
    const char c = m_s[m_pos];
    std::string_view body;
    bool escaped = false;
    switch (c) {
      case '{':
        kind = json_kind::object;
        return object(depth + 1, nullptr);
      case '[':
        kind = json_kind::array;
        return array(depth + 1);
      case '"':
        kind = json_kind::string;
        return string(body, escaped);
      case 't':
        kind = json_kind::boolean;
        return literal("true");
      case 'f':
        kind = json_kind::boolean;
        return literal("false");
      case 'n':
        kind = json_kind::null;
        return literal("null");
      default:
        kind = json_kind::number;
        return number();
    }
  }

  bool array(int depth) {
    if (depth > k_max_depth) return fail("nesting deeper than " + std::to_string(k_max_depth));
    ++m_pos;  // '['
    skip_ws();
    if (!at_end() && m_s[m_pos] == ']') {
      ++m_pos;
      return true;
    }
    while (true) {
      json_kind k{};
      if (!value(k, depth)) return false;
      skip_ws();
      if (at_end()) return fail("an unterminated array");
      if (m_s[m_pos] == ',') {
        ++m_pos;
        continue;
      }
      if (m_s[m_pos] == ']') {
        ++m_pos;
        return true;
      }
      return fail("expected ',' or ']'");
    }
  }

  /// An object at the current position ('{'); collects its members into `out` when given.
  bool object(int depth, std::vector<json_member>* out) {
    if (depth > k_max_depth) return fail("nesting deeper than " + std::to_string(k_max_depth));
    ++m_pos;  // '{'
    skip_ws();
    if (!at_end() && m_s[m_pos] == '}') {
      ++m_pos;
      return true;
    }
    while (true) {
      skip_ws();
      json_member m;
      if (!string(m.raw_name, m.name_escaped)) return false;
      skip_ws();
      if (at_end() || m_s[m_pos] != ':') return fail("expected ':'");
      ++m_pos;
      skip_ws();
      const std::size_t start = m_pos;
      if (!value(m.kind, depth)) return false;
      m.raw = m_s.substr(start, m_pos - start);
      if (out != nullptr) out->push_back(m);
      skip_ws();
      if (at_end()) return fail("an unterminated object");
      if (m_s[m_pos] == ',') {
        ++m_pos;
        continue;
      }
      if (m_s[m_pos] == '}') {
        ++m_pos;
        return true;
      }
      return fail("expected ',' or '}'");
    }
  }

 private:
  std::string_view m_s;
  std::size_t m_pos = 0;
  std::string m_error;
};

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::uint32_t hex4(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t k = 0; k < 4; ++k) {
    const char h = s[at + k];
    v <<= 4U;
    v |= static_cast<std::uint32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
  }
  return v;
}

}  // namespace

std::string json_member::name() const {
  return name_escaped ? json_scan::decode_body(raw_name) : std::string(raw_name);
}

bool json_scan::object(std::string_view text, std::vector<json_member>& members, std::string& error) {
  members.clear();
  scanner sc(text);
  sc.skip_ws();
  if (sc.at_end() || text[sc.pos()] != '{') {
    json_kind k{};
    if (!sc.value(k, 0)) {
      error = "not valid JSON: " + sc.error();
      return false;
    }
    error = "not a JSON object";
    return false;
  }
  if (!sc.object(1, &members)) {
    error = "not valid JSON: " + sc.error();
    return false;
  }
  sc.skip_ws();
  if (!sc.at_end()) {
    error = "not valid JSON: unexpected text after the object at byte " + std::to_string(sc.pos());
    return false;
  }
  return true;
}

bool json_scan::value(std::string_view text, std::string& error) {
  scanner sc(text);
  json_kind k{};
  if (!sc.value(k, 0)) {
    error = "not valid JSON: " + sc.error();
    return false;
  }
  sc.skip_ws();
  if (!sc.at_end()) {
    error = "not valid JSON: unexpected text after the value at byte " + std::to_string(sc.pos());
    return false;
  }
  return true;
}

std::string json_scan::decode_body(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    const char e = s[++i];
    switch (e) {
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        std::uint32_t cp = hex4(s, i + 1);
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 < s.size() && s[i + 1] == '\\' && s[i + 2] == 'u') {
          const std::uint32_t lo = hex4(s, i + 3);
          if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10U) + (lo - 0xDC00);
            i += 6;
          }
        }
        if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;  // a lone surrogate cannot be UTF-8
        append_utf8(out, cp);
        break;
      }
      default:
        out += e;  // " \ /
    }
  }
  return out;
}

}  // namespace outbox::relay
