#include "relay_metrics.hpp"

#include <limits>

namespace outbox::relay {
namespace {

constexpr double k_unknown = std::numeric_limits<double>::quiet_NaN();
constexpr const char* k_wal_statuses[] = {"reserved", "extended", "unreserved", "lost"};

}  // namespace

relay_metrics::relay_metrics(metrics::registry& reg, const config::relay_config& c)
    : transactions(reg.add_counter("outbox_relay_transactions_total",
                                   "Transactions read from the slot that carried at least one outbox event.")
                       .get()),
      inflight_messages(
          reg.add_gauge("outbox_relay_inflight_messages", "Records handed to Kafka, not yet acknowledged.").get()),
      inflight_bytes(reg.add_gauge("outbox_relay_inflight_bytes", "Bytes of records not yet acknowledged.").get()),
      confirmed_lsn(
          reg.add_gauge("outbox_relay_confirmed_lsn", "Last LSN confirmed to PostgreSQL, as a number.").get()),
      commit_to_ack(reg.add_histogram("outbox_relay_commit_to_ack_seconds",
                                      "From the transaction's commit to Kafka's acknowledgement.", {},
                                      metrics::latency_buckets())
                        .get()),
      leader(reg.add_gauge("outbox_relay_leader", "1 on the instance that leads the slot, 0 on a standby.").get()),
      leader_epoch(reg.add_gauge("outbox_relay_leader_epoch",
                                 "The leader epoch (fencing token) of this relay's last term; rises at every takeover.")
                       .get()),
      stalled(
          reg.add_gauge("outbox_relay_stalled", "1 when WAL moves but nothing was confirmed for relay.stall_timeout.")
              .get()),
      halted(reg.add_gauge("outbox_relay_halted",
                           "1 when the relay stopped on something only an operator can fix (a bad record with "
                           "sink.on_invalid_record: halt, a lost slot, a DDL change); the log says what.")
                 .get()),
      up(reg.add_gauge("outbox_relay_up", "1 while the relay process runs.").get()),
      kafka_up(reg.add_gauge("outbox_relay_kafka_up", "1 while the Kafka cluster answers the relay.").get()),
      postgres_up(reg.add_gauge("outbox_relay_postgres_up", "1 while PostgreSQL answers the relay.").get()),
      delete_backlog(reg.add_gauge("outbox_relay_delete_backlog_rows",
                                   "Acknowledged rows waiting to be deleted (delete_after_publish).")
                         .get()),
      delete_errors(reg.add_counter("outbox_relay_delete_errors_total", "Failed deletes of published rows.").get()),
      backfill_rows(
          reg.add_counter("outbox_relay_backfill_rows_total", "Rows published from a snapshot of the tables.").get()),
      backfill_running(reg.add_gauge("outbox_relay_backfill_running", "1 while a backfill runs.").get()),
      reconnects(reg.add_counter("outbox_relay_stream_reconnects_total",
                                 "Times the replication stream was lost and opened again.")
                     .get()),
      heartbeats(reg.add_counter("outbox_relay_heartbeats_total", "Heartbeat messages written.").get()),
      m_published(reg.add_counter("outbox_relay_events_published_total",
                                  "Events acknowledged by Kafka, per source table and topic.", {"table", "topic"})),
      m_publish_errors(reg.add_counter("outbox_relay_publish_errors_total",
                                       "Failed attempts to publish, by reason: records refused, delivery failures, "
                                       "and every transient Kafka error (connection, all brokers down, timeouts).",
                                       {"reason"})),
      m_invalid(reg.add_counter("outbox_relay_invalid_records_total",
                                "Rows or envelopes the relay could not publish, by reason and what it did with them.",
                                {"reason", "action"})),
      m_kafka_transactions(reg.add_counter("outbox_relay_kafka_transactions_total",
                                           "exactly_once: Kafka transactions by outcome (committed, failed, aborted).",
                                           {"outcome"})),
      m_lag(reg.add_gauge("outbox_relay_replication_lag_bytes",
                          "Server WAL position minus the slot's "
                          "confirmed_flush_lsn; NaN when unknown.")
                .get()),
      m_retained(
          reg.add_gauge("outbox_relay_slot_retained_wal_bytes",
                        "WAL the slot keeps on the server (current position minus restart_lsn); NaN when unknown.")
              .get()),
      m_wal_status(reg.add_gauge("outbox_relay_slot_wal_status",
                                 "1 for the slot's current wal_status (reserved, extended, unreserved, lost).",
                                 {"status"})),
      m_safe_wal(reg.add_gauge("outbox_relay_slot_safe_wal_bytes",
                               "WAL that can still be written before the slot is invalidated (safe_wal_size); NaN when "
                               "unlimited or unknown.")
                     .get()),
      m_slot_active(reg.add_gauge("outbox_relay_slot_active", "1 while a walsender uses the slot.").get()),
      m_slot_invalidated(
          reg.add_gauge("outbox_relay_slot_invalidated", "1 when PostgreSQL can no longer stream from the slot.")
              .get()),
      m_slot_failover(reg.add_gauge("outbox_relay_slot_failover",
                                    "1 when the slot is a failover slot (PostgreSQL 17+), synchronized to standbys.")
                          .get()),
      m_slot_synced(
          reg.add_gauge("outbox_relay_slot_synced", "1 when the slot was synchronized from a primary.").get()),
      m_slot_failover_unprotected(
          reg.add_gauge("outbox_relay_slot_failover_unprotected",
                        "1 when the slot is a failover slot but the primary's synchronized_standby_slots is empty: "
                        "a promotion may lose events the relay already published.")
              .get()) {
  for (const auto& t : c.source.tables) m_source_names.push_back(t.qualified_name());
  m_source_names.push_back("message:" + (c.source.logical_messages ? c.source.logical_messages->prefix : ""));
  // Every reason starts at 0, so a rate over the first error is not lost.
  for (const char* reason : {"refused", "producer_failed", "delivery", "fatal", "transport", "all_brokers_down",
                             "queue_full", "timed_out", "unknown_topic", "authentication"}) {
    m_publish_errors.with({reason});
  }
  up.set(1);
  kafka_up.set(1);
  postgres_up.set(0);
  forget_slot();
}

metrics::counter& relay_metrics::published(std::uint32_t source, std::string_view topic) {
  // Deliveries come in runs of one table and topic: the last pair is checked first.
  if (m_last_published != nullptr && source == m_last_published_source && topic == m_last_published_topic) {
    return *m_last_published;
  }
  auto& cache = m_published_cache[source];
  auto it = cache.find(topic);
  if (it == cache.end()) {
    it = cache.emplace(std::string(topic), &m_published.with({m_source_names.at(source), std::string(topic)})).first;
  }
  m_last_published = it->second;
  m_last_published_source = source;
  m_last_published_topic = it->first;  // a view of the cache's key, which stays as long as the cache
  return *m_last_published;
}

void relay_metrics::publish_error(std::string_view reason) {
  const auto it = m_error_cache.find(reason);
  if (it != m_error_cache.end()) {
    it->second->inc();
    return;
  }
  auto& counter = m_publish_errors.with({std::string(reason)});
  m_error_cache.emplace(std::string(reason), &counter);
  counter.inc();
}

void relay_metrics::invalid_record(std::string_view reason, std::string_view action) {
  m_invalid.with({std::string(reason), std::string(action)}).inc();
}

void relay_metrics::slot(const slot_facts& s, bool known) {
  if (!known || !s.exists) {
    forget_slot();
    return;
  }
  for (const char* st : k_wal_statuses) m_wal_status.with({st}).set(s.wal_status == st ? 1 : 0);
  m_safe_wal.set(s.safe_wal_size ? static_cast<double>(*s.safe_wal_size) : k_unknown);
  m_slot_active.set(s.active ? 1 : 0);
  m_slot_invalidated.set(s.invalidated() ? 1 : 0);
  m_slot_failover.set(s.failover ? 1 : 0);
  m_slot_synced.set(s.synced ? 1 : 0);
  m_slot_failover_unprotected.set(s.failover_unprotected ? 1 : 0);
}

void relay_metrics::slot_lag(double lag_bytes, double retained_bytes) {
  m_lag.set(lag_bytes);
  m_retained.set(retained_bytes);
}

void relay_metrics::forget_slot() {
  m_lag.set(k_unknown);
  m_retained.set(k_unknown);
  for (const char* st : k_wal_statuses) m_wal_status.with({st}).set(0);
  m_safe_wal.set(k_unknown);
  m_slot_active.set(k_unknown);
  m_slot_invalidated.set(k_unknown);
  m_slot_failover.set(k_unknown);
  m_slot_synced.set(k_unknown);
  m_slot_failover_unprotected.set(k_unknown);
}

}  // namespace outbox::relay
