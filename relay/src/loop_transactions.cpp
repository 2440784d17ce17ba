// exactly_once: records of one or more whole PostgreSQL transactions go into one Kafka transaction together with a
// checkpoint record (the end LSN they reach, and how far into a PostgreSQL transaction that had to be split); the
// slot is confirmed only after commit_transaction() returned. A restart reads the last checkpoint and goes on from
// there, so a read_committed consumer sees each event once.
#include "relay_loop.hpp"

namespace outbox::relay {

lsn_t relay::loop::confirmable() const noexcept { return eos() ? m_committed_end : m_tracker.confirmable(); }

std::optional<checkpoint> relay::loop::start_kafka_transactions() {
  // Once per producer: a reconnect to PostgreSQL keeps it (its open transaction was aborted).
  const tx_outcome r =
      m_tx_initialized.load() ? tx_outcome{} : m_publisher->init_transactions(m_config.sink.transaction_timeout);
  if (r.ok()) m_tx_initialized = true;
  if (!r.ok()) {
    throw outbox_error(
        "kafka",
        "cannot start Kafka transactions (transactional.id " + transactional_id_of(m_config) + "): " + r.message +
            (r.what == tx_outcome::kind::fatal
                 ? "; the principal needs WRITE and DESCRIBE on the transactional id and IDEMPOTENT_WRITE "
                   "on the cluster"
                 : ""),
        r.what == tx_outcome::kind::fatal ? retry_class::fatal : retry_class::retryable);
  }
  return read_checkpoint(m_config.sink, m_config.source.slot, std::chrono::milliseconds(30'000));
}

bool relay::loop::ensure_kafka_tx() {
  if (m_ktx.open) return true;
  const tx_outcome r = m_publisher->begin_transaction();
  if (!r.ok()) {
    if (r.what == tx_outcome::kind::fatal) {
      producer_failed(m_publisher->fatal_error().value_or(r.message));
    } else {
      restart_pipeline("cannot open a Kafka transaction: " + r.message);
    }
    return false;
  }
  m_ktx.open = true;
  m_ktx.records = 0;
  m_ktx.bytes = 0;
  m_ktx.opened_at = clock::now();
  m_ktx.acked_rows.clear();
  return true;
}

void relay::loop::count_in_kafka_tx(std::size_t bytes) {
  ++m_ktx.records;
  m_ktx.bytes += bytes;
}

bool relay::loop::kafka_tx_full() const {
  return m_ktx.open && (m_ktx.records >= static_cast<std::size_t>(m_config.sink.transaction_max_records) ||
                        m_ktx.bytes >= m_config.sink.transaction_max_bytes);
}

bool relay::loop::kafka_tx_due() const {
  return kafka_tx_full() || (m_ktx.open && clock::now() - m_ktx.opened_at >= m_config.sink.transaction_max_time);
}

checkpoint relay::loop::checkpoint_at(lsn_t end_lsn, std::optional<partial_transaction> partial) const {
  checkpoint cp;
  cp.slot = m_config.source.slot;
  cp.system_id = m_identity.system_id;
  cp.timeline = m_identity.timeline;
  cp.end_lsn = std::max(end_lsn, m_committed_end);
  cp.partial = partial;
  return cp;
}

void relay::loop::at_commit_boundary(lsn_t end_lsn) {
  if (m_committing || m_pending || !kafka_tx_due()) return;
  commit_kafka_tx(checkpoint_at(end_lsn, std::nullopt));
}

void relay::loop::maybe_split_transaction() {
  if (m_committing || m_pending || !m_tx || !kafka_tx_full()) return;
  // The PostgreSQL transaction goes on in the next Kafka transaction; a restart skips the rows already in Kafka.
  commit_kafka_tx(checkpoint_at(m_last_complete_end, partial_transaction{m_tx->commit_lsn, m_tx_index}));
}

bool relay::loop::maybe_commit_backfill() {
  if (!eos() || m_committing || m_pending || !kafka_tx_full()) return false;
  commit_kafka_tx(checkpoint_at(m_committed_end, std::nullopt));
  return true;
}

void relay::loop::commit_kafka_tx(const checkpoint& cp) {
  if (m_committing) return;
  if (!ensure_kafka_tx()) return;
  const std::string value = encode_checkpoint(cp);
  const std::vector<header_view> no_headers;
  const record_view rec{m_config.sink.checkpoint_topic, m_config.source.slot, std::string_view(value), no_headers};
  std::string why;
  const produce_result r = m_publisher->produce(rec, 0, k_checkpoint_source, now_ms(), &why);
  if (r != produce_result::queued) {
    restart_pipeline("cannot write the checkpoint to " + m_config.sink.checkpoint_topic + ": " +
                     (r == produce_result::queue_full ? std::string("librdkafka's queue is full") : why));
    return;
  }
  m_committing = true;
  m_commit_waiting = cp;
  if (m_pg_socket.is_open()) m_pg_socket.cancel();  // reading waits for the commit
  // The commit runs on its own thread once librdkafka has nothing left to report: commit_transaction() flushes,
  // and a flush serves delivery reports on the calling thread, which must stay this loop's.
  if (m_publisher->inflight_messages() == 0) launch_commit();
}

void relay::loop::launch_commit() {
  if (!m_commit_waiting) return;
  const checkpoint cp = std::move(*m_commit_waiting);
  m_commit_waiting.reset();
  if (m_tx_thread.joinable()) m_tx_thread.join();
  publisher* pub = m_publisher.get();
  const std::uint64_t generation = m_publisher_generation;
  const milliseconds timeout = m_config.sink.transaction_timeout;
  m_tx_thread = std::thread([this, pub, generation, timeout, cp] {
    const tx_outcome r = pub->commit_transaction(timeout);
    asio::post(m_io, [this, generation, r, cp] {
      if (generation != m_publisher_generation) return;
      on_kafka_tx_committed(r, cp);
    });
  });
}

void relay::loop::on_kafka_tx_committed(const tx_outcome& r, const checkpoint& cp) {
  if (m_tx_thread.joinable()) m_tx_thread.join();
  m_committing = false;
  if (!r.ok()) {
    m_metrics.kafka_transaction("failed");
    forget_kafka_tx();
    if (r.what == tx_outcome::kind::fatal) {
      producer_failed(m_publisher->fatal_error().value_or(r.message));
      return;
    }
    // Abortable, timed out or unknown: a fresh producer's init_transactions() settles it, and the checkpoint in
    // Kafka says where to go on.
    restart_pipeline("the Kafka transaction did not commit: " + r.message);
    return;
  }
  m_metrics.kafka_transaction("committed");
  m_committed_end = std::max(m_committed_end, cp.end_lsn);
  m_last_commit = clock::now();
  for (const auto id : m_ktx.acked_rows) m_rows.acked(id);
  m_ktx = kafka_tx_state{};
  if (log::enabled(log::level::debug)) {
    log::debug(k_component, "committed a Kafka transaction",
               {{"end_lsn", format_lsn(cp.end_lsn)},
                {"partial", cp.partial ? format_lsn(cp.partial->final_lsn) + "+" + std::to_string(cp.partial->rows)
                                       : std::string("no")}});
  }
  send_status(false);
  flush_deletes(false);
  if (m_phase == phase::backfilling) check_backfill_done();
  resume();
  maybe_finish_shutdown();
}

void relay::loop::forget_kafka_tx() {
  m_ktx = kafka_tx_state{};
  m_commit_waiting.reset();
  m_committing = false;
}

void relay::loop::abort_kafka_tx(const std::string& why) {
  if (!m_ktx.open) return;
  if (m_tx_thread.joinable()) m_tx_thread.join();
  const tx_outcome r = m_publisher->abort_transaction(std::chrono::milliseconds(10'000));
  m_metrics.kafka_transaction("aborted");
  log::warn(k_component, "aborted the open Kafka transaction",
            {{"why", why}, {"result", r.ok() ? std::string("aborted") : r.message}});
  forget_kafka_tx();
}

void relay::loop::arm_transaction_timer() {
  m_tx_timer.expires_after(m_config.sink.transaction_max_time);
  m_tx_timer.async_wait([this](const std::error_code& ec) {
    if (ec || m_finished) return;
    on_transaction_timer();
    arm_transaction_timer();
  });
}

void relay::loop::on_transaction_timer() {
  if (m_committing || m_pending || m_halted || m_restarting || m_tx) return;
  if (m_phase != phase::streaming || !m_stream) return;
  if (m_ktx.open) {
    if (kafka_tx_due()) commit_kafka_tx(checkpoint_at(m_last_complete_end, std::nullopt));
    return;
  }
  // Idle: WAL moved past what the last checkpoint covers (heartbeats, other tables). A checkpoint of its own lets
  // the slot follow, so the slot never gets ahead of the checkpoint.
  const auto every = m_config.relay.status_interval;
  if (m_tracker.inflight_events() == 0 && m_tracker.open_transactions() == 0 &&
      m_tracker.confirmable() > m_committed_end && clock::now() - m_last_commit >= every) {
    commit_kafka_tx(checkpoint_at(m_tracker.confirmable(), std::nullopt));
  }
}

}  // namespace outbox::relay
