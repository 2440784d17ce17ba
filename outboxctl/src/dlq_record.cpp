#include "dlq_record.hpp"

#include "outbox/base/record_format.hpp"
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

namespace rf = record_format;

/// Headers of dead-letter and retry stacks that a replay drops (ours by exact name, the others by prefix).
bool is_bookkeeping(std::string_view name) {
  return rf::is_dead_letter_header(name) || rf::is_retry_header(name) || rf::is_relay_dead_letter_header(name) ||
         name == rf::k_dlq_replay_count ||
         name.starts_with("kafka_dlt-") || name.starts_with("__connect.errors.");
}

constexpr std::int64_t k_max_duration_ms = std::int64_t{100} * 365 * 86'400'000;

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
    case dlq_format::relay:
      return "relay";
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
      {dlq_format::outbox, rf::k_dlq_original_topic, rf::k_dlq_original_partition, rf::k_dlq_original_offset,
       rf::k_dlq_original_timestamp_ms},
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
  if (o.format == dlq_format::unknown && r.find(rf::k_relay_dlq_reason)) {
    // The relay's: no original coordinates (the record never reached Kafka), but the row's place in the WAL.
    o.format = dlq_format::relay;
    o.topic = r.find(rf::k_relay_dlq_topic);
    o.source_table = r.find(rf::k_relay_dlq_table);
    o.source_lsn = r.find(rf::k_relay_dlq_lsn);
    o.value_kind = r.find(rf::k_relay_dlq_value_kind);
    o.truncated = r.find(rf::k_relay_dlq_truncated) == "true";
    o.error_class = r.find(rf::k_relay_dlq_reason);
    o.error_message = r.find(rf::k_relay_dlq_error);
    o.event_id = r.find(rf::k_event_id);
    if (auto c = r.find(rf::k_dlq_replay_count)) o.replay_count = parse_int64(*c).value_or(0);
    if (o.topic && o.topic->empty()) o.topic.reset();
    return o;
  }
  if (o.topic && o.topic->empty()) o.topic.reset();
  o.consumer_group = first_of(r, {rf::k_dlq_consumer_group, "kafka_dlt-original-consumer-group"});
  o.event_id = r.find(rf::k_event_id);
  o.error_class =
      first_of(r, {rf::k_dlq_error_class, "kafka_dlt-exception-fqcn", "__connect.errors.exception.class.name"});
  o.error_message =
      first_of(r, {rf::k_dlq_error_message, "kafka_dlt-exception-message", "__connect.errors.exception.message"});
  o.attempts = number_header(r, rf::k_dlq_attempts);
  o.first_failure_ms = number_header(r, rf::k_dlq_first_failure_ms);
  o.last_failure_ms = number_header(r, rf::k_dlq_last_failure_ms);
  if (auto c = r.find(rf::k_dlq_replay_count)) o.replay_count = parse_int64(*c).value_or(0);
  return o;
}

std::optional<std::string> not_replayable(const dlq_origin& o) {
  if (o.format != dlq_format::relay) return std::nullopt;
  if (o.value_kind != rf::k_relay_kind_record) {
    return "a relay dead letter of a " + o.value_kind.value_or(std::string("?")) +
           " is not a record (the relay could not build one from it): fix the producing application and write a "
           "corrected event";
  }
  if (o.truncated) return std::string("the relay cut this record's value to fit the dead-letter topic");
  return std::nullopt;
}

std::vector<header> replay_headers(const dlq_record& r, const dlq_origin& o, bool to_replay_topic) {
  std::vector<header> out;
  for (const auto& h : r.headers) {
    if (!is_bookkeeping(h.name)) out.push_back(h);
  }
  out.push_back({std::string(rf::k_dlq_replay_count), std::to_string(o.replay_count + 1)});
  if (to_replay_topic) {
    const auto add = [&](std::string_view name, std::string value) { out.push_back({std::string(name), value}); };
    add(rf::k_retry_original_topic, o.topic.value_or(""));
    add(rf::k_retry_original_partition, std::to_string(o.partition.value_or(-1)));
    add(rf::k_retry_original_offset, std::to_string(o.offset.value_or(-1)));
    add(rf::k_retry_original_timestamp_ms, std::to_string(o.timestamp_ms.value_or(-1)));
    add(rf::k_retry_consumer_group, o.consumer_group.value_or(""));
  }
  return out;
}

std::int64_t first_seen_ms(const dlq_record& r, const dlq_origin& o) {
  return o.timestamp_ms && *o.timestamp_ms > 0 ? *o.timestamp_ms : r.timestamp_ms;
}

bool dlq_filter::matches(const dlq_record& r) const {
  if (partition && r.partition != *partition) return false;
  if (offset && r.offset != *offset) return false;
  if (event_id && r.find(rf::k_event_id) != event_id) return false;
  if (since_ms && r.timestamp_ms < *since_ms) return false;
  if (until_ms && r.timestamp_ms >= *until_ms) return false;
  if (key && (!r.key || *r.key != *key)) return false;
  if (error_contains) {
    for (const auto name : {rf::k_dlq_error_message, rf::k_relay_dlq_error, std::string_view("kafka_dlt-exception-message"),
                            std::string_view("__connect.errors.exception.message")}) {
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
  if (std::string_view("smhd").find(text.back()) != std::string_view::npos) {
    const auto d = parse_duration(text);
    if (!d) return std::nullopt;
    return now_ms - *d;
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

std::optional<std::int64_t> parse_duration(std::string_view text) {
  if (text.size() < 2) return std::nullopt;
  const char unit = text.back();
  const std::int64_t scale = unit == 's'   ? 1000
                             : unit == 'm' ? 60'000
                             : unit == 'h' ? 3'600'000
                             : unit == 'd' ? 86'400'000
                                           : 0;
  const auto n = parse_int64(text.substr(0, text.size() - 1));
  if (scale == 0 || !n || *n < 0 || *n > k_max_duration_ms / scale) return std::nullopt;
  return *n * scale;
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
