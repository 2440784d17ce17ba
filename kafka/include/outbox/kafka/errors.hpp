#pragma once

#include "outbox/base/error.hpp"

#include <librdkafka/rdkafka.h>

namespace outbox::kafka {

/// The one place librdkafka and broker error codes are classified: worth waiting out (retryable), will not
/// change by retrying (fatal), or unknown whether Kafka took the record (in_doubt).
retry_class classify(rd_kafka_resp_err_t err) noexcept;

/// Errors that refuse this one record for good while the producer itself stays usable (too large, invalid,
/// topic not authorized or invalid): the caller decides (halt, dead-letter), retrying cannot help.
bool record_refused(rd_kafka_resp_err_t err) noexcept;

}  // namespace outbox::kafka
