#include "relay_loop.hpp"

namespace outbox::relay {

std::string relay::loop::source_name(std::uint32_t source) const {
  if (source < m_config.source.tables.size()) return m_config.source.tables[source].qualified_name();
  return "message:" + (m_config.source.logical_messages ? m_config.source.logical_messages->prefix : std::string());
}

void relay::loop::teardown() {
  if (m_torn_down) return;
  m_torn_down = true;
  m_cancel_connect = true;
  if (m_connector.joinable()) m_connector.join();
  if (m_tx_thread.joinable()) m_tx_thread.join();
  if (m_backfill) m_backfill->stop();
  if (m_watch) m_watch->stop();
  if (m_deleter) m_deleter->stop();
  destroy_publisher();
  release_pg_socket();
  m_stream.reset();
}

void relay::loop::wait_for_signal() {
  m_signals.async_wait([this](const std::error_code& ec, int sig) {
    if (ec) return;
    begin_shutdown(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    wait_for_signal();
  });
}

void relay::loop::create_publisher() {
  const std::uint64_t generation = ++m_publisher_generation;
  m_publisher = std::make_unique<publisher>(
      m_config.sink, static_cast<std::size_t>(m_config.relay.max_inflight_messages),
      [this](const delivery& d) { on_delivery(d); },
      [this, generation](rd_kafka_resp_err_t err, const std::string& reason) {
        // Usually from poll() on this thread, but a transaction's commit may serve it on its own thread.
        asio::post(m_io, [this, generation, err, reason] {
          if (generation == m_publisher_generation) on_kafka_error(err, reason);
        });
      },
      eos() ? transactional_id_of(m_config) : std::string(), m_batch_size_cap);
  m_tx_initialized = false;
  m_kafka_wakeup = std::make_unique<asio::posix::stream_descriptor>(m_io, m_publisher->wakeup_fd());
  watch_kafka(generation);
  m_probe = std::make_unique<kafka_probe>(
      m_publisher->handle(), k_kafka_probe_interval,
      [this, generation](bool up, const std::string& why, clock::time_point sent) {
        asio::post(m_io, [this, generation, up, why, sent] {
          if (generation != m_publisher_generation) return;
          // An answer counts only if its request left after the last "all brokers down".
          if (up && sent < m_kafka_down_at) return;
          set_kafka_up(up, why);
        });
      },
      [this, generation](const std::string& topic, const topic_limits& limits) {
        asio::post(m_io, [this, generation, topic, limits] {
          if (generation == m_publisher_generation) on_topic_limits(topic, limits);
        });
      });
}

void relay::loop::destroy_publisher() {
  if (m_probe) m_probe->stop();
  m_probe.reset();
  if (m_kafka_wakeup) {
    m_kafka_wakeup->cancel();
    static_cast<void>(m_kafka_wakeup->release());  // the publisher owns the pipe
    m_kafka_wakeup.reset();
  }
  if (m_publisher) m_publisher->detach();  // purged reports must not reach a loop being torn down
  m_publisher.reset();
}

void relay::loop::start_connect() {
  if (m_stopping) return;
  m_phase = phase::connecting;
  m_cancel_connect = false;
  if (m_connector.joinable()) m_connector.join();
  const lsn_t from = confirmable();
  const run_options opts = m_first_connect ? m_opts : run_options{};
  m_connector = std::thread([this, from, opts] {
    try {
      kafka_start start_kafka;
      if (eos()) start_kafka = [this] { return start_kafka_transactions(); };
      auto plan = std::make_shared<source_plan>(open_source(m_config, opts, from, &m_cancel_connect,
                                                            [this](const std::string& holder) { on_standby(holder); },
                                                            start_kafka));
      asio::post(m_io, [this, plan] { on_connected(std::move(*plan)); });
    } catch (const outbox_error& e) {
      asio::post(m_io, [this, err = e.value()] { on_connect_failed(err); });
    } catch (const std::exception& e) {
      asio::post(m_io, [this, what = std::string(e.what())] {
        on_connect_failed(error{"source", what, retry_class::retryable});
      });
    }
  });
}

void relay::loop::on_standby(const std::string& holder) {
  {
    const std::lock_guard lock(m_reason_mutex);
    m_leader_holder = holder;
  }
  m_standby = true;
  asio::post(m_io, [this] {
    m_metrics.leader.set(0);
    m_metrics.postgres_up.set(1);  // it answers; this relay waits its turn
  });
}

void relay::loop::on_connect_failed(const error& e) {
  m_standby = false;
  if (m_stopping) {
    maybe_finish_shutdown();
    return;
  }
  if (!e.retryable()) {
    if (m_ever_streamed) {
      halt(e.message);
    } else {
      fail(e);
    }
    return;
  }
  if (e.category == "kafka") {
    schedule_reconnect("cannot start Kafka transactions; retrying", e.message, "kafka");
  } else {
    schedule_reconnect("cannot reach PostgreSQL; retrying", e.message);
  }
}

void relay::loop::on_connected(source_plan plan) {
  if (m_stopping) {
    maybe_finish_shutdown();
    return;
  }
  m_first_connect = false;
  const bool took_over = m_standby.exchange(false);
  m_epoch = plan.epoch;
  m_metrics.leader.set(1);
  m_metrics.leader_epoch.set(static_cast<double>(plan.epoch));
  if (m_config.source.leader_lock) {
    log::info(k_component, took_over ? "took the lead of the slot" : "leading the slot",
              {{"slot", m_config.source.slot}, {"epoch", plan.epoch}});
  }
  for (const auto& n : plan.notes) log::info("source", n);
  m_report = std::move(plan.report);
  m_identity = plan.identity;
  m_postgres_ok = true;  // it answered; the stream's liveness takes over once it streams
  m_metrics.postgres_up.set(1);
  m_start_lsn = plan.start_lsn;
  if (eos()) {
    forget_kafka_tx();
    m_committed_end = plan.start_lsn;
    m_last_complete_end = plan.start_lsn;
    m_skip = plan.last_checkpoint ? plan.last_checkpoint->partial : std::nullopt;
    log::info(k_component, "exactly_once: going on from the checkpoint",
              {{"end_lsn", format_lsn(plan.start_lsn)},
               {"checkpoint", plan.last_checkpoint ? std::string("found") : std::string("none yet")},
               {"partial", m_skip ? format_lsn(m_skip->final_lsn) + "+" + std::to_string(m_skip->rows)
                                  : std::string("no")},
               {"transactional_id", transactional_id_of(m_config)}});
  }
  m_stream = std::move(plan.stream);
  const milliseconds server_timeout =
      m_report.wal_sender_timeout.count() > 0 ? m_report.wal_sender_timeout : milliseconds(60'000);
  m_stream_timeout = m_config.source.stream_timeout.count() > 0 ? m_config.source.stream_timeout : server_timeout;
  m_stream_timeout = std::max(m_stream_timeout, 3 * m_config.relay.status_interval);
  if (!m_watch) {
    m_watch = std::make_unique<side_worker>("watch connection", side_params(m_config.source),
                                            m_config.source.connect_timeout);
    m_deleter = std::make_unique<side_worker>("delete connection", side_params(m_config.source),
                                              m_config.source.connect_timeout);
  }
  if (plan.backfill) {
    start_backfill(*plan.backfill);
  } else {
    begin_streaming();
  }
}

void relay::loop::begin_streaming() {
  m_pg_socket.assign(m_stream->socket());
  m_phase = phase::streaming;
  m_streaming = true;
  m_ever_streamed = true;
  m_postgres_ok = true;
  m_metrics.postgres_up.set(1);
  m_metrics.leader.set(1);
  m_backoff = milliseconds(0);
  m_last_message = clock::now();
  m_last_probe = clock::now();
  m_read_stopped = false;
  log::info(k_component, "streaming",
            {{"slot", m_config.source.slot},
             {"publication", m_config.source.publication},
             {"from_lsn", format_lsn(m_start_lsn)},
             {"server_lsn", format_lsn(m_identity.wal_position)},
             {"timeline", m_identity.timeline},
             {"database", m_identity.database}});
  pump();
}

void relay::loop::schedule_reconnect(std::string_view what, const std::string& why, std::string_view side) {
  m_phase = phase::reconnecting;
  m_backoff = std::min(k_max_backoff, std::max(milliseconds(500), m_backoff * 2));
  log::warn(side == "kafka" ? "kafka" : "source", what,
            {{"side", std::string(side)}, {"error", why}, {"retry_in_ms", m_backoff.count()}});
  m_reconnect_timer.expires_after(m_backoff);
  m_reconnect_timer.async_wait([this](const std::error_code& ec) {
    if (!ec) try_reconnect();
  });
}

void relay::loop::try_reconnect() {
  if (m_stopping || m_halted) return;
  if (m_publisher->inflight_messages() > 0 || m_pending || m_committing) {
    m_reconnect_timer.expires_after(milliseconds(100));
    m_reconnect_timer.async_wait([this](const std::error_code& ec) {
      if (!ec) try_reconnect();
    });
    return;
  }
  // exactly_once: the stream goes on from the checkpoint, so what the open transaction holds is sent again.
  if (eos()) abort_kafka_tx("the stream starts again from the checkpoint");
  reset_stream_state();
  start_connect();
}

void relay::loop::reset_stream_state() {
  const lsn_t confirmed = confirmable();
  m_tracker = lsn_tracker();
  m_tracker.observe_server_position(confirmed);
  m_decoder = pgoutput_decoder();
  m_router = router(m_config);
  m_tx.reset();
  m_rows.forget_unacked();
  m_received = 0;
}

void relay::loop::on_source_error(const error& e) {
  release_pg_socket();
  m_stream.reset();
  m_streaming = false;
  m_postgres_ok = false;
  m_metrics.postgres_up.set(0);
  m_metrics.leader.set(0);
  m_metrics.forget_slot();
  if (m_stopping) {
    m_read_stopped = true;
    maybe_finish_shutdown();
    return;
  }
  if (!e.retryable()) {
    halt(e.message);
    return;
  }
  m_metrics.reconnects.inc();
  schedule_reconnect(
      m_phase == phase::streaming ? "PostgreSQL connection lost; reconnecting" : "cannot reach PostgreSQL; retrying",
      e.message);
}

void relay::loop::release_pg_socket() {
  if (m_pg_socket.is_open()) {
    m_pg_socket.cancel();
    static_cast<void>(m_pg_socket.release());  // libpq owns the socket
  }
  m_waiting_for_pg = false;
}

bool relay::loop::reading_paused() const {
  return m_read_stopped || m_pending.has_value() || m_topic_check.has_value() || m_committing || over_limits();
}

bool relay::loop::over_limits() const {
  const auto max_messages = static_cast<std::size_t>(m_config.relay.max_inflight_messages);
  return m_committing || m_publisher->inflight_messages() >= max_messages ||
         m_publisher->inflight_bytes() >= m_config.relay.max_inflight_bytes ||
         m_publisher->tracked_records() >= 4 * max_messages ||
         m_rows.backlog() >= static_cast<std::size_t>(m_config.relay.max_delete_backlog);
}

void relay::loop::arm_pg_socket() {
  if (m_phase != phase::streaming || reading_paused() || m_waiting_for_pg || !m_pg_socket.is_open()) return;
  m_waiting_for_pg = true;
  m_pg_socket.async_wait(asio::posix::stream_descriptor::wait_read, [this](const std::error_code& ec) {
    m_waiting_for_pg = false;
    if (!ec) pump();
  });
}

void relay::loop::pump() {
  if (m_phase != phase::streaming || !m_stream) return;
  try {
    for (std::size_t n = 0; n < k_messages_per_turn; ++n) {
      if (reading_paused()) return;
      server_message msg;
      switch (m_stream->read(msg)) {
        case replication_stream::read_result::message:
          if (n == 0) {
            // Once a turn (at most k_messages_per_turn messages, milliseconds), not once a message.
            m_last_message = clock::now();
            m_postgres_ok = true;
          }
          handle(msg);
          if (!m_stream) return;  // handling stopped the stream
          break;
        case replication_stream::read_result::would_block:
          arm_pg_socket();
          return;
        case replication_stream::read_result::ended:
          throw outbox_error("replication", "the server ended the replication stream", retry_class::retryable);
      }
    }
    asio::post(m_io, [this] { pump(); });
  } catch (const outbox_error& e) {
    on_source_error(e.value());
  }
}

void relay::loop::handle(const server_message& sm) {
  if (const auto* ka = std::get_if<primary_keepalive>(&sm)) {
    m_received = std::max(m_received, ka->wal_end);
    const lsn_t before = m_tracker.confirmable();
    m_tracker.observe_server_position(ka->wal_end);
    if (log::enabled(log::level::debug)) {
      log::debug(k_component, "keepalive",
                 {{"wal_end", format_lsn(ka->wal_end)},
                  {"open_transactions", m_tracker.open_transactions()},
                  {"confirmable_before", format_lsn(before)},
                  {"confirmable", format_lsn(m_tracker.confirmable())}});
    }
    if (ka->reply_requested) send_status(false);
    return;
  }
  const auto& x = std::get<xlog_data>(sm);
  m_received = std::max(m_received, x.wal_start);
  pg_event ev = m_decoder.decode(x.payload, x.wal_start);
  std::visit([&](auto& e) { on_event(e, x.wal_start); }, ev);
}

void relay::loop::on_event(const begin_msg& b, lsn_t) {
  m_tracker.begin(b.final_lsn);
  m_tx = tx_context{b.final_lsn, b.xid, unix_ms(from_pg_epoch_us(b.commit_time_us))};
  m_tx_index = 0;
  m_tx_events = 0;
}

void relay::loop::on_event(const commit_msg& c, lsn_t) {
  m_tracker.commit(c.end_lsn);
  if (m_tx_events > 0) m_metrics.transactions.inc();
  ++m_transactions;
  if (eos()) {
    if (m_skip && m_tx && m_tx->commit_lsn == m_skip->final_lsn) m_skip.reset();
    m_last_complete_end = c.end_lsn;
  }
  m_tx.reset();
  if (eos()) at_commit_boundary(c.end_lsn);
  if (m_finishing_tx) {
    // SIGTERM came inside this transaction: it is now complete, so a restart repeats none of it.
    m_finishing_tx = false;
    stop_reading("the transaction in progress at the signal is complete");
  }
}

void relay::loop::on_event(const relation_msg& r, lsn_t lsn) {
  if (auto stop = m_router.on_relation(*r.rel)) {
    halt(*stop + " (at LSN " + format_lsn(lsn) + ")");
    return;
  }
  if (r.columns_changed) {
    log::info(k_component, "table columns changed mid-stream",
              {{"table", r.rel->schema + "." + r.rel->name}, {"columns", r.rel->columns.size()}});
  }
}

void relay::loop::on_event(const insert_msg& ins, lsn_t lsn) {
  if (!m_tx) throw outbox_error("decode", "Insert outside a transaction at LSN " + format_lsn(lsn));
  const routed r = m_router.route_insert(*ins.rel, ins.values, *m_tx);
  const std::uint64_t index = m_tx_index++;
  if (m_skip && m_tx->commit_lsn == m_skip->final_lsn && index < m_skip->rows) return;  // in Kafka already
  switch (r.what) {
    case routed::outcome::skip:
      return;
    case routed::outcome::stop:
      halt(r.stop_reason);
      return;
    case routed::outcome::invalid: {
      const std::string table = ins.rel->schema + "." + ins.rel->name;
      const dead_letter_origin from{table, m_tx->commit_lsn, m_tx->xid};
      on_invalid(r.invalid, [&] {
        return dead_letter_of_row(m_config.sink.dead_letter_topic, *ins.rel, ins.values, std::nullopt, r.row_id,
                                  r.invalid, from);
      });
      return;
    }
    case routed::outcome::record:
      break;
  }
  if (m_poison.count({m_tx->commit_lsn, index}) != 0) {
    const std::string table = ins.rel->schema + "." + ins.rel->name;
    const invalid_record why{"refused", "", "Kafka refused this record before (see the earlier log line)"};
    on_invalid(why, [&] {
      return dead_letter_of_record(m_config.sink.dead_letter_topic, *r.record, why,
                                   {table, m_tx->commit_lsn, m_tx->xid});
    });
    return;
  }
  const bool deletes = m_config.source.tables[r.source].delete_after_publish;
  publish(*r.record, static_cast<std::uint32_t>(r.source), deletes ? r.row_id : std::string_view(),
          m_tx->commit_time_ms, false);
  if (eos()) maybe_split_transaction();
}

void relay::loop::on_event(const logical_message& m, lsn_t) {
  const auto& prefix = m_config.source.logical_messages;
  if (!m.transactional) {
    if (prefix && m.prefix == prefix->prefix) {
      // It may come from a transaction that rolled back, or arrive before its transaction commits.
      m_metrics.invalid_record("non_transactional_message", "skipped");
      log::error(k_component,
                 "refused a non-transactional logical message with the outbox prefix; it is not "
                 "published, because it may belong to a transaction that rolled back",
                 {{"prefix", prefix->prefix},
                  {"lsn", format_lsn(m.lsn)},
                  {"fix", "emit outbox events with pg_logical_emit_message(true, ...)"}});
    }
    return;
  }
  if (!m_tx) throw outbox_error("decode", "transactional message outside a transaction at LSN " + format_lsn(m.lsn));
  const routed r = m_router.route_message(m, *m_tx);
  const std::uint64_t index = m_tx_index++;
  if (m_skip && m_tx->commit_lsn == m_skip->final_lsn && index < m_skip->rows) return;  // in Kafka already
  switch (r.what) {
    case routed::outcome::skip:
    case routed::outcome::stop:
      return;
    case routed::outcome::invalid: {
      const std::string table = "message:" + std::string(m.prefix);
      const dead_letter_origin from{table, m_tx->commit_lsn, m_tx->xid};
      on_invalid(r.invalid,
                 [&] { return dead_letter_of_envelope(m_config.sink.dead_letter_topic, m.content, r.invalid, from); });
      return;
    }
    case routed::outcome::record:
      break;
  }
  if (m_poison.count({m_tx->commit_lsn, index}) != 0) {
    const invalid_record why{"refused", "", "Kafka refused this record before (see the earlier log line)"};
    const std::string table = source_name(message_source());
    on_invalid(why, [&] {
      return dead_letter_of_record(m_config.sink.dead_letter_topic, *r.record, why,
                                   {table, m_tx->commit_lsn, m_tx->xid});
    });
    return;
  }
  publish(*r.record, message_source(), {}, m_tx->commit_time_ms, false);
  if (eos()) maybe_split_transaction();
}

std::uint32_t relay::loop::message_source() const { return static_cast<std::uint32_t>(m_config.source.tables.size()); }

void relay::loop::stop_reading(std::string_view why) {
  if (m_read_stopped) return;
  m_read_stopped = true;
  if (m_pg_socket.is_open()) m_pg_socket.cancel();
  log::debug(k_component, "stopped reading", {{"why", why}});
  maybe_finish_shutdown();
}

void relay::loop::halt(const std::string& reason) {
  if (m_halted) return;
  {
    const std::lock_guard lock(m_reason_mutex);
    m_halt_reason = reason;
  }
  m_halted = true;
  m_phase = phase::halted;
  m_metrics.halted.set(1);
  m_last_halt_log = clock::now();
  log::error(k_component, "halted; waiting for an operator", {{"reason", reason}});
  m_pending.reset();
  if (eos() && !m_committing) abort_kafka_tx("halted");
  m_read_stopped = true;
  if (m_pg_socket.is_open()) m_pg_socket.cancel();
  if (m_backfill) m_backfill->stop();
  m_backfill.reset();
  m_batch.reset();
  m_backfilling = false;
  m_streaming = false;
  close_halted_stream();
  maybe_finish_shutdown();
}

void relay::loop::close_halted_stream() {
  if (!m_stream || m_publisher->inflight_messages() > 0) return;
  send_status(false);
  log::info(k_component, "confirmed", {{"lsn", format_lsn(confirmable())}});
  release_pg_socket();
  if (m_stream) m_stream->finish(k_finish_timeout);
  m_stream.reset();
  m_metrics.leader.set(0);
  m_metrics.forget_slot();
}

void relay::loop::begin_shutdown(const char* why) {
  if (m_stopping) {
    log::warn(k_component, "second signal: stopping now; events in flight are published again after a restart",
              {{"signal", why}, {"inflight", m_publisher->inflight_messages()}});
    finish();
    return;
  }
  m_stopping = true;
  m_cancel_connect = true;
  log::info(k_component, "stopping: draining in-flight events",
            {{"signal", why}, {"inflight", m_publisher->inflight_messages()}});
  m_reconnect_timer.cancel();
  m_shutdown_timer.expires_after(m_config.relay.shutdown_timeout);
  m_shutdown_timer.async_wait([this](const std::error_code& ec) {
    if (ec) return;
    log::warn(k_component, "shutdown timeout: events still in flight will be published again after restart",
              {{"inflight", m_publisher->inflight_messages()}});
    finish();
  });
  if (m_backfill) {
    m_backfill->stop();  // the state stays "pending": the next start resumes on the same cut
    m_backfill.reset();
    m_batch.reset();
    m_pending.reset();
  }
  if (m_phase == phase::streaming && m_tx) {
    // Finish the transaction being read, so a restart after this clean stop repeats nothing.
    m_finishing_tx = true;
  } else {
    stop_reading("shutdown");
  }
  maybe_finish_shutdown();
}

void relay::loop::maybe_finish_shutdown() {
  if (!m_stopping || m_finished) return;
  const bool reading = m_phase == phase::streaming && !m_read_stopped;
  if (reading || m_pending || m_committing) return;
  if (eos() && m_ktx.open && !m_halted && m_phase == phase::streaming) {
    // What the open Kafka transaction holds is whole PostgreSQL transactions: commit it before stopping.
    commit_kafka_tx(checkpoint_at(m_last_complete_end, std::nullopt));
    return;
  }
  if (m_publisher->inflight_messages() > 0) return;
  if (m_phase == phase::connecting && m_connector.joinable()) {
    // The connector gives up within a poll slice; finish once it has posted its answer.
    if (!m_connector_finishing) {
      m_connector_finishing = true;
      asio::post(m_io, [this] {
        if (m_connector.joinable()) m_connector.join();
        m_connector_finishing = false;
        finish();
      });
    }
    return;
  }
  if (m_rows.backlog() > 0 && m_deleter) {
    flush_deletes(true);
    if (m_rows.batch_out()) return;  // finish when the last batch is deleted (bounded by the shutdown timer)
  }
  finish();
}

void relay::loop::finish() {
  if (m_finished) return;
  m_finished = true;
  if (m_halted) m_exit_code = 1;
  send_status(false);
  release_pg_socket();
  if (m_stream) m_stream->finish(k_finish_timeout);
  m_stream.reset();
  log::info(k_component, "stopped",
            {{"published", m_published},
             {"transactions", m_transactions},
             {"confirmed_lsn", format_lsn(confirmable())}});
  m_status_timer.cancel();
  m_io.stop();
}

void relay::loop::fail(const error& e) {
  if (m_finished) return;
  m_exit_code = 1;
  log::error(k_component, "stopping on an unrecoverable error", {{"category", e.category}, {"error", e.message}});
  // Confirm only what is already safe; nothing after the failure is confirmed.
  send_status(false);
  m_finished = true;
  release_pg_socket();
  m_stream.reset();
  m_io.stop();
}

relay::relay(const config::relay_config& c, run_options opts, metrics::registry& metrics)
    : m_loop(std::make_unique<loop>(c, std::move(opts), metrics)) {}
relay::~relay() = default;
int relay::run() { return m_loop->run(); }
metrics::readiness relay::ready() const { return m_loop->ready(); }

}  // namespace outbox::relay
