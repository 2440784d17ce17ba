#include "outbox/relay/relay.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/kafka/errors.hpp"
#include "outbox/relay/dead_letter.hpp"
#include "outbox/relay/lsn_tracker.hpp"
#include "outbox/relay/pgoutput_decoder.hpp"
#include "outbox/relay/publisher.hpp"
#include "outbox/relay/replication_stream.hpp"
#include "outbox/relay/router.hpp"

#include "backfill.hpp"
#include "kafka_probe.hpp"
#include "published_rows.hpp"
#include "relay_metrics.hpp"
#include "side_worker.hpp"
#include "slot_watch.hpp"
#include "source_start.hpp"

#include <asio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

namespace outbox::relay {

namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view k_component = "relay";
constexpr std::size_t k_messages_per_turn = 2048;  // then let delivery reports and timers run
constexpr std::size_t k_delete_batch = 1000;
constexpr std::size_t k_backfill_batch = 1000;
constexpr milliseconds k_max_backoff{30'000};
// Acknowledgements that move the confirmable LSN are reported at most this often between the regular status
// updates: a short unconfirmed window means fewer duplicates after a crash.
constexpr milliseconds k_min_confirm_gap{20};
constexpr milliseconds k_slot_watch_interval{5'000};
constexpr milliseconds k_kafka_probe_interval{2'000};
constexpr milliseconds k_halt_log_interval{60'000};
/// How long a clean stop waits for the server to take the last status update.
constexpr milliseconds k_finish_timeout{2'000};
/// A record's overhead inside a Kafka batch beyond its key, value and headers (batch header, varints, CRC).
constexpr std::size_t k_record_overhead = 512;
/// Backfill records carry event ids with this bit, outside the tracker's ids.
constexpr std::uint64_t k_backfill_bit = std::uint64_t{1} << 63U;

std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}
std::int64_t now_ms() { return unix_ms(std::chrono::system_clock::now()); }

/// The `reason` label of publish_errors_total for a librdkafka error code.
std::string error_reason(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
      return "transport";
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
      return "all_brokers_down";
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return "timed_out";
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR__SSL:
      return "authentication";
    case RD_KAFKA_RESP_ERR__FATAL:
      return "fatal";
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
      return "unknown_topic";
    default: {
      std::string name = rd_kafka_err2name(err);
      while (!name.empty() && name.front() == '_') name.erase(name.begin());
      for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      return name;
    }
  }
}

bool purged(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
}

}  // namespace

/// All relay state lives here and is touched only by the thread running `m_io`: replication reads, delivery
/// reports (librdkafka callbacks run inside publisher::poll on this thread), timers and signals are handlers of this
/// one io_context. Blocking work runs elsewhere and posts its result back: connecting and creating the slot (the
/// connector thread), slot statistics, publication checks, heartbeats and state writes (the watch worker), deletes
/// (the delete worker), the backfill's cursor (its reader), Kafka reachability and topic limits (the probe).
class relay::loop {
 public:
  loop(const config::relay_config& c, run_options opts, metrics::registry& reg)
      : m_config(c),
        m_opts(std::move(opts)),
        m_metrics(reg, m_config),
        m_router(m_config),
        m_rows(m_config.source.tables.size()),
        m_pg_socket(m_io),
        m_status_timer(m_io),
        m_reconnect_timer(m_io),
        m_shutdown_timer(m_io),
        m_signals(m_io, SIGTERM, SIGINT) {
    create_publisher();
  }

  ~loop() { teardown(); }

  int run() {
    wait_for_signal();
    arm_status_timer();
    start_connect();
    m_io.run();
    teardown();
    return m_exit_code;
  }

  [[nodiscard]] metrics::readiness ready() const {
    if (m_halted.load()) {
      const std::lock_guard lock(m_reason_mutex);
      return {false, "halted: " + m_halt_reason};
    }
    if (m_backfilling.load()) return {false, "backfilling: publishing the rows already in the tables"};
    if (!m_streaming.load()) return {false, "not streaming from PostgreSQL"};
    if (!m_postgres_ok.load()) return {false, "PostgreSQL does not answer"};
    if (!m_kafka_up.load()) return {false, "Kafka brokers unreachable"};
    if (m_stalled.load()) return {false, "stalled: WAL moves but nothing was confirmed for relay.stall_timeout"};
    return {true, ""};
  }

 private:
  enum class phase : std::uint8_t { connecting, backfilling, streaming, reconnecting, halted };

  /// A record that could not be handed to Kafka yet (its topic's limits are being fetched, librdkafka's queue is
  /// full). Its views stay valid: nothing is read or routed until it is gone.
  struct pending_record {
    record_view view;
    std::optional<kafka_record> owned;  ///< a dead letter
    std::vector<header_view> owned_headers;
    std::uint32_t source = 0;
    std::string row_id;
    std::int64_t commit_ms = 0;
    bool backfill = false;
    std::optional<std::uint64_t> event_id;  ///< allocated once it was tried
  };

  /// `schema.table` of a source, or `message:<prefix>` for the logical-message source.
  [[nodiscard]] std::string source_name(std::uint32_t source) const {
    if (source < m_config.source.tables.size()) return m_config.source.tables[source].qualified_name();
    return "message:" + (m_config.source.logical_messages ? m_config.source.logical_messages->prefix : std::string());
  }

  // ---- lifecycle -------------------------------------------------------------------------------------------

  void teardown() {
    if (m_torn_down) return;
    m_torn_down = true;
    m_cancel_connect = true;
    if (m_connector.joinable()) m_connector.join();
    if (m_backfill) m_backfill->stop();
    if (m_watch) m_watch->stop();
    if (m_deleter) m_deleter->stop();
    destroy_publisher();
    release_pg_socket();
    m_stream.reset();
  }

  void wait_for_signal() {
    m_signals.async_wait([this](const std::error_code& ec, int sig) {
      if (ec) return;
      begin_shutdown(sig == SIGTERM ? "SIGTERM" : "SIGINT");
      wait_for_signal();
    });
  }

  void create_publisher() {
    const std::uint64_t generation = ++m_publisher_generation;
    m_publisher = std::make_unique<publisher>(
        m_config.sink, static_cast<std::size_t>(m_config.relay.max_inflight_messages),
        [this](const delivery& d) { on_delivery(d); },
        [this](rd_kafka_resp_err_t err, const std::string& reason) { on_kafka_error(err, reason); });
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

  void destroy_publisher() {
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

  // ---- PostgreSQL: connecting ------------------------------------------------------------------------------

  void start_connect() {
    if (m_stopping) return;
    m_phase = phase::connecting;
    m_cancel_connect = false;
    if (m_connector.joinable()) m_connector.join();
    const lsn_t from = m_tracker.confirmable();
    const run_options opts = m_first_connect ? m_opts : run_options{};
    m_connector = std::thread([this, from, opts] {
      try {
        auto plan = std::make_shared<source_plan>(open_source(m_config, opts, from, &m_cancel_connect));
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

  void on_connect_failed(const error& e) {
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
    schedule_reconnect("cannot reach PostgreSQL; retrying", e.message);
  }

  void on_connected(source_plan plan) {
    if (m_stopping) {
      maybe_finish_shutdown();
      return;
    }
    m_first_connect = false;
    for (const auto& n : plan.notes) log::info("source", n);
    m_report = std::move(plan.report);
    m_identity = plan.identity;
    m_start_lsn = plan.start_lsn;
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

  void begin_streaming() {
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

  void schedule_reconnect(std::string_view what, const std::string& why) {
    m_phase = phase::reconnecting;
    m_backoff = std::min(k_max_backoff, std::max(milliseconds(500), m_backoff * 2));
    log::warn("source", what, {{"side", "postgresql"}, {"error", why}, {"retry_in_ms", m_backoff.count()}});
    m_reconnect_timer.expires_after(m_backoff);
    m_reconnect_timer.async_wait([this](const std::error_code& ec) {
      if (!ec) try_reconnect();
    });
  }

  /// Restarting from the confirmed LSN needs a clean slate: every record already handed to Kafka is acknowledged
  /// first, then the tracker, relation cache and router start over.
  void try_reconnect() {
    if (m_stopping || m_halted) return;
    if (m_publisher->inflight_messages() > 0 || m_pending) {
      m_reconnect_timer.expires_after(milliseconds(100));
      m_reconnect_timer.async_wait([this](const std::error_code& ec) {
        if (!ec) try_reconnect();
      });
      return;
    }
    reset_stream_state();
    start_connect();
  }

  void reset_stream_state() {
    const lsn_t confirmed = m_tracker.confirmable();
    m_tracker = lsn_tracker();
    m_tracker.observe_server_position(confirmed);
    m_decoder = pgoutput_decoder();
    m_router = router(m_config);
    m_tx.reset();
    m_rows.forget_unacked();
    m_received = 0;
  }

  void on_source_error(const error& e) {
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

  void release_pg_socket() {
    if (m_pg_socket.is_open()) {
      m_pg_socket.cancel();
      static_cast<void>(m_pg_socket.release());  // libpq owns the socket
    }
    m_waiting_for_pg = false;
  }

  // ---- PostgreSQL: streaming -------------------------------------------------------------------------------

  [[nodiscard]] bool reading_paused() const { return m_read_stopped || m_pending.has_value() || over_limits(); }

  [[nodiscard]] bool over_limits() const {
    const auto max_messages = static_cast<std::size_t>(m_config.relay.max_inflight_messages);
    return m_publisher->inflight_messages() >= max_messages ||
           m_publisher->inflight_bytes() >= m_config.relay.max_inflight_bytes ||
           m_publisher->tracked_records() >= 4 * max_messages ||
           m_rows.backlog() >= static_cast<std::size_t>(m_config.relay.max_delete_backlog);
  }

  void arm_pg_socket() {
    if (m_phase != phase::streaming || reading_paused() || m_waiting_for_pg || !m_pg_socket.is_open()) return;
    m_waiting_for_pg = true;
    m_pg_socket.async_wait(asio::posix::stream_descriptor::wait_read, [this](const std::error_code& ec) {
      m_waiting_for_pg = false;
      if (!ec) pump();
    });
  }

  /// Reads what the server sent, a bounded number of messages per turn, until the socket would block or
  /// backpressure stops it.
  void pump() {
    if (m_phase != phase::streaming || !m_stream) return;
    try {
      for (std::size_t n = 0; n < k_messages_per_turn; ++n) {
        if (reading_paused()) return;
        server_message msg;
        switch (m_stream->read(msg)) {
          case replication_stream::read_result::message:
            m_last_message = clock::now();
            m_postgres_ok = true;
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

  void handle(const server_message& sm) {
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
    m_tx_index = 0;
    m_tx_events = 0;
  }

  void on_event(const commit_msg& c, lsn_t) {
    m_tracker.commit(c.end_lsn);
    if (m_tx_events > 0) m_metrics.transactions.inc();
    ++m_transactions;
    m_tx.reset();
    if (m_finishing_tx) {
      // SIGTERM came inside this transaction: it is now complete, so a restart repeats none of it.
      m_finishing_tx = false;
      stop_reading("the transaction in progress at the signal is complete");
    }
  }

  void on_event(const relation_msg& r, lsn_t lsn) {
    if (auto stop = m_router.on_relation(*r.rel)) {
      halt(*stop + " (at LSN " + format_lsn(lsn) + ")");
      return;
    }
    if (r.columns_changed) {
      log::info(k_component, "table columns changed mid-stream",
                {{"table", r.rel->schema + "." + r.rel->name}, {"columns", r.rel->columns.size()}});
    }
  }

  void on_event(const insert_msg& ins, lsn_t lsn) {
    if (!m_tx) throw outbox_error("decode", "Insert outside a transaction at LSN " + format_lsn(lsn));
    const routed r = m_router.route_insert(*ins.rel, ins.values, *m_tx);
    const std::uint64_t index = m_tx_index++;
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
  }

  void on_event(const logical_message& m, lsn_t) {
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
    switch (r.what) {
      case routed::outcome::skip:
      case routed::outcome::stop:
        return;
      case routed::outcome::invalid: {
        const std::string table = "message:" + std::string(m.prefix);
        const dead_letter_origin from{table, m_tx->commit_lsn, m_tx->xid};
        on_invalid(r.invalid, [&] {
          return dead_letter_of_envelope(m_config.sink.dead_letter_topic, m.content, r.invalid, from);
        });
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
  }

  void on_event(const ignored_msg&, lsn_t) {}

  [[nodiscard]] std::uint32_t message_source() const {
    return static_cast<std::uint32_t>(m_config.source.tables.size());
  }

  /// SIGTERM, a halt: no more messages are read; what is in flight is still acknowledged and confirmed.
  void stop_reading(std::string_view why) {
    if (m_read_stopped) return;
    m_read_stopped = true;
    if (m_pg_socket.is_open()) m_pg_socket.cancel();
    log::debug(k_component, "stopped reading", {{"why", why}});
    maybe_finish_shutdown();
  }

  // ---- records: publishing, invalid records, dead letters ---------------------------------------------------

  /// A record that cannot be published: halt, or dead-letter it (reusing `event_id` when the record already had one,
  /// so that its transaction is confirmed only once the dead letter is acknowledged).
  template <typename MakeDeadLetter>
  void on_invalid(const invalid_record& why, MakeDeadLetter&& make, std::optional<std::uint64_t> event_id = {}) {
    if (m_config.sink.on_invalid_record == config::invalid_record_policy::halt) {
      m_metrics.invalid_record(why.reason, "halted");
      halt(why.message + " [" + why.reason +
           "]; the relay stopped before it and confirmed nothing past it. Fix the "
           "producing application; to go on past such records, set sink.on_invalid_record: dead_letter");
      return;
    }
    m_metrics.invalid_record(why.reason, "dead_lettered");
    log::warn(k_component, "dead-lettered an invalid record",
              {{"reason", why.reason}, {"error", why.message}, {"topic", m_config.sink.dead_letter_topic}});
    // Built in place: the views point into the owned record, which must not move.
    pending_record& p = m_pending.emplace();
    p.owned = make();
    for (const auto& [n, v] : p.owned->headers) p.owned_headers.push_back({n, v});
    p.view =
        record_view{p.owned->topic, p.owned->key,
                    p.owned->value ? std::optional<std::string_view>(*p.owned->value) : std::nullopt, p.owned_headers};
    p.source =
        m_phase == phase::backfilling ? static_cast<std::uint32_t>(m_batch ? m_batch->table : 0) : message_source();
    p.commit_ms = m_tx ? m_tx->commit_time_ms : now_ms();
    p.backfill = m_phase == phase::backfilling;
    p.event_id = event_id;
    try_pending();
  }

  void publish(const record_view& rec, std::uint32_t source, std::string_view row_id, std::int64_t commit_ms,
               bool backfill) {
    pending_record p;
    p.view = rec;
    p.source = source;
    p.row_id = std::string(row_id);
    p.commit_ms = commit_ms;
    p.backfill = backfill;
    m_pending = std::move(p);
    try_pending();
  }

  /// Hands the pending record to Kafka if its topic's limits are known and librdkafka has room; true when it went.
  bool try_pending() {
    if (!m_pending) return true;
    pending_record& p = *m_pending;
    const std::string topic(p.view.topic);
    const auto limits = m_topic_limits.find(topic);
    if (limits == m_topic_limits.end()) {
      if (m_limits_requested.insert(topic).second) m_probe->describe(topic);
      return false;
    }
    if (!p.owned && limits->second.max_message_bytes &&
        p.view.byte_size() + k_record_overhead > *limits->second.max_message_bytes) {
      const invalid_record why{"too_large", m_config.source.tables.empty() ? "" : "payload",
                               "the record for topic " + topic + " (key \"" + std::string(p.view.key.substr(0, 100)) +
                                   "\") has " + std::to_string(p.view.byte_size()) + " bytes, more than the topic's " +
                                   "max.message.bytes (" + std::to_string(*limits->second.max_message_bytes) + ")"};
      const record_view view = p.view;
      const std::string table = source_name(p.source);
      const dead_letter_origin from{table, m_tx ? m_tx->commit_lsn : m_start_lsn, m_tx ? m_tx->xid : 0};
      m_pending.reset();
      on_invalid(why, [&] { return dead_letter_of_record(m_config.sink.dead_letter_topic, view, why, from); });
      return !m_pending.has_value();
    }
    if (!p.event_id) p.event_id = p.backfill ? (k_backfill_bit | ++m_backfill_ids) : m_tracker.add_event();
    std::string why;
    rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
    const produce_result r = m_publisher->produce(p.view, *p.event_id, p.source, p.commit_ms, &why, &code);
    if (r == produce_result::queue_full) {
      m_metrics.publish_error("queue_full");
      return false;  // retried after deliveries free room
    }
    if (r == produce_result::refused) {
      m_metrics.publish_error("refused");
      if (p.owned) {
        halt("the relay's dead-letter topic " + m_config.sink.dead_letter_topic + " refused a dead letter: " + why);
        return false;
      }
      const invalid_record invalid{code == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? "too_large" : "refused", "", why};
      const record_view view = p.view;
      const std::string table = source_name(p.source);
      const dead_letter_origin from{table, m_tx ? m_tx->commit_lsn : m_start_lsn, m_tx ? m_tx->xid : 0};
      // The event id stays in the tracker unacknowledged until its dead letter (which reuses it) is acknowledged.
      const std::uint64_t id = *p.event_id;
      m_pending.reset();
      on_invalid(
          invalid, [&] { return dead_letter_of_record(m_config.sink.dead_letter_topic, view, invalid, from); }, id);
      return !m_pending.has_value();
    }
    if (p.backfill) {
      ++m_backfill_inflight;
      if (!p.row_id.empty()) m_rows.remember(*p.event_id, p.source, p.row_id);
    } else {
      ++m_tx_events;
      if (!p.row_id.empty()) m_rows.remember(*p.event_id, p.source, p.row_id);
    }
    m_pending.reset();
    m_metrics.inflight_messages.set(static_cast<double>(m_publisher->inflight_messages()));
    m_metrics.inflight_bytes.set(static_cast<double>(m_publisher->inflight_bytes()));
    return true;
  }

  void on_topic_limits(const std::string& topic, const topic_limits& limits) {
    m_limits_requested.erase(topic);
    if (!limits.error.empty()) {
      log::warn("kafka",
                "could not read the topic's max.message.bytes; records are checked against the producer's "
                "limit only",
                {{"topic", topic}, {"error", limits.error}});
    }
    m_topic_limits[topic] = limits;
    resume();
  }

  /// After anything that may free the way: the pending record, then reading or backfilling again.
  void resume() {
    if (m_pending && !try_pending()) return;
    if (m_phase == phase::streaming && !reading_paused()) {
      asio::post(m_io, [this] { pump(); });
    } else if (m_phase == phase::backfilling && !over_limits()) {
      asio::post(m_io, [this] { process_backfill(); });
    }
  }

  // ---- backfill ----------------------------------------------------------------------------------------------

  void start_backfill(const backfill_spec& spec) {
    m_phase = phase::backfilling;
    m_backfilling = true;
    m_metrics.backfill_running.set(1);
    m_backfill_reading_done = false;
    m_backfill_time_ms = now_ms();
    std::string names;
    for (const auto i : spec.tables) names += (names.empty() ? "" : ",") + m_config.source.tables[i].qualified_name();
    log::info(k_component, "backfill: publishing the rows already in the tables, then streaming",
              {{"tables", names},
               {"slot_lsn", format_lsn(m_start_lsn)},
               {"resumed", spec.visible_in.empty() ? "no" : "yes"}});
    m_backfill = std::make_unique<backfill_reader>(
        side_params(m_config.source), m_config.source.connect_timeout, m_config, m_report.tables, spec,
        k_backfill_batch,
        [this](backfill_batch b) {
          auto shared = std::make_shared<backfill_batch>(std::move(b));
          asio::post(m_io, [this, shared] { on_backfill_batch(std::move(*shared)); });
        },
        [this](const outbox_error& e) { asio::post(m_io, [this, err = e.value()] { on_backfill_error(err); }); });
  }

  void on_backfill_error(const error& e) {
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

  void on_backfill_batch(backfill_batch b) {
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

  void process_backfill() {
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
        const dead_letter_origin from{m_config.source.tables[m_batch->table].qualified_name(), m_start_lsn, xid};
        on_invalid(r.invalid, [&] {
          return dead_letter_of_row(m_config.sink.dead_letter_topic, rel, m_values, std::nullopt, r.row_id, r.invalid,
                                    from);
        });
        continue;
      }
      if (r.what != routed::outcome::record) continue;
      const bool deletes = m_config.source.tables[m_batch->table].delete_after_publish;
      publish(*r.record, static_cast<std::uint32_t>(m_batch->table), deletes ? r.row_id : std::string_view(), ts, true);
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

  void check_backfill_done() {
    if (!m_backfill_reading_done || m_backfill_inflight > 0 || m_pending || m_finishing_backfill) return;
    m_finishing_backfill = true;
    const system_identity id = m_identity;
    m_watch->post(
        [this, id](pg_session& s) {
          finish_backfill(s, m_config, id);
          asio::post(m_io, [this] { on_backfill_recorded(); });
        },
        [this](const outbox_error& e) {
          asio::post(m_io, [this, err = e.value()] {
            m_finishing_backfill = false;
            on_backfill_error(err);
          });
        });
  }

  void on_backfill_recorded() {
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

  // ---- Kafka side ------------------------------------------------------------------------------------------

  void watch_kafka(std::uint64_t generation) {
    m_kafka_wakeup->async_wait(asio::posix::stream_descriptor::wait_read,
                               [this, generation](const std::error_code& ec) {
                                 if (ec || generation != m_publisher_generation) return;
                                 m_publisher->poll();
                                 after_deliveries();
                                 if (!m_finished && generation == m_publisher_generation) watch_kafka(generation);
                               });
  }

  void set_kafka_up(bool up, const std::string& why) {
    if (up == m_kafka_up.load()) return;
    m_kafka_up = up;
    m_metrics.kafka_up.set(up ? 1 : 0);
    if (up) {
      log::info("kafka", "brokers reachable again", {{"side", "kafka"}, {"reason", why}});
    } else {
      log::warn("kafka", "Kafka brokers unreachable; records are held and retried",
                {{"side", "kafka"}, {"reason", why}});
    }
  }

  void on_kafka_error(rd_kafka_resp_err_t err, const std::string& reason) {
    m_metrics.publish_error(error_reason(err));
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
      m_kafka_down_at = clock::now();
      set_kafka_up(false, reason);
      return;
    }
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
      const std::string what = m_publisher->fatal_error().value_or(reason);
      if (what.find("FENCED") != std::string::npos || what.find("fenced") != std::string::npos) {
        fail(error{"kafka.fatal", "the Kafka producer was fenced: " + what, retry_class::fatal});
        return;
      }
      restart_pipeline("the Kafka producer failed: " + what);
      return;
    }
    log::debug("kafka", "librdkafka error", {{"side", "kafka"}, {"error", rd_kafka_err2str(err)}, {"reason", reason}});
  }

  void on_delivery(const delivery& d) {
    const bool backfill = (d.event_id & k_backfill_bit) != 0;
    if (!d.ok()) {
      if (purged(d.err)) return;  // ours: a restart or shutdown dropped it on purpose
      on_delivery_failed(d, backfill);
      return;
    }
    if (backfill) {
      --m_backfill_inflight;
      ++m_backfill_published;
      m_metrics.backfill_rows.inc();
    } else {
      m_tracker.ack(d.event_id);
    }
    ++m_published;
    m_metrics.published(d.source, d.topic).inc();
    m_metrics.commit_to_ack.observe(static_cast<double>(std::max<std::int64_t>(0, now_ms() - d.commit_time_ms)) /
                                    1000.0);
    m_rows.acked(d.event_id);
  }

  void on_delivery_failed(const delivery& d, bool backfill) {
    const std::string what = "Kafka did not take the record for topic " + std::string(d.topic) + " key \"" +
                             std::string(d.key.substr(0, 100)) + "\": " + rd_kafka_err2str(d.err);
    m_metrics.publish_error("delivery");
    const bool refused = kafka::record_refused(d.err) || d.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                         d.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    if (refused && m_config.sink.on_invalid_record == config::invalid_record_policy::halt) {
      m_metrics.invalid_record(error_reason(d.err), "halted");
      halt(what +
           "; the relay stopped before it and confirmed nothing past it. Fix the topic (or its "
           "max.message.bytes, ACLs), or set sink.on_invalid_record: dead_letter");
      return;
    }
    if (refused && !backfill) {
      if (const auto where = m_tracker.locate(d.event_id)) {
        m_poison.insert(*where);
        log::warn(k_component, "Kafka refused a record; it is dead-lettered when the stream reaches it again",
                  {{"side", "kafka"}, {"error", what}});
      }
    }
    restart_pipeline(what);
  }

  /// A broken producer (fatal error, gap-less guarantee): a fresh one, and the stream again from the confirmed LSN.
  void restart_pipeline(const std::string& why) {
    if (m_restarting || m_halted || m_stopping) {
      if (m_stopping) finish();
      return;
    }
    m_restarting = true;
    log::warn(k_component, "restarting the Kafka producer and the stream from the confirmed LSN",
              {{"side", "kafka"}, {"error", why}, {"confirmed_lsn", format_lsn(m_tracker.confirmable())}});
    release_pg_socket();
    m_stream.reset();
    m_streaming = false;
    m_metrics.leader.set(0);
    if (m_backfill) m_backfill->stop();
    m_backfill.reset();
    m_batch.reset();
    m_backfilling = false;
    m_pending.reset();
    m_backfill_inflight = 0;
    asio::post(m_io, [this] {
      destroy_publisher();
      create_publisher();
      m_topic_limits.clear();
      m_limits_requested.clear();
      reset_stream_state();
      m_restarting = false;
      m_metrics.reconnects.inc();
      schedule_reconnect("reconnecting after a producer restart", "");
    });
  }

  void after_deliveries() {
    if (m_finished) return;
    m_metrics.inflight_messages.set(static_cast<double>(m_publisher->inflight_messages()));
    m_metrics.inflight_bytes.set(static_cast<double>(m_publisher->inflight_bytes()));
    if (m_stream && m_tracker.confirmable() != m_last_confirmed &&
        clock::now() - m_last_status_sent >= k_min_confirm_gap) {
      send_status(false);
    }
    flush_deletes(false);
    if (m_phase == phase::backfilling) check_backfill_done();
    resume();
    if (m_halted) close_halted_stream();
    maybe_finish_shutdown();
  }

  void send_status(bool reply_requested) {
    if (!m_stream || (m_phase != phase::streaming && m_phase != phase::halted)) return;
    const lsn_t flushed = m_tracker.confirmable();
    try {
      m_stream->send_status(std::max(m_received, flushed), flushed, reply_requested);
      m_last_status_sent = clock::now();
      m_metrics.confirmed_lsn.set(static_cast<double>(flushed));
    } catch (const outbox_error& e) {
      on_source_error(e.value());
      return;
    }
    if (flushed != m_last_confirmed) {
      m_last_confirmed = flushed;
      m_last_confirm_change = clock::now();
    }
  }

  // ---- timers: status, liveness, slot watch, heartbeats, deletes -------------------------------------------

  void arm_status_timer() {
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

  void tick() {
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

  void start_slot_watch() {
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

  void on_slot_watch(const slot_watch_result& r) {
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

  /// Sends the next delete batch when one is due (a full batch, or whatever is queued when `force`).
  void flush_deletes(bool force) {
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
        [this](const outbox_error& e) {
          asio::post(m_io, [this, what = std::string(e.what())] { on_deleted(false, what); });
        });
    m_metrics.delete_backlog.set(static_cast<double>(m_rows.backlog()));
  }

  void on_deleted(bool ok, const std::string& why) {
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

  // ---- halting, stopping -------------------------------------------------------------------------------------

  /// Something only an operator can fix: stop reading, let what is in flight be acknowledged and confirmed, close
  /// the stream, and stay up with outbox_relay_halted 1 and /readyz saying why.
  void halt(const std::string& reason) {
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

  void close_halted_stream() {
    if (!m_stream || m_publisher->inflight_messages() > 0) return;
    send_status(false);
    log::info(k_component, "confirmed", {{"lsn", format_lsn(m_tracker.confirmable())}});
    release_pg_socket();
    if (m_stream) m_stream->finish(k_finish_timeout);
    m_stream.reset();
    m_metrics.leader.set(0);
    m_metrics.forget_slot();
  }

  void begin_shutdown(const char* why) {
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

  void maybe_finish_shutdown() {
    if (!m_stopping || m_finished) return;
    const bool reading = m_phase == phase::streaming && !m_read_stopped;
    if (reading || m_pending || m_publisher->inflight_messages() > 0) return;
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

  void finish() {
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
               {"confirmed_lsn", format_lsn(m_tracker.confirmable())}});
    m_status_timer.cancel();
    m_io.stop();
  }

  void fail(const error& e) {
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

  // ---- state ---------------------------------------------------------------------------------------------------

  const config::relay_config m_config;
  run_options m_opts;
  bool m_first_connect = true;
  relay_metrics m_metrics;
  router m_router;
  pgoutput_decoder m_decoder;
  lsn_tracker m_tracker;
  published_rows m_rows;
  asio::io_context m_io;
  std::unique_ptr<publisher> m_publisher;
  std::uint64_t m_publisher_generation = 0;
  std::unique_ptr<asio::posix::stream_descriptor> m_kafka_wakeup;
  std::unique_ptr<kafka_probe> m_probe;
  std::unique_ptr<replication_stream> m_stream;
  asio::posix::stream_descriptor m_pg_socket;
  asio::steady_timer m_status_timer;
  asio::steady_timer m_reconnect_timer;
  asio::steady_timer m_shutdown_timer;
  asio::signal_set m_signals;
  std::thread m_connector;
  std::atomic<bool> m_cancel_connect{false};
  bool m_connector_finishing = false;
  std::unique_ptr<side_worker> m_watch;    ///< slot statistics, publication checks, heartbeats, state writes
  std::unique_ptr<side_worker> m_deleter;  ///< delete_after_publish
  std::unique_ptr<backfill_reader> m_backfill;

  source_report m_report;
  system_identity m_identity;
  lsn_t m_start_lsn = 0;
  milliseconds m_stream_timeout{60'000};
  phase m_phase = phase::connecting;

  std::optional<tx_context> m_tx;  ///< the transaction being decoded
  std::uint64_t m_tx_index = 0;    ///< position of the next event inside it
  std::uint64_t m_tx_events = 0;
  std::set<std::pair<lsn_t, std::uint64_t>> m_poison;  ///< (Begin LSN, position) of records Kafka refused
  std::optional<pending_record> m_pending;
  std::unordered_map<std::string, topic_limits> m_topic_limits;
  std::set<std::string> m_limits_requested;

  std::optional<backfill_batch> m_batch;
  int m_batch_row = 0;
  std::shared_ptr<const relation> m_backfill_relation;
  std::vector<tuple_value> m_values;
  tx_context m_backfill_tx;
  std::int64_t m_backfill_time_ms = 0;
  std::uint64_t m_backfill_ids = 0;
  std::uint64_t m_backfill_inflight = 0;
  std::uint64_t m_backfill_published = 0;
  bool m_backfill_reading_done = false;
  bool m_finishing_backfill = false;

  lsn_t m_received = 0;
  lsn_t m_last_confirmed = 0;
  clock::time_point m_last_confirm_change = clock::now();
  clock::time_point m_last_status_sent{};
  clock::time_point m_last_message{};
  clock::time_point m_last_probe{};
  clock::time_point m_last_watch{};
  clock::time_point m_watch_started{};
  clock::time_point m_last_heartbeat{};
  clock::time_point m_last_halt_log{};
  clock::time_point m_next_delete_attempt{};
  clock::time_point m_kafka_down_at{};  ///< the last "all brokers down" from librdkafka
  milliseconds m_backoff{0};
  milliseconds m_delete_backoff{0};
  bool m_watch_busy = false;

  std::atomic<bool> m_streaming{false};    ///< read by the HTTP thread
  std::atomic<bool> m_backfilling{false};  ///< read by the HTTP thread
  std::atomic<bool> m_kafka_up{true};      ///< read by the HTTP thread
  std::atomic<bool> m_postgres_ok{false};  ///< read by the HTTP thread
  std::atomic<bool> m_stalled{false};      ///< read by the HTTP thread
  std::atomic<bool> m_halted{false};       ///< read by the HTTP thread
  mutable std::mutex m_reason_mutex;
  std::string m_halt_reason;

  std::uint64_t m_published = 0;
  std::uint64_t m_transactions = 0;
  bool m_waiting_for_pg = false;
  bool m_read_stopped = false;
  bool m_ever_streamed = false;
  bool m_restarting = false;
  bool m_stopping = false;
  bool m_finishing_tx = false;
  bool m_finished = false;
  bool m_torn_down = false;
  int m_exit_code = 0;
};

relay::relay(const config::relay_config& c, run_options opts, metrics::registry& metrics)
    : m_loop(std::make_unique<loop>(c, std::move(opts), metrics)) {}
relay::~relay() = default;
int relay::run() { return m_loop->run(); }
metrics::readiness relay::ready() const { return m_loop->ready(); }

}  // namespace outbox::relay
