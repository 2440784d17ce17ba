#pragma once

#include "dlq_breaker.hpp"
#include "outbox/consumer/consumer.hpp"
#include "outbox/consumer/retry_schedule.hpp"

#include <chrono>
#include <string>

namespace outbox::consumer::detail {

// The checks consumer_options get at construction, whether from_config() built them or the caller did; each
// throws outbox_error("config") naming the option and what to do.

/// The most `consumer.workers` there may be.
inline constexpr int k_max_workers = 256;

/// The group (topic-safe: it is part of derived topic names), the topics and the dead-letter template, and the number
/// of workers.
std::string checked_group(const consumer_options& o);
/// The breaker from dlq.max_ratio and dlq.window.
dlq_breaker checked_breaker(const consumer_options& o);
/// The in-process schedule.
retry_schedule checked_schedule(const retry_policy& p);
/// A dedupe `retention` (0: no dedupe) that covers the whole retry schedule plus the replay window; warns when
/// in-process retries can hold a partition for minutes.
void check_retention(const consumer_options& o, const retry_schedule& schedule, std::chrono::milliseconds retention);

}  // namespace outbox::consumer::detail
