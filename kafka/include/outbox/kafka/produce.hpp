#pragma once

#include "outbox/kafka/handles.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace outbox::kafka {

/// One record to hand to librdkafka; librdkafka copies what it needs (RD_KAFKA_MSG_F_COPY).
struct outgoing {
  rd_kafka_topic_t* topic_handle = nullptr;        ///< preferred: a cached handle, no lookup per record
  std::string_view topic;                          ///< used when topic_handle is null
  std::int32_t partition = RD_KAFKA_PARTITION_UA;  ///< UA: the configured partitioner picks it
  std::optional<std::string_view> key;             ///< nullopt: a null key
  std::optional<std::string_view> value;           ///< nullopt: a null value (tombstone)
  rd_kafka_headers_t* headers = nullptr;           ///< taken over on success only
  void* opaque = nullptr;                          ///< comes back in the delivery report as `_private`
};

/// Produces one record: nullptr when librdkafka took it, else its error. On success `headers` belong to
/// librdkafka; on failure they stay the caller's.
error_ptr produce(rd_kafka_t* rk, const outgoing& record);

/// Adds one header; a null value (nullopt) stays distinct from an empty one.
inline void add_header(rd_kafka_headers_t* h, std::string_view name, std::optional<std::string_view> value) {
  rd_kafka_header_add(h, name.data(), static_cast<ssize_t>(name.size()), value ? value->data() : nullptr,
                      value ? static_cast<ssize_t>(value->size()) : 0);
}

/// Builds a header list from name/value pairs (`pair<string,string>` or anything with `.first`/`.second`).
template <typename Range>
headers_ptr make_headers(const Range& headers) {
  headers_ptr out(rd_kafka_headers_new(std::size(headers)));
  for (const auto& [name, value] : headers) add_header(out.get(), name, value);
  return out;
}

/// Calls fn(std::string_view name, std::optional<std::string_view> value) for every header of `m`, in order.
template <typename Fn>
void for_each_header(const rd_kafka_message_t* m, Fn&& fn) {
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR || hdrs == nullptr) return;
  const char* name = nullptr;
  const void* value = nullptr;
  std::size_t size = 0;
  for (std::size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; ++i) {
    fn(std::string_view(name),
       value == nullptr ? std::nullopt
                        : std::optional<std::string_view>(std::string_view(static_cast<const char*>(value), size)));
  }
}

/// The message's key and value as views (nullopt when null), valid while `m` lives.
inline std::optional<std::string_view> key_of(const rd_kafka_message_t* m) noexcept {
  if (m->key == nullptr) return std::nullopt;
  return std::string_view(static_cast<const char*>(m->key), m->key_len);
}
inline std::optional<std::string_view> value_of(const rd_kafka_message_t* m) noexcept {
  if (m->payload == nullptr) return std::nullopt;
  return std::string_view(static_cast<const char*>(m->payload), m->len);
}
/// The message's timestamp in Unix milliseconds, -1 when it has none.
inline std::int64_t timestamp_of(const rd_kafka_message_t* m) noexcept {
  rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
  return rd_kafka_message_timestamp(m, &type);
}

}  // namespace outbox::kafka
