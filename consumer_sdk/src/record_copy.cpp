#include "record_copy.hpp"

#include "outbox/base/record_format.hpp"
#include "outbox/kafka/produce.hpp"

#include <optional>
#include <string_view>

namespace outbox::consumer::detail {

namespace rf = record_format;

std::vector<topic_partition> partitions_of(const rd_kafka_topic_partition_list_t* list) {
  std::vector<topic_partition> out;
  out.reserve(static_cast<std::size_t>(list->cnt));
  for (int i = 0; i < list->cnt; ++i) out.push_back({list->elems[i].topic, list->elems[i].partition});
  return out;
}

std::string describe(const std::vector<topic_partition>& tps) {
  std::string out;
  for (const auto& tp : tps) out += (out.empty() ? "" : ",") + tp.topic + "[" + std::to_string(tp.partition) + "]";
  return out;
}

/// Copies a message into `r`, reusing the capacity of its strings (no allocation once warmed up).
void fill_record(const rd_kafka_message_t* m, const std::string& topic, record& r) {
  r.topic.assign(topic);
  r.partition = m->partition;
  r.offset = m->offset;
  auto assign = [](std::optional<std::string>& field, std::optional<std::string_view> v) {
    if (!v) {
      field.reset();
    } else {
      if (!field) field.emplace();
      field->assign(*v);
    }
  };
  assign(r.key, kafka::key_of(m));
  assign(r.value, kafka::value_of(m));
  std::size_t n = 0;
  r.null_headers.clear();
  kafka::for_each_header(m, [&](std::string_view name, std::optional<std::string_view> value) {
    if (r.headers.size() <= n) r.headers.emplace_back();
    r.headers[n].first.assign(name);
    r.headers[n].second.assign(value.value_or(std::string_view()));
    if (!value) r.null_headers.push_back(n);
    ++n;
  });
  r.headers.resize(n);
  r.timestamp_ms = kafka::timestamp_of(m);
}

/// A record some group parked or dead-lettered, found on a topic a pattern matched: not a source record.
bool is_copy(const record& r) {
  return r.header(rf::k_retry_consumer_group).has_value() || r.header(rf::k_dlq_error_class).has_value();
}

}  // namespace outbox::consumer::detail
