#include "outbox/relay/relay.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/relay/copy_protocol.hpp"
#include "outbox/relay/lsn_tracker.hpp"
#include "outbox/relay/pgoutput_decoder.hpp"
#include "outbox/relay/publisher.hpp"
#include "outbox/relay/replication_stream.hpp"
#include "outbox/relay/router.hpp"
#include "outbox/relay/source_setup.hpp"

#include <asio.hpp>
#include <atomic>
#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <optional>
#include <map>
#include <unordered_map>

namespace outbox::relay {

namespace {
constexpr std::string_view k_component = "relay";
constexpr std::size_t k_messages_per_turn = 2048;  // then let delivery reports and timers run
constexpr std::size_t k_delete_batch = 1000;
constexpr std::chrono::milliseconds k_max_backoff{30'000};
// Acknowledgements that move the confirmable LSN are reported at most this often between the
// regular status updates: a short unconfirmed window means fewer duplicates after a crash.
constexpr std::chrono::milliseconds k_min_confirm_gap{20};
constexpr std::chrono::milliseconds k_slot_metrics_interval{5'000};
}  // namespace

/// All relay state lives here and is touched only by the thread running `m_io`: replication
/// reads, delivery reports (librdkafka callbacks run inside publisher::poll on this thread),
/// timers and signals are all handlers of this one io_context.
class relay::loop {
 public:
  loop(settings s, metrics::registry& reg)
      : m_settings(std::move(s)),
        m_metrics(reg, m_settings),
        m_router(m_settings.topic_template, routes(m_settings), m_settings.message_prefix),
        m_stream(m_settings.dsn),
        m_publisher(
            m_settings.brokers, m_settings.kafka_properties, m_settings.max_inflight_messages,
            [this](const delivery& d) { on_delivery(d); },
            [this](bool up, const std::string& reason) {
              m_kafka_up = up;
              if (up) {
                log::info("kafka", "brokers reachable again");
              } else {
                log::warn("kafka", "all brokers down; records are held and retried", {{"reason", reason}});
              }
            }),
        m_pg_socket(m_io),
        m_kafka_wakeup(m_io, m_publisher.wakeup_fd()),
        m_status_timer(m_io),
        m_heartbeat_timer(m_io),
        m_reconnect_timer(m_io),
        m_shutdown_timer(m_io),
        m_signals(m_io, SIGTERM, SIGINT) {}

  ~loop() {
    static_cast<void>(m_kafka_wakeup.release());  // the publisher owns the pipe
    release_pg_socket();
  }

  int run() {
    m_signals.async_wait([this](const std::error_code& ec, int sig) {
      if (!ec) begin_shutdown(sig == SIGTERM ? "SIGTERM" : "SIGINT");
    });
    watch_kafka();
    arm_status_timer();
    arm_heartbeat_timer();
    connect_source();
    m_io.run();
    return m_exit_code;
  }

 private:
  static std::vector<table_route> routes(const settings& s) {
    std::vector<table_route> out;
    for (const auto& t : s.tables) out.push_back(t.route);
    return out;
  }

  // ---- PostgreSQL side -------------------------------------------------------------------

  void connect_source() {
    if (m_stopping) return;
    try {
      const source_report report = prepare_source(m_settings, true);
      if (!report.ok()) {
        std::string all;
        for (const auto& p : report.problems) all += (all.empty() ? "" : "; ") + p;
        fail(error{"source", all, retry_class::fatal});
        return;
      }
      m_id_types = report.id_column_types;
      if (report.slot_confirmed_lsn) m_tracker.observe_server_position(*report.slot_confirmed_lsn);
      const system_identity id = m_stream.connect();
      const lsn_t from = m_tracker.confirmable();
      m_stream.start(m_settings.slot, m_settings.publication, from);
      m_pg_socket.assign(m_stream.socket());
      m_connected = true;
      m_streaming = true;
      m_metrics.leader.set(1);
      m_backoff = std::chrono::milliseconds(0);
      log::info(k_component, "streaming",
                {{"slot", m_settings.slot},
                 {"publication", m_settings.publication},
                 {"from_lsn", format_lsn(from)},
                 {"server_lsn", format_lsn(id.wal_position)},
                 {"database", id.database}});
      pump();
    } catch (const outbox_error& e) {
      on_source_error(e.value());
    } catch (const std::exception& e) {
      on_source_error(error{"source", e.what(), retry_class::retryable});
    }
  }

  void on_source_error(const error& e) {
    if (!e.retryable()) {
      fail(e);
      return;
    }
    const bool was_connected = m_connected;
    release_pg_socket();
    m_stream.close();
    m_connected = false;
    m_streaming = false;
    m_metrics.leader.set(0);
    m_paused = false;
    if (m_stopping) {
      maybe_finish_shutdown();
      return;
    }
    m_backoff = std::min(k_max_backoff, std::max(std::chrono::milliseconds(500), m_backoff * 2));
    log::warn("source",
              was_connected ? "PostgreSQL connection lost; reconnecting" : "cannot reach PostgreSQL; retrying",
              {{"error", e.message}, {"retry_in_ms", static_cast<long long>(m_backoff.count())}});
    m_reconnecting = true;
    m_reconnect_timer.expires_after(m_backoff);
    m_reconnect_timer.async_wait([this](const std::error_code& ec) {
      if (!ec) try_reconnect();
    });
  }

  /// Restarting from the confirmed LSN needs a clean slate: every record already handed to
  /// Kafka is acknowledged first, then the tracker and relation cache start over.
  void try_reconnect() {
    if (!m_reconnecting || m_stopping) return;
    if (m_publisher.inflight_messages() > 0) {
      m_reconnect_timer.expires_after(std::chrono::milliseconds(100));
      m_reconnect_timer.async_wait([this](const std::error_code& ec) {
        if (!ec) try_reconnect();
      });
      return;
    }
    const lsn_t confirmed = m_tracker.confirmable();
    m_tracker = lsn_tracker();
    m_tracker.observe_server_position(confirmed);
    m_decoder = pgoutput_decoder();
    m_tx.reset();
    m_table_of_relation.clear();
    m_reconnecting = false;
    connect_source();
  }

  void release_pg_socket() {
    if (m_pg_socket.is_open()) {
      m_pg_socket.cancel();
      static_cast<void>(m_pg_socket.release());  // libpq owns the socket
    }
  }

  void arm_pg_socket() {
    if (!m_connected || m_paused || m_stopping || m_waiting_for_pg) return;
    m_waiting_for_pg = true;
    m_pg_socket.async_wait(asio::posix::stream_descriptor::wait_read, [this](const std::error_code& ec) {
      m_waiting_for_pg = false;
      if (!ec) pump();
    });
  }

  /// Reads what the server sent, a bounded number of messages per turn, until the socket
  /// would block or backpressure stops it.
  void pump() {
    if (!m_connected || m_stopping) return;
    try {
      for (std::size_t n = 0; n < k_messages_per_turn; ++n) {
        if (m_paused) return;
        std::string_view msg;
        switch (m_stream.read(msg)) {
          case replication_stream::read_result::message:
            handle(msg);
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

  void handle(std::string_view copy_data) {
    const server_message sm = parse_server_message(copy_data);
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

  void on_event(const begin_msg& b, lsn_t) {
    m_tracker.begin(b.final_lsn);
    m_tx = tx_context{b.final_lsn, b.xid, unix_ms(from_pg_epoch_us(b.commit_time_us))};
  }

  void on_event(const commit_msg& c, lsn_t) {
    m_tracker.commit(c.end_lsn);
    m_tx.reset();
    ++m_transactions;
    m_metrics.transactions.inc();
  }

  void on_event(const relation_msg& r, lsn_t) {
    if (m_router.find_route(*r.rel) == nullptr) return;
    m_router.validate(*r.rel);
    for (std::size_t i = 0; i < m_settings.tables.size(); ++i) {
      const auto& route = m_settings.tables[i].route;
      if (route.schema == r.rel->schema && route.table == r.rel->name) m_table_of_relation[r.rel->oid] = i;
    }
    if (r.columns_changed) {
      log::info(k_component, "table columns changed mid-stream",
                {{"table", r.rel->schema + "." + r.rel->name}, {"columns", r.rel->columns.size()}});
    }
  }

  void on_event(insert_msg& ins, lsn_t lsn) {
    if (!m_tx) throw outbox_error("decode", "Insert outside a transaction at LSN " + format_lsn(lsn));
    auto record = m_router.route_insert(*ins.rel, std::move(ins.values), *m_tx);
    if (!record) return;
    std::optional<std::size_t> delete_from;
    if (const auto it = m_table_of_relation.find(ins.rel->oid);
        it != m_table_of_relation.end() && m_settings.tables[it->second].delete_after_publish) {
      delete_from = it->second;
    }
    const auto table = m_table_of_relation.find(ins.rel->oid);
    publish(*record, delete_from, table != m_table_of_relation.end() ? static_cast<std::uint32_t>(table->second) : 0);
  }

  void on_event(const logical_message& m, lsn_t) {
    if (m.transactional) {
      if (!m_tx)
        throw outbox_error("decode", "transactional message outside a transaction at LSN " + format_lsn(m.lsn));
      if (auto record = m_router.route_message(m, *m_tx)) publish(*record, std::nullopt, message_route());
      return;
    }
    // A non-transactional message (heartbeats are) stands alone at its own LSN.
    const tx_context ctx{m.lsn, 0, now_ms()};
    auto record = m_router.route_message(m, ctx);
    if (!record) return;
    m_tracker.begin(m.lsn);
    publish(*record, std::nullopt, message_route());
    m_tracker.commit(m.lsn);
  }

  void on_event(const ignored_msg&, lsn_t) {}

  /// Routes 0..n-1 are the configured tables; n is the logical-message source.
  [[nodiscard]] std::uint32_t message_route() const { return static_cast<std::uint32_t>(m_settings.tables.size()); }

  void publish(const kafka_record& record, std::optional<std::size_t> delete_from, std::uint32_t route) {
    const auto id = m_tracker.add_event();
    if (delete_from) {
      // The router puts the row's id first, as the event_id header.
      m_rows_to_delete.emplace(id, pending_row{*delete_from, record.headers.front().second});
    }
    try {
      m_publisher.produce(record, id, route, m_tx ? m_tx->commit_time_ms : now_ms());
    } catch (const outbox_error&) {
      m_metrics.publish_errors.with({"refused"}).inc();
      throw;
    }
    m_metrics.update_inflight(m_publisher);
    if (over_limits()) {
      if (!m_paused)
        log::debug(k_component, "backpressure: pausing reads", {{"inflight", m_publisher.inflight_messages()}});
      m_paused = true;
    }
  }

  [[nodiscard]] bool over_limits() const {
    return m_publisher.inflight_messages() >= m_settings.max_inflight_messages ||
           m_publisher.inflight_bytes() >= m_settings.max_inflight_bytes;
  }

  void send_status(bool force_log) {
    if (!m_connected) return;
    const lsn_t flushed = m_tracker.confirmable();
    try {
      m_stream.send_status(std::max(m_received, flushed), flushed);
      m_last_status_sent = std::chrono::steady_clock::now();
      m_metrics.confirmed_lsn.set(static_cast<double>(flushed));
    } catch (const outbox_error& e) {
      on_source_error(e.value());
      return;
    }
    if (flushed != m_last_confirmed) {
      m_last_confirmed = flushed;
      m_last_confirm_change = std::chrono::steady_clock::now();
    }
    if (force_log) log::info(k_component, "confirmed", {{"lsn", format_lsn(flushed)}});
  }

  // ---- Kafka side ------------------------------------------------------------------------

  void watch_kafka() {
    m_kafka_wakeup.async_wait(asio::posix::stream_descriptor::wait_read, [this](const std::error_code& ec) {
      if (ec) return;
      m_publisher.poll();
      after_deliveries();
      if (!m_failed) watch_kafka();
    });
  }

  void on_delivery(const delivery& d) {
    if (!d.ok) {
      m_metrics.publish_errors.with({d.failure.category}).inc();
      fail(d.failure);
      return;
    }
    m_tracker.ack(d.event_id);
    ++m_published;
    m_metrics.published(d.route, d.topic).inc();
    m_metrics.commit_to_ack.observe(static_cast<double>(std::max<std::int64_t>(0, now_ms() - d.commit_time_ms)) /
                                    1000.0);
    if (const auto it = m_rows_to_delete.find(d.event_id); it != m_rows_to_delete.end()) {
      m_delete_queue[it->second.table].push_back(std::move(it->second.id));
      m_rows_to_delete.erase(it);
    }
  }

  void after_deliveries() {
    if (m_failed) return;
    m_metrics.update_inflight(m_publisher);
    for (const auto& [table, ids] : m_delete_queue) {
      if (ids.size() >= k_delete_batch) {
        flush_deletes();
        break;
      }
    }
    if (m_connected && m_tracker.confirmable() != m_last_confirmed &&
        std::chrono::steady_clock::now() - m_last_status_sent >= k_min_confirm_gap) {
      send_status(false);
    }
    if (m_paused && !over_limits()) {
      m_paused = false;
      asio::post(m_io, [this] { pump(); });
    }
    if (m_stopping) maybe_finish_shutdown();
  }

  // ---- Timers: status updates, heartbeats, deletes ---------------------------------------

  void arm_status_timer() {
    m_status_timer.expires_after(m_settings.status_interval);
    m_status_timer.async_wait([this](const std::error_code& ec) {
      if (ec) return;
      // librdkafka's wakeup fires only on empty -> non-empty; a periodic poll covers any gap.
      m_publisher.poll();
      after_deliveries();
      send_status(false);
      flush_deletes();
      refresh_slot_metrics();
      if (!m_stopping) arm_status_timer();
    });
  }

  void arm_heartbeat_timer() {
    if (m_settings.heartbeat_interval.count() <= 0) return;
    m_heartbeat_timer.expires_after(m_settings.heartbeat_interval);
    m_heartbeat_timer.async_wait([this](const std::error_code& ec) {
      if (ec || m_stopping) return;
      const auto quiet = std::chrono::steady_clock::now() - m_last_confirm_change;
      if (m_connected && quiet >= m_settings.heartbeat_interval) emit_heartbeat();
      arm_heartbeat_timer();
    });
  }

  pqxx::connection& sql() {
    if (!m_sql || !m_sql->is_open()) m_sql = std::make_unique<pqxx::connection>(m_settings.dsn);
    return *m_sql;
  }

  /// A non-transactional logical message moves the slot on an otherwise idle database.
  void emit_heartbeat() {
    try {
      pqxx::nontransaction tx(sql());
      tx.exec("SELECT pg_logical_emit_message(false, " + tx.quote(m_settings.heartbeat_prefix()) + ", " +
              tx.quote("{\"ts_ms\":" + std::to_string(now_ms()) + "}") + ")");
      log::debug(k_component, "heartbeat written");
    } catch (const std::exception& e) {
      m_sql.reset();
      log::warn(k_component, "heartbeat failed", {{"error", e.what()}});
    }
  }

  /// Lag and retained WAL come from the server, read at most every k_slot_metrics_interval.
  void refresh_slot_metrics() {
    const auto now = std::chrono::steady_clock::now();
    if (!m_connected || now - m_last_slot_query < k_slot_metrics_interval) return;
    m_last_slot_query = now;
    try {
      pqxx::nontransaction tx(sql());
      const auto r = tx.exec1(
          "SELECT COALESCE(pg_current_wal_lsn() - confirmed_flush_lsn, 0)::float8, "
          "COALESCE(pg_current_wal_lsn() - restart_lsn, 0)::float8 FROM pg_replication_slots WHERE slot_name = " +
          tx.quote(m_settings.slot));
      const double lag = r[0].as<double>();
      m_metrics.replication_lag.set(lag);
      m_metrics.retained_wal.set(r[1].as<double>());
      // Stalled: the server's WAL is ahead of the slot and nothing was confirmed for stall_timeout.
      const bool stalled = lag > 0 && now - m_last_confirm_change >= m_settings.stall_timeout;
      if (stalled != m_stalled.load()) {
        m_stalled = stalled;
        m_metrics.stalled.set(stalled ? 1 : 0);
        if (stalled) {
          log::warn(k_component, "stalled: WAL moves but nothing was confirmed",
                    {{"lag_bytes", lag},
                     {"confirmed_lsn", format_lsn(m_last_confirmed)},
                     {"inflight", m_publisher.inflight_messages()}});
        } else {
          log::info(k_component, "no longer stalled", {{"confirmed_lsn", format_lsn(m_last_confirmed)}});
        }
      }
    } catch (const std::exception& e) {
      m_sql.reset();
      log::debug(k_component, "reading slot statistics failed", {{"error", e.what()}});
    }
  }

  void flush_deletes() {
    for (auto& [table, ids] : m_delete_queue) {
      if (ids.empty()) continue;
      const auto& route = m_settings.tables[table].route;
      try {
        auto& c = sql();
        std::string array = "{";
        for (std::size_t i = 0; i < ids.size(); ++i) {
          array += i > 0 ? ",\"" : "\"";
          for (const char ch : ids[i]) {
            if (ch == '"' || ch == '\\') array += '\\';
            array += ch;
          }
          array += '"';
        }
        array += '}';
        const std::string type = m_id_types.size() > table && !m_id_types[table].empty() ? m_id_types[table] : "text";
        pqxx::nontransaction tx(c);
        tx.exec("DELETE FROM " + c.quote_name(route.schema) + "." + c.quote_name(route.table) + " WHERE " +
                c.quote_name(route.columns.id) + " = ANY(" + tx.quote(array) + "::" + type + "[])");
        ids.clear();
      } catch (const std::exception& e) {
        m_sql.reset();
        // Left for the next attempt: a row not deleted yet is never published twice because of it.
        log::warn(k_component, "deleting published rows failed; will retry",
                  {{"table", route.schema + "." + route.table}, {"rows", ids.size()}, {"error", e.what()}});
        return;
      }
    }
  }

  // ---- Stopping --------------------------------------------------------------------------

  void begin_shutdown(const char* why) {
    if (m_stopping) return;
    m_stopping = true;
    log::info(k_component, "stopping: draining in-flight events",
              {{"signal", why}, {"inflight", m_publisher.inflight_messages()}});
    m_reconnect_timer.cancel();
    m_heartbeat_timer.cancel();
    if (m_pg_socket.is_open()) m_pg_socket.cancel();
    m_shutdown_timer.expires_after(m_settings.shutdown_timeout);
    m_shutdown_timer.async_wait([this](const std::error_code& ec) {
      if (ec) return;
      log::warn(k_component, "shutdown timeout: events still in flight will be published again after restart",
                {{"inflight", m_publisher.inflight_messages()}});
      finish();
    });
    maybe_finish_shutdown();
  }

  void maybe_finish_shutdown() {
    if (m_publisher.inflight_messages() == 0) finish();
  }

  void finish() {
    if (m_finished) return;
    m_finished = true;
    flush_deletes();
    send_status(true);
    release_pg_socket();
    m_stream.close();
    log::info(k_component, "stopped",
              {{"published", m_published},
               {"transactions", m_transactions},
               {"confirmed_lsn", format_lsn(m_tracker.confirmable())}});
    m_io.stop();
  }

  void fail(const error& e) {
    if (m_failed) return;
    m_failed = true;
    m_exit_code = 1;
    log::error(k_component, "stopping on an unrecoverable error", {{"category", e.category}, {"error", e.message}});
    // Confirm only what is already safe; nothing after the failure is confirmed.
    send_status(false);
    release_pg_socket();
    m_stream.close();
    m_io.stop();
  }

  static std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  }
  static std::int64_t now_ms() { return unix_ms(std::chrono::system_clock::now()); }

  struct pending_row {
    std::size_t table;
    std::string id;
  };

  /// The relay's metrics; written on the loop thread, read by the HTTP thread (atomics).
  struct relay_metrics {
    relay_metrics(metrics::registry& reg, const settings& s)
        : published_family(reg.add_counter("outbox_relay_events_published_total",
                                           "Events acknowledged by Kafka, per source table and topic.",
                                           {"table", "topic"})),
          transactions(reg.add_counter("outbox_relay_transactions_total", "Transactions read from the slot.").get()),
          publish_errors(reg.add_counter("outbox_relay_publish_errors_total",
                                         "Records Kafka or librdkafka refused, by reason.", {"reason"})),
          inflight_messages(
              reg.add_gauge("outbox_relay_inflight_messages", "Records handed to Kafka, not yet acknowledged.").get()),
          inflight_bytes(reg.add_gauge("outbox_relay_inflight_bytes", "Bytes of records not yet acknowledged.").get()),
          confirmed_lsn(
              reg.add_gauge("outbox_relay_confirmed_lsn", "Last LSN confirmed to PostgreSQL, as a number.").get()),
          replication_lag(reg.add_gauge("outbox_relay_replication_lag_bytes",
                                        "Server WAL position minus the slot's confirmed_flush_lsn.")
                              .get()),
          retained_wal(reg.add_gauge("outbox_relay_slot_retained_wal_bytes",
                                     "WAL the slot keeps on the server (current position minus restart_lsn).")
                           .get()),
          commit_to_ack(reg.add_histogram("outbox_relay_commit_to_ack_seconds",
                                          "From the transaction's commit to Kafka's acknowledgement.", {},
                                          metrics::latency_buckets())
                            .get()),
          leader(reg.add_gauge("outbox_relay_leader", "1 on the instance that streams the slot.").get()),
          stalled(reg.add_gauge("outbox_relay_stalled",
                                "1 when WAL moves but nothing was confirmed for relay.stall_timeout.")
                      .get()),
          up(reg.add_gauge("outbox_relay_up", "1 while the relay process runs.").get()) {
      for (const auto& t : s.tables) route_names.push_back(t.route.schema + "." + t.route.table);
      route_names.push_back("message:" + s.message_prefix.value_or(""));
      // Every reason starts at 0, so a rate over the first error is not lost.
      for (const char* reason : {"refused", "kafka.delivery", "kafka.fatal"}) publish_errors.with({reason});
      up.set(1);
    }

    metrics::counter& published(std::uint32_t route, std::string_view topic) {
      auto& cache = published_cache[route];
      const auto it = cache.find(topic);
      if (it != cache.end()) return *it->second;
      auto& c = published_family.with({route_names.at(route), std::string(topic)});
      cache.emplace(std::string(topic), &c);
      return c;
    }

    void update_inflight(const publisher& p) {
      inflight_messages.set(static_cast<double>(p.inflight_messages()));
      inflight_bytes.set(static_cast<double>(p.inflight_bytes()));
    }

    metrics::family<metrics::counter>& published_family;
    metrics::counter& transactions;
    metrics::family<metrics::counter>& publish_errors;
    metrics::gauge& inflight_messages;
    metrics::gauge& inflight_bytes;
    metrics::gauge& confirmed_lsn;
    metrics::gauge& replication_lag;
    metrics::gauge& retained_wal;
    metrics::histogram& commit_to_ack;
    metrics::gauge& leader;
    metrics::gauge& stalled;
    metrics::gauge& up;
    std::vector<std::string> route_names;
    std::unordered_map<std::uint32_t, std::map<std::string, metrics::counter*, std::less<>>> published_cache;
  };

 public:
  [[nodiscard]] metrics::readiness ready() const {
    if (!m_streaming.load()) return {false, "not streaming from PostgreSQL"};
    if (!m_kafka_up.load()) return {false, "Kafka brokers unreachable"};
    if (m_stalled.load()) return {false, "stalled: WAL moves but nothing was confirmed for relay.stall_timeout"};
    return {true, ""};
  }

 private:
  const settings m_settings;
  relay_metrics m_metrics;
  router m_router;
  pgoutput_decoder m_decoder;
  lsn_tracker m_tracker;
  replication_stream m_stream;
  asio::io_context m_io;
  publisher m_publisher;
  asio::posix::stream_descriptor m_pg_socket;
  asio::posix::stream_descriptor m_kafka_wakeup;
  asio::steady_timer m_status_timer;
  asio::steady_timer m_heartbeat_timer;
  asio::steady_timer m_reconnect_timer;
  asio::steady_timer m_shutdown_timer;
  asio::signal_set m_signals;
  std::unique_ptr<pqxx::connection> m_sql;  ///< heartbeats and deletes; opened lazily

  std::optional<tx_context> m_tx;  ///< the transaction being decoded
  std::unordered_map<std::uint32_t, std::size_t> m_table_of_relation;
  std::vector<std::string> m_id_types;
  std::unordered_map<std::uint64_t, pending_row> m_rows_to_delete;
  std::unordered_map<std::size_t, std::vector<std::string>> m_delete_queue;
  lsn_t m_received = 0;
  lsn_t m_last_confirmed = 0;
  std::chrono::steady_clock::time_point m_last_confirm_change = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point m_last_status_sent{};
  std::chrono::steady_clock::time_point m_last_slot_query{};
  std::atomic<bool> m_streaming{false};  ///< read by the HTTP thread
  std::atomic<bool> m_kafka_up{true};    ///< read by the HTTP thread
  std::atomic<bool> m_stalled{false};    ///< read by the HTTP thread
  std::chrono::milliseconds m_backoff{0};
  std::uint64_t m_published = 0;
  std::uint64_t m_transactions = 0;
  bool m_connected = false;
  bool m_waiting_for_pg = false;
  bool m_paused = false;
  bool m_reconnecting = false;
  bool m_stopping = false;
  bool m_finished = false;
  bool m_failed = false;
  int m_exit_code = 0;
};

relay::relay(settings s, metrics::registry& metrics) : m_loop(std::make_unique<loop>(std::move(s), metrics)) {}
relay::~relay() = default;
int relay::run() { return m_loop->run(); }
metrics::readiness relay::ready() const { return m_loop->ready(); }

}  // namespace outbox::relay
