#pragma once

#include "outbox/consumer/offset_tracker.hpp"
#include "outbox/consumer/record.hpp"
#include "outbox/kafka/handles.hpp"

#include <string>
#include <vector>

namespace outbox::consumer::detail {

/// Copies a message into `r` (as read from `topic`), reusing the capacity of its strings: no allocation once
/// warmed up. Null header values are listed in `r.null_headers`.
void fill_record(const rd_kafka_message_t* m, const std::string& topic, record& r);

/// A record some group parked or dead-lettered (it carries `retry_consumer_group` or `dlq_error_class`): never
/// a source record when a pattern matched its topic.
bool is_copy(const record& r);

/// The partitions of a librdkafka list.
std::vector<topic_partition> partitions_of(const rd_kafka_topic_partition_list_t* list);

/// `t[0],t[1],u[3]`, for log lines.
std::string describe(const std::vector<topic_partition>& tps);

}  // namespace outbox::consumer::detail
