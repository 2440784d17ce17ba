#include "outbox/config/consumer_config.hpp"
#include "outbox/consumer/consumer.hpp"
#include "outbox/dedupe/key_holds.hpp"
#include "outbox/dedupe/store.hpp"

#include "topic_setup.hpp"

#include <algorithm>

namespace outbox::consumer {

consumer_options from_config(const config::consumer_config& c) {
  consumer_options o;
  o.brokers = c.consumer.brokers;
  o.group_id = c.consumer.group_id;
  o.topics = c.consumer.topics;
  o.properties.assign(c.consumer.properties.begin(), c.consumer.properties.end());
  o.pattern_refresh = c.consumer.pattern_refresh;
  o.workers = c.consumer.workers;
  o.retry = policy_from_config(c.retry);
  o.retry_topics = c.retry.topics;
  o.per_key_ordering = c.retry.ordering == config::retry_ordering::per_key;
  o.topic_replication_factor = c.retry.topic_replication_factor;
  o.retry_topic_retention = c.retry.topic_retention;
  o.dlq_topic = c.dlq.topic;
  o.dlq_max_ratio = c.dlq.max_ratio;
  o.dlq_window = c.dlq.window;
  o.dlq_retention = c.dlq.retention;
  o.replay_window = c.dlq.replay_window;
  o.probe_interval = c.dlq.probe_interval;
  o.check_retention =
      c.dedupe.check == config::retention_check::refuse ? retention_check::refuse : retention_check::warn;
  o.cleanup_interval = c.dedupe.cleanup_interval;
  o.cleanup_batch = static_cast<std::size_t>(c.dedupe.cleanup_batch);
  if (!c.dedupe.key_header.empty()) o.dedupe_key = dedupe_key_from_header(c.dedupe.key_header);

  // A held key lapses once no copy of its records can be left: after the longest tier topic's retention.
  std::chrono::milliseconds lapse = c.retry.topic_retention;
  for (const auto d : c.retry.topics) lapse = std::max(lapse, detail::tier_retention(c.retry.topic_retention, d));
  const bool holds = o.per_key_ordering && !o.retry_topics.empty();
  switch (c.dedupe.store) {
    case config::dedupe_store::memory: {
      dedupe::memory_options m;
      m.ttl = c.dedupe.retention;
      m.lease = c.dedupe.lease;
      o.dedupe = dedupe::make_memory_store(m);
      if (holds) o.holds = dedupe::make_memory_key_holds(lapse);
      break;
    }
    case config::dedupe_store::sqlite: {
      dedupe::sqlite_options s;
      s.path = c.dedupe.path;
      s.retention = c.dedupe.retention;
      s.lease = c.dedupe.lease;
      o.dedupe = dedupe::make_sqlite_store(s);
      if (holds) o.holds = dedupe::make_sqlite_key_holds(s, lapse);
      break;
    }
    case config::dedupe_store::redis: {
      dedupe::redis_options r;
      r.url = c.dedupe.url;
      r.retention = c.dedupe.retention;
      r.lease = c.dedupe.lease;
      o.dedupe = dedupe::make_redis_store(r);
      if (holds) o.holds = dedupe::make_redis_key_holds(r, lapse);
      break;
    }
    case config::dedupe_store::postgres: {
      inbox_options i;
      i.dsn = c.dedupe.dsn;
      i.retention = c.dedupe.retention;
      i.keep_at_least = c.dedupe.keep_at_least;
      i.create_table = c.inbox.create_table;
      i.batch = static_cast<std::size_t>(c.inbox.batch_size);
      i.batch_time = c.inbox.batch_time;
      o.inbox = i;
      if (holds) o.holds = dedupe::make_postgres_key_holds(i.dsn, i.table, lapse, i.create_table);
      break;
    }
  }
  return o;
}

}  // namespace outbox::consumer
