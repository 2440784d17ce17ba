#pragma once

#include "outbox/config/relay_config.hpp"
#include "outbox/metrics/registry.hpp"
#include "outbox/relay/source_setup.hpp"

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace outbox::relay {

/// The relay's metrics (SPEC §4, prefix `outbox_relay_`): written on the loop thread, read by the HTTP thread.
/// Values that are only known while the relay streams from its slot are NaN otherwise, so a standby or a relay that
/// lost PostgreSQL never exports stale numbers.
class relay_metrics {
 public:
  relay_metrics(metrics::registry& reg, const config::relay_config& c);

  /// The published-events counter of a source (table index, or the message source) and topic.
  metrics::counter& published(std::uint32_t source, std::string_view topic);
  /// Counts one failed attempt (a refused, failed or transient Kafka error) by its reason.
  void publish_error(std::string_view reason);
  /// exactly_once: one Kafka transaction ended (`committed`, `failed`, `aborted`).
  void kafka_transaction(std::string_view outcome) { m_kafka_transactions.with({std::string(outcome)}).inc(); }
  /// Counts an invalid record by reason and what happened to it (halted, dead_lettered, skipped).
  void invalid_record(std::string_view reason, std::string_view action);
  /// Slot health as last read; NaN everywhere when `known` is false.
  void slot(const slot_facts& s, bool known);
  void slot_lag(double lag_bytes, double retained_bytes);
  void forget_slot();

  metrics::counter& transactions;
  metrics::gauge& inflight_messages;
  metrics::gauge& inflight_bytes;
  metrics::gauge& confirmed_lsn;
  metrics::histogram& commit_to_ack;
  metrics::gauge& leader;
  metrics::gauge& leader_epoch;
  metrics::gauge& stalled;
  metrics::gauge& halted;
  metrics::gauge& up;
  metrics::gauge& kafka_up;
  metrics::gauge& postgres_up;
  metrics::gauge& delete_backlog;
  metrics::counter& delete_errors;
  metrics::counter& backfill_rows;
  metrics::gauge& backfill_running;
  metrics::counter& reconnects;
  metrics::counter& heartbeats;

 private:
  metrics::family<metrics::counter>& m_published;
  metrics::family<metrics::counter>& m_publish_errors;
  metrics::family<metrics::counter>& m_invalid;
  metrics::family<metrics::counter>& m_kafka_transactions;
  metrics::gauge& m_lag;
  metrics::gauge& m_retained;
  metrics::family<metrics::gauge>& m_wal_status;
  metrics::gauge& m_safe_wal;
  metrics::gauge& m_slot_active;
  metrics::gauge& m_slot_invalidated;
  metrics::gauge& m_slot_failover;
  metrics::gauge& m_slot_synced;
  metrics::gauge& m_slot_failover_unprotected;
  std::vector<std::string> m_source_names;
  std::unordered_map<std::uint32_t, std::map<std::string, metrics::counter*, std::less<>>> m_published_cache;
  metrics::counter* m_last_published = nullptr;  ///< the counter of m_last_published_source and _topic
  std::uint32_t m_last_published_source = 0;
  std::string_view m_last_published_topic;  ///< a key of m_published_cache
  std::map<std::string, metrics::counter*, std::less<>> m_error_cache;
};

}  // namespace outbox::relay
