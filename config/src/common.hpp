#pragma once

#include "outbox/config/relay_config.hpp"
#include "outbox/config/schema.hpp"

#include <string>
#include <string_view>

namespace outbox::config::detail {

/// The `metrics:` section every binary has, listening on `default_listen`.
key_spec metrics_section(std::string default_listen);
/// The `log:` section every binary has.
key_spec log_section();

/// librdkafka properties whose values are secrets (key material, passwords, SASL and OAuth credentials), as
/// patterns for key_spec::secret_entries on every `properties` map handed to librdkafka.
std::vector<std::string> kafka_secret_properties();

metrics_config read_metrics(const values& v);
log_config read_log(const values& v);

}  // namespace outbox::config::detail
