// The loop's timers: status updates, liveness, the slot watch, heartbeats and deletes.
#include "relay_loop.hpp"

namespace outbox::relay {

void relay::loop::arm_status_timer() {
  m_status_timer.expires_after(m_config.relay.status_interval);
  m_status_timer.async_wait([this](const std::error_code& ec) {
    if (ec || m_finished) return;
    // librdkafka's wakeup fires only on empty -> non-empty; a periodic poll covers any gap.
    m_publisher->poll();
    after_deliveries();
    if (m_finished) return;
    tick();
    arm_status_timer();
  });
}

void relay::loop::tick() {
  const auto now = clock::now();
  if (m_phase == phase::streaming && m_stream) {
    const auto quiet = now - m_last_message;
    const bool reading = !reading_paused();
    const milliseconds probe_every = std::clamp(m_stream_timeout / 10, milliseconds(1000), milliseconds(5000));
    // Liveness: the server answers a status update that asks for a reply; silence for stream_timeout while we
    // read means the connection is dead even if TCP has not noticed.
    if (reading && quiet > m_stream_timeout) {
      on_source_error(error{"replication",
                            "no message from PostgreSQL for " +
                                std::to_string(std::chrono::duration_cast<milliseconds>(quiet).count()) +
                                " ms (source.stream_timeout)",
                            retry_class::retryable});
      return;
    }
    if (reading && quiet > probe_every && now - m_last_probe > probe_every) {
      m_last_probe = now;
      send_status(true);
    } else {
      send_status(false);
    }
    const bool answering = !reading || quiet <= 3 * probe_every;
    if (answering != m_postgres_ok.load()) {
      m_postgres_ok = answering;
      m_metrics.postgres_up.set(answering ? 1 : 0);
      if (!answering) log::warn("source", "PostgreSQL does not answer", {{"side", "postgresql"}});
    }
  } else if (m_phase == phase::halted && m_stream) {
    send_status(false);
  }
  if (m_phase == phase::streaming && m_watch && !m_watch_busy && now - m_last_watch >= k_slot_watch_interval) {
    start_slot_watch();
  }
  if (m_watch_busy && now - m_watch_started > 2 * k_slot_watch_interval) {
    if (m_postgres_ok.load())
      log::warn("source", "PostgreSQL does not answer the side connection", {{"side", "postgresql"}});
    m_postgres_ok = false;
    m_metrics.postgres_up.set(0);
  }
  const auto heartbeat = m_config.source.heartbeat_interval;
  if (heartbeat.count() > 0 && m_phase == phase::streaming && m_watch && now - m_last_confirm_change >= heartbeat &&
      now - m_last_heartbeat >= heartbeat) {
    m_last_heartbeat = now;
    m_watch->post(
        [this](pg_session& s) {
          write_heartbeat(s, m_config);
          asio::post(m_io, [this] { m_metrics.heartbeats.inc(); });
        },
        [](const outbox_error& e) {
          log::warn("relay", "heartbeat failed", {{"side", "postgresql"}, {"error", e.what()}});
        });
  }
  flush_deletes(true);
  if (m_halted && now - m_last_halt_log >= k_halt_log_interval) {
    m_last_halt_log = now;
    const std::lock_guard lock(m_reason_mutex);
    log::error(k_component, "halted; waiting for an operator", {{"reason", m_halt_reason}});
  }
}

void relay::loop::start_slot_watch() {
  m_watch_busy = true;
  m_watch_started = clock::now();
  m_watch->post(
      [this, tables = m_report.tables](pg_session& s) {
        auto result = std::make_shared<slot_watch_result>(watch_slot(s, m_config, tables));
        asio::post(m_io, [this, result] { on_slot_watch(*result); });
      },
      [this](const outbox_error& e) {
        asio::post(m_io, [this, what = std::string(e.what())] {
          m_watch_busy = false;
          m_last_watch = clock::now();
          log::debug(k_component, "reading slot statistics failed", {{"side", "postgresql"}, {"error", what}});
        });
      });
}

void relay::loop::on_slot_watch(const slot_watch_result& r) {
  m_watch_busy = false;
  m_last_watch = clock::now();
  if (m_phase != phase::streaming) return;
  if (m_stream && !m_postgres_ok.load() && clock::now() - m_last_message <= m_stream_timeout) {
    m_postgres_ok = true;
    m_metrics.postgres_up.set(1);
  }
  m_metrics.slot(r.slot, true);
  m_metrics.slot_lag(r.lag_bytes, r.retained_bytes);
  if (r.publication_problem) {
    halt(*r.publication_problem);
    return;
  }
  if (r.slot.invalidated()) {
    halt("replication slot " + m_config.source.slot + " was invalidated (wal_status " + r.slot.wal_status +
         "): PostgreSQL removed WAL it still needed. Restart with --recreate-slot to publish the rows the tables "
         "hold now, then stream");
    return;
  }
  // Stalled: the server's WAL is ahead of the slot and nothing was confirmed for stall_timeout.
  const bool stalled = r.lag_bytes > 0 && clock::now() - m_last_confirm_change >= m_config.relay.stall_timeout;
  if (stalled != m_stalled.load()) {
    m_stalled = stalled;
    m_metrics.stalled.set(stalled ? 1 : 0);
    if (stalled) {
      log::warn(k_component, "stalled: WAL moves but nothing was confirmed",
                {{"lag_bytes", r.lag_bytes},
                 {"confirmed_lsn", format_lsn(m_last_confirmed)},
                 {"inflight", m_publisher->inflight_messages()}});
    } else {
      log::info(k_component, "no longer stalled", {{"confirmed_lsn", format_lsn(m_last_confirmed)}});
    }
  }
}

void relay::loop::flush_deletes(bool force) {
  if (!m_deleter || m_rows.batch_out() || clock::now() < m_next_delete_attempt) return;
  auto batch = m_rows.take_batch(force || m_stopping, k_delete_batch);
  if (!batch) return;
  const std::size_t table = batch->table;
  const std::string id_type = table < m_report.tables.size() ? m_report.tables[table].id_type : "";
  auto ids = std::make_shared<std::vector<std::string>>(std::move(batch->ids));
  m_deleter->post(
      [this, table, id_type, ids](pg_session& s) {
        delete_rows(s, m_config.source.tables[table], id_type, *ids);
        asio::post(m_io, [this] { on_deleted(true, {}); });
      },
      [this, table](const outbox_error& e) {
        asio::post(m_io, [this, what = m_config.source.tables[table].qualified_name() + ": " + e.what()] {
          on_deleted(false, what);
        });
      });
  m_metrics.delete_backlog.set(static_cast<double>(m_rows.backlog()));
}

void relay::loop::on_deleted(bool ok, const std::string& why) {
  m_rows.batch_done(ok);
  if (ok) {
    m_delete_backoff = milliseconds(0);
  } else {
    m_metrics.delete_errors.inc();
    m_delete_backoff = std::min(k_max_backoff, std::max(milliseconds(500), m_delete_backoff * 2));
    m_next_delete_attempt = clock::now() + m_delete_backoff;
    // Left for the next attempt: a row not deleted yet is never published twice because of it.
    log::warn(k_component, "deleting published rows failed; will retry",
              {{"side", "postgresql"},
               {"backlog", m_rows.backlog()},
               {"retry_in_ms", m_delete_backoff.count()},
               {"error", why}});
  }
  m_metrics.delete_backlog.set(static_cast<double>(m_rows.backlog()));
  flush_deletes(false);
  resume();
  maybe_finish_shutdown();
}

}  // namespace outbox::relay
