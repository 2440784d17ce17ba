#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>

namespace outbox::kafka {

/// One deleter per librdkafka handle type, so every handle is owned by a unique_ptr.
struct client_deleter {
  void operator()(rd_kafka_t* k) const noexcept { rd_kafka_destroy(k); }
};
/// For a consumer whose group was already left (or must not be left on destruction).
struct consumer_deleter {
  void operator()(rd_kafka_t* k) const noexcept { rd_kafka_destroy_flags(k, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE); }
};
struct conf_deleter {
  void operator()(rd_kafka_conf_t* c) const noexcept { rd_kafka_conf_destroy(c); }
};
struct topic_deleter {
  void operator()(rd_kafka_topic_t* t) const noexcept { rd_kafka_topic_destroy(t); }
};
struct queue_deleter {
  void operator()(rd_kafka_queue_t* q) const noexcept { rd_kafka_queue_destroy(q); }
};
struct event_deleter {
  void operator()(rd_kafka_event_t* e) const noexcept { rd_kafka_event_destroy(e); }
};
struct message_deleter {
  void operator()(rd_kafka_message_t* m) const noexcept { rd_kafka_message_destroy(m); }
};
struct error_deleter {
  void operator()(rd_kafka_error_t* e) const noexcept { rd_kafka_error_destroy(e); }
};
struct partition_list_deleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const noexcept { rd_kafka_topic_partition_list_destroy(l); }
};
struct headers_deleter {
  void operator()(rd_kafka_headers_t* h) const noexcept { rd_kafka_headers_destroy(h); }
};
struct metadata_deleter {
  void operator()(const rd_kafka_metadata_t* m) const noexcept { rd_kafka_metadata_destroy(m); }
};
struct admin_options_deleter {
  void operator()(rd_kafka_AdminOptions_t* o) const noexcept { rd_kafka_AdminOptions_destroy(o); }
};

using client_ptr = std::unique_ptr<rd_kafka_t, client_deleter>;
using consumer_ptr = std::unique_ptr<rd_kafka_t, consumer_deleter>;
using conf_ptr = std::unique_ptr<rd_kafka_conf_t, conf_deleter>;
using topic_ptr = std::unique_ptr<rd_kafka_topic_t, topic_deleter>;
using queue_ptr = std::unique_ptr<rd_kafka_queue_t, queue_deleter>;
using event_ptr = std::unique_ptr<rd_kafka_event_t, event_deleter>;
using message_ptr = std::unique_ptr<rd_kafka_message_t, message_deleter>;
using error_ptr = std::unique_ptr<rd_kafka_error_t, error_deleter>;
using partition_list_ptr = std::unique_ptr<rd_kafka_topic_partition_list_t, partition_list_deleter>;
using headers_ptr = std::unique_ptr<rd_kafka_headers_t, headers_deleter>;
using metadata_ptr = std::unique_ptr<const rd_kafka_metadata_t, metadata_deleter>;
using admin_options_ptr = std::unique_ptr<rd_kafka_AdminOptions_t, admin_options_deleter>;

/// A new partition list with room for `size` entries.
inline partition_list_ptr make_partition_list(int size) {
  return partition_list_ptr(rd_kafka_topic_partition_list_new(size));
}

}  // namespace outbox::kafka
