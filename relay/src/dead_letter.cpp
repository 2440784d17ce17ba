#include "outbox/relay/dead_letter.hpp"

#include "outbox/base/text.hpp"

#include <nlohmann/json.hpp>

namespace outbox::relay {
namespace {

constexpr std::size_t k_max_error = 1024;

std::string cut_utf8(std::string_view s, std::size_t max) {
  if (s.size() <= max) return std::string(s);
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0U) == 0x80U) --n;
  return std::string(s.substr(0, n));
}

std::string base64(std::string_view in) {
  static constexpr char k_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const auto n = (static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16U) |
                   (static_cast<unsigned>(static_cast<unsigned char>(in[i + 1])) << 8U) |
                   static_cast<unsigned char>(in[i + 2]);
    out += k_alphabet[(n >> 18U) & 63U];
    out += k_alphabet[(n >> 12U) & 63U];
    out += k_alphabet[(n >> 6U) & 63U];
    out += k_alphabet[n & 63U];
  }
  if (i < in.size()) {
    unsigned n = static_cast<unsigned>(static_cast<unsigned char>(in[i])) << 16U;
    if (i + 1 < in.size()) n |= static_cast<unsigned>(static_cast<unsigned char>(in[i + 1])) << 8U;
    out += k_alphabet[(n >> 18U) & 63U];
    out += k_alphabet[(n >> 12U) & 63U];
    out += i + 1 < in.size() ? k_alphabet[(n >> 6U) & 63U] : '=';
    out += '=';
  }
  return out;
}

void add_common(kafka_record& k, std::string_view kind, const invalid_record& why, const dead_letter_origin& from,
                std::string_view intended_topic, bool truncated) {
  k.headers.emplace_back(dlq_headers::reason, why.reason);
  k.headers.emplace_back(dlq_headers::error, cut_utf8(why.message, k_max_error));
  k.headers.emplace_back(dlq_headers::table, from.table);
  k.headers.emplace_back(dlq_headers::lsn, format_lsn(from.commit_lsn));
  k.headers.emplace_back(dlq_headers::xid, std::to_string(from.xid));
  if (!why.column.empty()) k.headers.emplace_back(dlq_headers::column, why.column);
  if (!intended_topic.empty()) k.headers.emplace_back(dlq_headers::topic, intended_topic);
  k.headers.emplace_back(dlq_headers::value_kind, kind);
  if (truncated) k.headers.emplace_back(dlq_headers::truncated, "true");
}

}  // namespace

kafka_record dead_letter_of_record(std::string_view dlq_topic, const record_view& r, const invalid_record& why,
                                   const dead_letter_origin& from) {
  kafka_record k;
  k.topic = std::string(dlq_topic);
  k.key = std::string(r.key);
  bool truncated = false;
  if (r.value) {
    truncated = r.value->size() > k_max_dead_letter_value;
    k.value = std::string(r.value->substr(0, k_max_dead_letter_value));
  }
  for (const auto& h : r.headers) k.headers.emplace_back(std::string(h.name), std::string(h.value));
  add_common(k, record_format::k_relay_kind_record, why, from, r.topic, truncated);
  return k;
}

kafka_record dead_letter_of_row(std::string_view dlq_topic, const relation& rel, std::span<const tuple_value> values,
                                std::optional<std::string_view> key, std::string_view event_id,
                                const invalid_record& why, const dead_letter_origin& from) {
  nlohmann::ordered_json row = nlohmann::ordered_json::object();
  for (std::size_t i = 0; i < rel.columns.size() && i < values.size(); ++i) {
    const auto& v = values[i];
    if (v.k == tuple_value::kind::null) {
      row[rel.columns[i].name] = nullptr;
    } else if (valid_utf8(v.data)) {
      row[rel.columns[i].name] = std::string(v.data);
    } else {
      row[rel.columns[i].name] = {{"base64", base64(v.data)}};
    }
  }
  kafka_record k;
  k.topic = std::string(dlq_topic);
  if (key && valid_utf8(*key)) k.key = std::string(*key);
  std::string text = row.dump();
  const bool truncated = text.size() > k_max_dead_letter_value;
  if (truncated) text.resize(k_max_dead_letter_value);
  k.value = std::move(text);
  if (!event_id.empty() && valid_utf8(event_id)) k.headers.emplace_back(dlq_headers::event_id, std::string(event_id));
  add_common(k, record_format::k_relay_kind_row, why, from, {}, truncated);
  return k;
}

kafka_record dead_letter_of_envelope(std::string_view dlq_topic, std::string_view content, const invalid_record& why,
                                     const dead_letter_origin& from) {
  kafka_record k;
  k.topic = std::string(dlq_topic);
  const bool truncated = content.size() > k_max_dead_letter_value;
  k.value = std::string(content.substr(0, k_max_dead_letter_value));
  add_common(k, record_format::k_relay_kind_envelope, why, from, {}, truncated);
  return k;
}

}  // namespace outbox::relay
