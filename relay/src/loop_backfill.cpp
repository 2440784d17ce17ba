// The rows already in the tables, published before the stream starts.
#include "relay_loop.hpp"

namespace outbox::relay {

void relay::loop::start_backfill(const backfill_spec& spec) {
  m_phase = phase::backfilling;
  m_backfilling = true;
  m_metrics.backfill_running.set(1);
  m_backfill_reading_done = false;
  m_backfill_time_ms = now_ms();
  std::string names;
  for (const auto i : spec.tables) names += (names.empty() ? "" : ",") + m_config.source.tables[i].qualified_name();
  log::info(
      k_component, "backfill: publishing the rows already in the tables, then streaming",
      {{"tables", names}, {"slot_lsn", format_lsn(m_start_lsn)}, {"resumed", spec.visible_in.empty() ? "no" : "yes"}});
  m_backfill = std::make_unique<backfill_reader>(
      side_params(m_config.source), m_config.source.connect_timeout, m_config, m_report.tables, spec, k_backfill_batch,
      [this](backfill_batch b) {
        auto shared = std::make_shared<backfill_batch>(std::move(b));
        asio::post(m_io, [this, shared] { on_backfill_batch(std::move(*shared)); });
      },
      [this](const outbox_error& e) { asio::post(m_io, [this, err = e.value()] { on_backfill_error(err); }); });
}

void relay::loop::on_backfill_error(const error& e) {
  m_backfill.reset();
  if (m_stopping) {
    maybe_finish_shutdown();
    return;
  }
  m_backfilling = false;
  m_metrics.backfill_running.set(0);
  // The state stays "pending": the next attempt reads the same cut again.
  log::warn(k_component, "backfill failed; it starts again", {{"error", e.message}});
  m_stream.reset();
  schedule_reconnect("backfill interrupted; reconnecting", e.message);
}

void relay::loop::on_backfill_batch(backfill_batch b) {
  if (m_phase != phase::backfilling) return;
  if (m_backfill_relation != b.rel) {
    m_backfill_relation = b.rel;
    if (auto stop = m_router.on_relation(*b.rel)) {
      halt(*stop);
      return;
    }
  }
  m_batch = std::move(b);
  m_batch_row = 0;
  process_backfill();
}

void relay::loop::process_backfill() {
  if (m_phase != phase::backfilling || !m_batch) return;
  const relation& rel = *m_batch->rel;
  const int columns = static_cast<int>(rel.columns.size());
  while (m_phase == phase::backfilling && m_batch && m_batch_row < m_batch->rows.size()) {
    if (m_pending || over_limits() || m_read_stopped) return;
    const int row = m_batch_row++;
    m_values.clear();
    for (int c = 0; c < columns; ++c) {
      m_values.push_back(m_batch->rows.is_null(row, c)
                             ? tuple_value{tuple_value::kind::null, {}}
                             : tuple_value{tuple_value::kind::text, m_batch->rows.text(row, c)});
    }
    const auto xid =
        static_cast<std::uint32_t>(std::strtoul(std::string(m_batch->rows.text(row, columns)).c_str(), nullptr, 10));
    const std::int64_t ts = m_batch->rows.is_null(row, columns + 1)
                                ? m_backfill_time_ms
                                : std::atoll(std::string(m_batch->rows.text(row, columns + 1)).c_str());
    m_backfill_tx = tx_context{m_start_lsn, xid, ts};
    const routed r = m_router.route_insert(rel, m_values, m_backfill_tx);
    if (r.what == routed::outcome::stop) {
      halt(r.stop_reason);
      return;
    }
    if (r.what == routed::outcome::invalid) {
      // The origin only views the table's name: the name must outlive it.
      const std::string table = m_config.source.tables[m_batch->table].qualified_name();
      const dead_letter_origin from{table, m_start_lsn, xid};
      on_invalid(r.invalid, [&] {
        return dead_letter_of_row(m_config.sink.dead_letter_topic, rel, m_values, std::nullopt, r.row_id, r.invalid,
                                  from);
      });
      continue;
    }
    if (r.what != routed::outcome::record) continue;
    const bool deletes = m_config.source.tables[m_batch->table].delete_after_publish;
    publish(*r.record, static_cast<std::uint32_t>(m_batch->table), deletes ? r.row_id : std::string_view(), ts, true);
    if (maybe_commit_backfill()) return;  // exactly_once: goes on once the transaction is committed
  }
  if (m_pending || m_phase != phase::backfilling || !m_batch) return;
  const bool last = m_batch->last;
  m_batch.reset();
  if (last) {
    m_backfill_reading_done = true;
    check_backfill_done();
  } else if (m_backfill) {
    m_backfill->request();
  }
}

void relay::loop::check_backfill_done() {
  if (!m_backfill_reading_done || m_backfill_inflight > 0 || m_pending || m_finishing_backfill || m_committing) return;
  if (eos() && m_ktx.open) {
    commit_kafka_tx(checkpoint_at(m_committed_end, std::nullopt));  // the backfill's last rows, then "done"
    return;
  }
  m_finishing_backfill = true;
  const system_identity id = m_identity;
  const std::int64_t epoch = m_epoch;
  m_watch->post(
      [this, id, epoch](pg_session& s) {
        finish_backfill(s, m_config, id, epoch);
        asio::post(m_io, [this] { on_backfill_recorded(); });
      },
      [this](const outbox_error& e) {
        asio::post(m_io, [this, err = e.value()] {
          m_finishing_backfill = false;
          on_backfill_error(err);
        });
      });
}

void relay::loop::on_backfill_recorded() {
  m_finishing_backfill = false;
  m_backfill.reset();
  m_backfilling = false;
  m_metrics.backfill_running.set(0);
  log::info(k_component, "backfill finished", {{"rows", m_backfill_published}});
  if (m_stopping) {
    maybe_finish_shutdown();
    return;
  }
  // START_REPLICATION waits on the server: run it off the loop.
  m_phase = phase::connecting;
  if (m_connector.joinable()) m_connector.join();
  m_connector = std::thread([this] {
    try {
      m_stream->start(m_config.source.slot, m_config.source.publication, m_start_lsn,
                      m_config.source.logical_messages.has_value());
      asio::post(m_io, [this] {
        if (!m_stopping)
          begin_streaming();
        else
          maybe_finish_shutdown();
      });
    } catch (const outbox_error& e) {
      asio::post(m_io, [this, err = e.value()] { on_source_error(err); });
    }
  });
}

}  // namespace outbox::relay
