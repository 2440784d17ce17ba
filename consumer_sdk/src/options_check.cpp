#include "options_check.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/base/record_format.hpp"

#include <algorithm>
#include <stdexcept>

namespace outbox::consumer::detail {
namespace {

using std::chrono::milliseconds;

bool topic_safe(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
  });
}

std::string readable(milliseconds d) { return record_format::delay_name(d); }

}  // namespace

std::string checked_group(const consumer_options& o) {
  if (o.group_id.empty()) throw outbox_error("config", "consumer.group_id is empty; set the consumer group");
  if (!topic_safe(o.group_id)) {
    throw outbox_error("config", "consumer.group_id `" + o.group_id +
                                     "` may hold only letters, digits, `.`, `_` and `-`: it is part of its retry and "
                                     "dead-letter topics' names");
  }
  if (o.topics.empty()) throw outbox_error("config", "consumer.topics is empty; name at least one topic");
  if (o.dlq_topic.empty() || o.dlq_topic == "{topic}") {
    throw outbox_error("config", "dlq.topic must name a topic of its own, e.g. {topic}.{group}.dlq");
  }
  for (const auto d : o.retry_topics) {
    if (d.count() <= 0) throw outbox_error("config", "retry.topics: every tier waits longer than 0s");
  }
  if (o.workers < 1 || o.workers > k_max_workers) {
    throw outbox_error("config", "consumer.workers is " + std::to_string(o.workers) + "; it must be 1 to " +
                                     std::to_string(k_max_workers) + " (1 runs records on the polling thread)");
  }
  if (o.inbox && o.inbox->batch < 1) throw outbox_error("config", "inbox.batch_size must be at least 1");
  if (o.inbox && o.inbox->batch > 1 && o.workers > 1) {
    throw outbox_error("config", "inbox.batch_size " + std::to_string(o.inbox->batch) +
                                     " needs consumer.workers: 1 (it is " + std::to_string(o.workers) +
                                     "); run more workers or batch, not both");
  }
  if (o.inbox && o.inbox->batch_time.count() <= 0)
    throw outbox_error("config", "inbox.batch_time must be more than 0s");
  return o.group_id;
}

dlq_breaker checked_breaker(const consumer_options& o) {
  try {
    return {o.dlq_max_ratio, o.dlq_window};
  } catch (const std::invalid_argument& e) {
    throw outbox_error("config", e.what());
  }
}

retry_schedule checked_schedule(const retry_policy& p) {
  try {
    return retry_schedule(p);
  } catch (const std::invalid_argument& e) {
    throw outbox_error("config", std::string("retry: ") + e.what());
  }
}

void check_retention(const consumer_options& o, const retry_schedule& schedule, milliseconds retention) {
  const milliseconds in_process =
      o.retry.max_attempts > 0 ? schedule.worst_case_total(o.retry.max_attempts) : milliseconds(0);
  if (in_process > std::chrono::minutes(5)) {
    log::warn("consumer",
              "in-process retries can hold a partition for a long time; retry.topics retries without "
              "blocking it",
              {{"worst_case", readable(in_process)}});
  }
  if (retention.count() == 0) return;
  milliseconds tiers(0);
  for (const auto d : o.retry_topics) tiers += d;
  const milliseconds needed = in_process + tiers + o.replay_window;
  if (retention < needed) {
    throw outbox_error("config", "dedupe.retention " + readable(retention) +
                                     " is shorter than the retry schedule (in-process " + readable(in_process) +
                                     " + tiers " + readable(tiers) + ") plus dlq.replay_window " +
                                     readable(o.replay_window) + "; raise it to at least " + readable(needed));
  }
}

}  // namespace outbox::consumer::detail
