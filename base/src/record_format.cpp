#include "outbox/base/record_format.hpp"

#include "outbox/base/text.hpp"

#include <algorithm>
#include <array>
#include <limits>

namespace outbox::record_format {
namespace {

constexpr std::array<std::string_view, 10> k_retry_headers{
    k_retry_attempt,         k_retry_due_ms, k_retry_original_topic,        k_retry_original_partition,
    k_retry_original_offset, k_retry_reason, k_retry_original_timestamp_ms, k_retry_first_failure_ms,
    k_retry_consumer_group,  k_retry_tier};

constexpr std::array<std::string_view, 10> k_dead_letter_headers{
    k_dlq_original_topic,   k_dlq_original_partition, k_dlq_original_offset, k_dlq_original_timestamp_ms,
    k_dlq_consumer_group,   k_dlq_error_class,        k_dlq_error_message,   k_dlq_attempts,
    k_dlq_first_failure_ms, k_dlq_last_failure_ms};

std::int64_t number_or(const header_lookup& find, std::string_view name, std::int64_t fallback) {
  const auto v = find(name);
  if (!v) return fallback;
  return parse_int64(*v).value_or(fallback);
}

void replace_all(std::string& s, std::string_view what, std::string_view with) {
  for (auto at = s.find(what); at != std::string::npos; at = s.find(what, at + with.size())) {
    s.replace(at, what.size(), with);
  }
}

}  // namespace

header_pairs retry_copy::headers() const {
  header_pairs out;
  out.reserve(10);
  out.emplace_back(k_retry_attempt, std::to_string(attempts));
  out.emplace_back(k_retry_due_ms, std::to_string(due_ms));
  out.emplace_back(k_retry_original_topic, from.topic);
  out.emplace_back(k_retry_original_partition, std::to_string(from.partition));
  out.emplace_back(k_retry_original_offset, std::to_string(from.offset));
  out.emplace_back(k_retry_original_timestamp_ms, std::to_string(from.timestamp_ms));
  out.emplace_back(k_retry_first_failure_ms, std::to_string(first_failure_ms));
  out.emplace_back(k_retry_consumer_group, consumer_group);
  out.emplace_back(k_retry_tier, std::to_string(tier));
  if (!reason.empty()) out.emplace_back(k_retry_reason, cut_utf8(reason, k_max_error_message));
  return out;
}

retry_copy retry_copy::read(const header_lookup& find) {
  retry_copy c;
  if (const auto t = find(k_retry_original_topic)) c.from.topic = std::string(*t);
  const auto partition = number_or(find, k_retry_original_partition, -1);
  c.from.partition = partition >= 0 && partition <= std::numeric_limits<std::int32_t>::max()
                         ? static_cast<std::int32_t>(partition)
                         : -1;
  c.from.offset = number_or(find, k_retry_original_offset, -1);
  c.from.timestamp_ms = number_or(find, k_retry_original_timestamp_ms, -1);
  if (const auto g = find(k_retry_consumer_group)) c.consumer_group = std::string(*g);
  const auto tier = number_or(find, k_retry_tier, -1);
  c.tier = tier >= 0 && tier <= 1'000'000 ? static_cast<int>(tier) : -1;
  const auto attempts = number_or(find, k_retry_attempt, 0);
  c.attempts = attempts >= 0 && attempts <= 1'000'000 ? attempts : 0;  // hostile values are not trusted
  c.due_ms = number_or(find, k_retry_due_ms, 0);
  c.first_failure_ms = number_or(find, k_retry_first_failure_ms, 0);
  if (const auto r = find(k_retry_reason)) c.reason = std::string(*r);
  return c;
}

header_pairs dead_letter::headers() const {
  header_pairs out;
  out.reserve(10);
  out.emplace_back(k_dlq_original_topic, from.topic);
  out.emplace_back(k_dlq_original_partition, std::to_string(from.partition));
  out.emplace_back(k_dlq_original_offset, std::to_string(from.offset));
  out.emplace_back(k_dlq_original_timestamp_ms, std::to_string(from.timestamp_ms));
  out.emplace_back(k_dlq_consumer_group, consumer_group);
  out.emplace_back(k_dlq_error_class, error_class.empty() ? std::string(k_class_fatal) : error_class);
  out.emplace_back(k_dlq_error_message, cut_utf8(error_message, k_max_error_message));
  out.emplace_back(k_dlq_attempts, std::to_string(attempts));
  out.emplace_back(k_dlq_first_failure_ms, std::to_string(first_failure_ms));
  out.emplace_back(k_dlq_last_failure_ms, std::to_string(last_failure_ms));
  return out;
}

bool is_retry_header(std::string_view name) noexcept {
  for (const auto h : k_retry_headers) {
    if (h == name) return true;
  }
  return false;
}

bool is_dead_letter_header(std::string_view name) noexcept {
  for (const auto h : k_dead_letter_headers) {
    if (h == name) return true;
  }
  return false;
}

bool is_relay_dead_letter_header(std::string_view name) noexcept {
  static constexpr std::array<std::string_view, 9> k_relay{
      k_relay_dlq_reason, k_relay_dlq_error, k_relay_dlq_table,      k_relay_dlq_lsn,       k_relay_dlq_xid,
      k_relay_dlq_column, k_relay_dlq_topic, k_relay_dlq_value_kind, k_relay_dlq_truncated};
  return std::find(k_relay.begin(), k_relay.end(), name) != k_relay.end();
}

std::string delay_name(std::chrono::milliseconds delay) {
  struct unit {
    std::int64_t ms;
    std::string_view suffix;
  };
  static constexpr std::array<unit, 4> k_units{{{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}}};
  const auto ms = delay.count();
  if (ms == 0) return "0s";
  for (const auto& u : k_units) {
    if (ms % u.ms == 0) return std::to_string(ms / u.ms) + std::string(u.suffix);
  }
  return std::to_string(ms) + "ms";
}

std::string retry_topic_name(std::string_view topic, std::string_view group, std::chrono::milliseconds delay) {
  std::string out(topic);
  out += '.';
  out += group;
  out += ".retry.";
  out += delay_name(delay);
  return out;
}

std::string replay_topic_name(std::string_view topic, std::string_view group) {
  std::string out(topic);
  out += '.';
  out += group;
  out += ".replay";
  return out;
}

std::string dead_letter_topic_name(std::string_view tmpl, std::string_view topic, std::string_view group) {
  // Group ids used in topic names are checked to be topic-safe (no braces), so nothing filled in is re-read.
  std::string out(tmpl);
  replace_all(out, "{group}", group);
  replace_all(out, "{topic}", topic);
  return out;
}

std::optional<std::string> event_id_problem(std::string_view id) {
  if (id.empty()) return "is empty";
  if (id.size() > k_max_event_id) {
    return "is " + std::to_string(id.size()) + " bytes long, more than " + std::to_string(k_max_event_id);
  }
  if (id.find('\0') != std::string_view::npos) return "contains a NUL byte";
  if (!valid_utf8(id)) return "is not valid UTF-8";
  return std::nullopt;
}

}  // namespace outbox::record_format
