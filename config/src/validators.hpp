#pragma once

#include "outbox/config/schema.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace outbox::config::detail {

/// A PostgreSQL identifier as the relay uses it: 1 to 63 bytes.
validator pg_identifier();
/// A replication slot name: lower case letters, digits and `_`, at most 63.
validator slot_name();
/// `schema.table` or `table`.
validator table_name();
/// A Kafka topic name, or a template of one whose `{placeholders}` come from `allowed`.
validator topic_template(std::vector<std::string> allowed);
/// A list of topics (or `^regex` subscriptions), none empty.
validator topic_list();
/// Like topic_list, but an empty list is allowed and every `^regex` must compile.
validator topic_patterns();
/// `host:port`, with IPv6 hosts in brackets.
validator listen_address();
/// A non-empty string.
validator not_empty();
/// A duration or size greater than zero.
validator positive();
/// A number in (0, 1].
validator ratio();
/// Rejects one choice of an enumeration with `message`.
validator reject(std::string choice, std::string message);

/// Splits `schema.table`; the schema is `public` when there is no dot.
std::pair<std::string, std::string> split_table_name(std::string_view name);

}  // namespace outbox::config::detail
