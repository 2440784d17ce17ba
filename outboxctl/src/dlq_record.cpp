#include "dlq_record.hpp"

#include "outbox/base/text.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <ctime>

namespace outbox::ctl {
namespace {

std::optional<std::int64_t> number_header(const dlq_record& r, std::string_view name) {
  const auto v = r.find(name);
  return v ? header_number(*v) : std::nullopt;
}

/// The first of `names` that the record carries.
std::optional<std::string> first_of(const dlq_record& r, std::initializer_list<std::string_view> names) {
  for (const auto name : names) {
    if (auto v = r.find(name)) return v;
  }
  return std::nullopt;
}

bool is_bookkeeping(std::string_view name) {
  return name.starts_with("dlq_") || name.starts_with("retry_") || name.starts_with("kafka_dlt-") ||
         name.starts_with("__connect.errors.");
}

}  // namespace

std::optional<std::string> dlq_record::find(std::string_view name) const {
  for (const auto& h : headers) {
    if (h.name == name && h.value) return h.value;
  }
  return std::nullopt;
}

std::string_view to_string(dlq_format f) noexcept {
  switch (f) {
    case dlq_format::outbox:
      return "outbox";
    case dlq_format::spring:
      return "spring";
    case dlq_format::connect:
      return "connect";
    case dlq_format::unknown:
      break;
  }
  return "unknown";
}

std::optional<std::int64_t> header_number(std::string_view raw) {
  const bool text = !raw.empty() && std::all_of(raw.begin(), raw.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0 || c == '-';
  });
  if (text) return parse_int64(raw);
  if (raw.size() == 4 || raw.size() == 8) {
    std::uint64_t v = 0;
    for (const char c : raw) v = (v << 8) | static_cast<unsigned char>(c);
    if (raw.size() == 4) return static_cast<std::int32_t>(static_cast<std::uint32_t>(v));
    return static_cast<std::int64_t>(v);
  }
  return std::nullopt;
}

dlq_origin interpret(const dlq_record& r) {
  dlq_origin o;
  // Where each format keeps the original coordinates (Connect records no timestamp).
  struct origin_headers {
    dlq_format format;
    std::string_view topic, partition, offset, timestamp;
  };
  static constexpr std::array<origin_headers, 3> k_formats{{
      {dlq_format::outbox, "dlq_original_topic", "dlq_original_partition", "dlq_original_offset",
       "dlq_original_timestamp_ms"},
      {dlq_format::spring, "kafka_dlt-original-topic", "kafka_dlt-original-partition", "kafka_dlt-original-offset",
       "kafka_dlt-original-timestamp"},
      {dlq_format::connect, "__connect.errors.topic", "__connect.errors.partition", "__connect.errors.offset", ""},
  }};
  for (const auto& f : k_formats) {
    if (auto t = r.find(f.topic)) {
      o.format = f.format;
      o.topic = std::move(t);
      o.partition = number_header(r, f.partition);
      o.offset = number_header(r, f.offset);
      if (!f.timestamp.empty()) o.timestamp_ms = number_header(r, f.timestamp);
      break;
    }
  }
  if (o.topic && o.topic->empty()) o.topic.reset();
  o.consumer_group = first_of(r, {"dlq_consumer_group", "kafka_dlt-original-consumer-group"});
  o.error_class = first_of(r, {"dlq_error_class", "kafka_dlt-exception-fqcn", "__connect.errors.exception.class.name"});
  o.error_message =
      first_of(r, {"dlq_error_message", "kafka_dlt-exception-message", "__connect.errors.exception.message"});
  o.attempts = number_header(r, "dlq_attempts");
  o.first_failure_ms = number_header(r, "dlq_first_failure_ms");
  o.last_failure_ms = number_header(r, "dlq_last_failure_ms");
  if (auto c = r.find("dlq_replay_count")) o.replay_count = parse_int64(*c).value_or(0);
  return o;
}

std::vector<header> replay_headers(const dlq_record& r, std::int64_t previous_replay_count) {
  std::vector<header> out;
  for (const auto& h : r.headers) {
    if (!is_bookkeeping(h.name)) out.push_back(h);
  }
  out.push_back({"dlq_replay_count", std::to_string(previous_replay_count + 1)});
  return out;
}

bool dlq_filter::matches(const dlq_record& r) const {
  if (since_ms && r.timestamp_ms < *since_ms) return false;
  if (until_ms && r.timestamp_ms >= *until_ms) return false;
  if (key && (!r.key || *r.key != *key)) return false;
  if (error_contains) {
    for (const auto name : {"dlq_error_message", "kafka_dlt-exception-message", "__connect.errors.exception.message"}) {
      const auto m = r.find(name);
      if (m && m->find(*error_contains) != std::string::npos) return true;
    }
    return false;
  }
  return true;
}

std::optional<std::int64_t> parse_time(std::string_view text, std::chrono::system_clock::time_point now) {
  if (text.empty()) return std::nullopt;
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  // A duration ago: digits and one unit.
  const char unit = text.back();
  if (text.size() >= 2 && std::string_view("smhd").find(unit) != std::string_view::npos) {
    if (const auto n = parse_int64(text.substr(0, text.size() - 1)); n && *n >= 0) {
      const std::int64_t scale = unit == 's' ? 1000 : unit == 'm' ? 60'000 : unit == 'h' ? 3'600'000 : 86'400'000;
      return now_ms - *n * scale;
    }
    return std::nullopt;
  }
  // RFC 3339: YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)
  const std::string s(text);
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
      s[16] != ':') {
    return std::nullopt;
  }
  auto field = [&](std::size_t pos, std::size_t len) { return parse_int64(std::string_view(s).substr(pos, len)); };
  const auto year = field(0, 4);
  const auto month = field(5, 2);
  const auto day = field(8, 2);
  const auto hour = field(11, 2);
  const auto minute = field(14, 2);
  const auto second = field(17, 2);
  if (!year || !month || !day || !hour || !minute || !second || *month < 1 || *month > 12 || *day < 1 || *day > 31 ||
      *hour > 23 || *minute > 59 || *second > 60) {
    return std::nullopt;
  }
  std::size_t pos = 19;
  std::int64_t millis = 0;
  if (pos < s.size() && s[pos] == '.') {
    std::int64_t scale = 100;
    ++pos;
    const std::size_t start = pos;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos])) != 0) {
      millis += (s[pos] - '0') * scale;
      scale /= 10;
      ++pos;
    }
    if (pos == start) return std::nullopt;
  }
  std::int64_t offset_s = 0;
  const std::string_view zone = std::string_view(s).substr(pos);
  if (zone == "Z" || zone == "z") {
    offset_s = 0;
  } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
    const auto oh = parse_int64(zone.substr(1, 2));
    const auto om = parse_int64(zone.substr(4, 2));
    if (!oh || !om || *oh > 23 || *om > 59) return std::nullopt;
    offset_s = (*oh * 3600 + *om * 60) * (zone[0] == '-' ? -1 : 1);
  } else {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = static_cast<int>(*year - 1900);
  tm.tm_mon = static_cast<int>(*month - 1);
  tm.tm_mday = static_cast<int>(*day);
  tm.tm_hour = static_cast<int>(*hour);
  tm.tm_min = static_cast<int>(*minute);
  tm.tm_sec = static_cast<int>(*second);
  const std::time_t t = timegm(&tm);
  return (static_cast<std::int64_t>(t) - offset_s) * 1000 + millis;
}

std::string format_time(std::int64_t ms) {
  if (ms < 0) return "-";
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

bool valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (std::size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

std::string base64(std::string_view bytes) {
  static constexpr char k_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t v = (static_cast<unsigned char>(bytes[i]) << 16) |
                            (static_cast<unsigned char>(bytes[i + 1]) << 8) | static_cast<unsigned char>(bytes[i + 2]);
    out += k_alphabet[(v >> 18) & 63];
    out += k_alphabet[(v >> 12) & 63];
    out += k_alphabet[(v >> 6) & 63];
    out += k_alphabet[v & 63];
  }
  if (i < bytes.size()) {
    std::uint32_t v = static_cast<unsigned char>(bytes[i]) << 16;
    if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
    out += k_alphabet[(v >> 18) & 63];
    out += k_alphabet[(v >> 12) & 63];
    out += i + 1 < bytes.size() ? k_alphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string printable(std::string_view s, std::size_t max) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      static constexpr char k_hex[] = "0123456789abcdef";
      out += c == '\n'   ? std::string("\\n")
             : c == '\t' ? std::string("\\t")
                         : std::string("\\x") + k_hex[u >> 4] + k_hex[u & 15];
    } else {
      out += c;
    }
  }
  if (out.size() > max) {
    out.resize(max > 3 ? max - 3 : max);
    // Do not cut a UTF-8 sequence in half.
    while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
    if (!out.empty() && static_cast<unsigned char>(out.back()) >= 0xC0) out.pop_back();
    out += "...";
  }
  return out;
}

}  // namespace outbox::ctl
