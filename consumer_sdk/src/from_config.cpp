#include "outbox/config/consumer_config.hpp"
#include "outbox/consumer/consumer.hpp"
#include "outbox/dedupe/store.hpp"

namespace outbox::consumer {

consumer_options from_config(const config::consumer_config& c) {
  consumer_options o;
  o.brokers = c.consumer.brokers;
  o.group_id = c.consumer.group_id;
  o.topics = c.consumer.topics;
  o.properties.assign(c.consumer.properties.begin(), c.consumer.properties.end());
  o.retry = policy_from_config(c.retry);
  o.retry_topics = c.retry.topics;
  o.per_key_ordering = c.retry.ordering == config::retry_ordering::per_key;
  o.dlq_topic = c.dlq.topic;
  o.dlq_max_ratio = c.dlq.max_ratio;
  o.dlq_window = c.dlq.window;
  switch (c.dedupe.store) {
    case config::dedupe_store::memory: {
      dedupe::memory_options m;
      m.ttl = c.dedupe.retention;
      o.dedupe = dedupe::make_memory_store(m);
      break;
    }
    case config::dedupe_store::sqlite: {
      dedupe::sqlite_options s;
      s.path = c.dedupe.path;
      s.retention = c.dedupe.retention;
      o.dedupe = dedupe::make_sqlite_store(s);
      break;
    }
    case config::dedupe_store::redis: {
      dedupe::redis_options r;
      r.url = c.dedupe.url;
      r.retention = c.dedupe.retention;
      o.dedupe = dedupe::make_redis_store(r);
      break;
    }
    case config::dedupe_store::postgres: {
      inbox_options i;
      i.dsn = c.dedupe.dsn;
      i.retention = c.dedupe.retention;
      o.inbox = i;
      break;
    }
  }
  return o;
}

}  // namespace outbox::consumer
