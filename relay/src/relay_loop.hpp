#pragma once

// The relay's event loop: one class whose stages are defined in the files named after them:
// relay.cpp (lifecycle, connecting, the stream, dispatch, status, halting and stopping), loop_records.cpp (a
// record on its way to Kafka: topic limits, backpressure, invalid records and dead letters), loop_kafka.cpp
// (deliveries, reachability, producer restarts), loop_backfill.cpp (the rows already in the tables) and
// loop_watch.cpp (timers: status, liveness, slot watch, heartbeats, deletes) and loop_transactions.cpp (exactly_once:
// Kafka transactions on PostgreSQL commit boundaries with a checkpoint in each). Private to relay/src.

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
#include "checkpoint.hpp"
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

namespace outbox::relay::loop_detail {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

inline constexpr std::string_view k_component = "relay";
inline constexpr std::size_t k_messages_per_turn = 2048;  // then let delivery reports and timers run
inline constexpr std::size_t k_delete_batch = 1000;
inline constexpr std::size_t k_backfill_batch = 1000;
inline constexpr milliseconds k_max_backoff{30'000};
// Acknowledgements that move the confirmable LSN are reported at most this often between the regular status
// updates: a short unconfirmed window means fewer duplicates after a crash.
inline constexpr milliseconds k_min_confirm_gap{20};
inline constexpr milliseconds k_slot_watch_interval{5'000};
inline constexpr milliseconds k_kafka_probe_interval{2'000};
inline constexpr milliseconds k_halt_log_interval{60'000};
/// How long a clean stop waits for the server to take the last status update.
inline constexpr milliseconds k_finish_timeout{2'000};
/// A record's overhead inside a Kafka batch beyond its key, value and headers (batch header, varints, CRC).
inline constexpr std::size_t k_record_overhead = 512;
/// Backfill records carry event ids with this bit, outside the tracker's ids.
inline constexpr std::uint64_t k_backfill_bit = std::uint64_t{1} << 63U;
/// The source of a checkpoint record (exactly_once): not an event; its event id is 0.
inline constexpr std::uint32_t k_checkpoint_source = UINT32_MAX;

inline std::int64_t unix_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(t.time_since_epoch()).count();
}
inline std::int64_t now_ms() { return unix_ms(std::chrono::system_clock::now()); }

/// The `reason` label of publish_errors_total for a librdkafka error code.
inline std::string error_reason(rd_kafka_resp_err_t err) {
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

inline bool purged(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;
}

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

}  // namespace outbox::relay::loop_detail

namespace outbox::relay {

using namespace loop_detail;  // NOLINT(google-build-using-namespace): the loop's own constants

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
        m_signals(m_io, SIGTERM, SIGINT),
        m_tx_timer(m_io) {
    create_publisher();
  }

  ~loop() { teardown(); }

  int run() {
    wait_for_signal();
    arm_status_timer();
    if (eos()) arm_transaction_timer();
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
    if (m_standby.load()) {
      const std::lock_guard lock(m_reason_mutex);
      // A standby is healthy: it is doing its job (a rollout must not wait for it to lead).
      return {true, "standby: another relay leads slot " + m_config.source.slot +
                        (m_leader_holder.empty() ? std::string() : " (" + m_leader_holder + ")")};
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
  /// `schema.table` of a source, or `message:<prefix>` for the logical-message source.
  [[nodiscard]] std::string source_name(std::uint32_t source) const;

  // ---- lifecycle -------------------------------------------------------------------------------------------

  void teardown();
  void wait_for_signal();
  void create_publisher();
  void destroy_publisher();

  // ---- PostgreSQL: connecting ------------------------------------------------------------------------------

  void start_connect();
  void on_connect_failed(const error& e);
  /// Another relay holds the leader lock: this one waits as a standby (called from the connector thread).
  void on_standby(const std::string& holder);
  void on_connected(source_plan plan);
  void begin_streaming();
  void schedule_reconnect(std::string_view what, const std::string& why, std::string_view side = "postgresql");
  /// Restarting from the confirmed LSN needs a clean slate: every record already handed to Kafka is acknowledged
  /// first, then the tracker, relation cache and router start over.
  void try_reconnect();
  void reset_stream_state();
  void on_source_error(const error& e);
  void release_pg_socket();

  // ---- PostgreSQL: streaming -------------------------------------------------------------------------------

  [[nodiscard]] bool reading_paused() const;
  [[nodiscard]] bool over_limits() const;
  void arm_pg_socket();
  /// Reads what the server sent, a bounded number of messages per turn, until the socket would block or
  /// backpressure stops it.
  void pump();
  void handle(const server_message& sm);
  void on_event(const begin_msg& b, lsn_t);
  void on_event(const commit_msg& c, lsn_t);
  void on_event(const relation_msg& r, lsn_t lsn);
  void on_event(const insert_msg& ins, lsn_t lsn);
  void on_event(const logical_message& m, lsn_t);
  void on_event(const ignored_msg&, lsn_t) {}

  [[nodiscard]] std::uint32_t message_source() const;
  /// SIGTERM, a halt: no more messages are read; what is in flight is still acknowledged and confirmed.
  void stop_reading(std::string_view why);

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
               bool backfill);
  /// Hands the pending record to Kafka if its topic's limits are known and librdkafka has room; true when it went.
  bool try_pending();
  void on_topic_limits(const std::string& topic, const topic_limits& limits);
  /// After anything that may free the way: the pending record, then reading or backfilling again.
  void resume();

  // ---- backfill ----------------------------------------------------------------------------------------------

  void start_backfill(const backfill_spec& spec);
  void on_backfill_error(const error& e);
  void on_backfill_batch(backfill_batch b);
  void process_backfill();
  void check_backfill_done();
  void on_backfill_recorded();

  // ---- Kafka side ------------------------------------------------------------------------------------------

  void watch_kafka(std::uint64_t generation);
  void set_kafka_up(bool up, const std::string& why);
  void on_kafka_error(rd_kafka_resp_err_t err, const std::string& reason);
  void on_delivery(const delivery& d);
  void on_delivery_failed(const delivery& d, bool backfill);
  /// Whether a refusal came from batching (each record fits the topic): then batches are capped below its limit.
  bool batch_too_large(const delivery& d);
  /// After a failed delivery: a record Kafka refused for good halts the relay or is dead-lettered when the stream
  /// reaches it again; anything else is sent again from the confirmed LSN by a fresh producer.
  void refuse_or_retry(bool refused, std::uint64_t event_id, bool backfill, rd_kafka_resp_err_t err,
                       const std::string& what);
  /// The cluster's answer about a topic a delivery called unknown.
  void on_topic_checked(const topic_limits& limits);
  /// A broken producer (fatal error, gap-less guarantee): a fresh one, and the stream again from the confirmed LSN.
  void restart_pipeline(const std::string& why);
  /// The producer cannot go on (a fatal librdkafka error, `what`). Fenced with source.leader_lock: a new producer
  /// and the stream again, from the checkpoint; the leader lock decides whether this relay still leads (a
  /// coordinator that aborted a transaction open past sink.transaction_timeout fences the producer too). Fenced
  /// without the lock: exit 1, another relay leads. Any other fatal error: a new producer.
  void producer_failed(const std::string& what);
  void after_deliveries();
  void send_status(bool reply_requested);

  // ---- exactly_once: Kafka transactions on PostgreSQL commit boundaries (loop_transactions.cpp) ----------

  [[nodiscard]] bool eos() const noexcept { return m_config.sink.delivery == config::delivery_mode::exactly_once; }
  /// The LSN that may be confirmed to PostgreSQL: what Kafka acknowledged, or with exactly_once what the last
  /// committed checkpoint covers.
  [[nodiscard]] lsn_t confirmable() const noexcept;
  /// Opens a Kafka transaction unless one is open; false when librdkafka refuses (the pipeline then restarts).
  bool ensure_kafka_tx();
  /// A record of the open Kafka transaction was handed to librdkafka.
  void count_in_kafka_tx(std::size_t bytes);
  /// The open Kafka transaction holds transaction_max_records or _max_bytes.
  [[nodiscard]] bool kafka_tx_full() const;
  /// Full, or open for transaction_max_time.
  [[nodiscard]] bool kafka_tx_due() const;
  /// At a PostgreSQL commit that ended at `end_lsn`: commit the Kafka transaction when it reached its bounds.
  void at_commit_boundary(lsn_t end_lsn);
  /// Inside a PostgreSQL transaction, after one of its records: split it when the Kafka transaction is full.
  void maybe_split_transaction();
  /// Backfill: commit when the Kafka transaction is full; true when a commit started.
  bool maybe_commit_backfill();
  [[nodiscard]] checkpoint checkpoint_at(lsn_t end_lsn, std::optional<partial_transaction> partial) const;
  /// Writes the checkpoint record into the open transaction and commits it once every record is acknowledged.
  void commit_kafka_tx(const checkpoint& cp);
  /// The checkpoint record and every record before it are acknowledged: commit on a thread of its own.
  void launch_commit();
  void on_kafka_tx_committed(const tx_outcome& r, const checkpoint& cp);
  /// Drops the open transaction (halt).
  void abort_kafka_tx(const std::string& why);
  void forget_kafka_tx();
  void arm_transaction_timer();
  void on_transaction_timer();
  /// Runs in open_source (connector thread): init_transactions, then the last checkpoint of the slot.
  std::optional<checkpoint> start_kafka_transactions();

  // ---- timers: status, liveness, slot watch, heartbeats, deletes -------------------------------------------

  void arm_status_timer();
  void tick();
  void start_slot_watch();
  void on_slot_watch(const slot_watch_result& r);
  /// Sends the next delete batch when one is due (a full batch, or whatever is queued when `force`).
  void flush_deletes(bool force);
  void on_deleted(bool ok, const std::string& why);

  // ---- halting, stopping -------------------------------------------------------------------------------------

  /// Something only an operator can fix: stop reading, let what is in flight be acknowledged and confirmed, close
  /// the stream, and stay up with outbox_relay_halted 1 and /readyz saying why.
  void halt(const std::string& reason);
  void close_halted_stream();
  void begin_shutdown(const char* why);
  void maybe_finish_shutdown();
  void finish();
  void fail(const error& e);

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

  /// exactly_once: the open Kafka transaction.
  struct kafka_tx_state {
    bool open = false;
    std::size_t records = 0;
    std::uint64_t bytes = 0;
    clock::time_point opened_at{};
    std::vector<std::uint64_t> acked_rows;  ///< delete_after_publish rows, deleted once the transaction commits
  };
  kafka_tx_state m_ktx;
  std::optional<checkpoint> m_commit_waiting;  ///< written, waiting for its acknowledgement before the commit
  bool m_committing = false;                   ///< from the checkpoint record to the commit's answer
  std::atomic<bool> m_tx_initialized{false};   ///< init_transactions() succeeded on the current producer
  std::thread m_tx_thread;
  asio::steady_timer m_tx_timer;
  lsn_t m_committed_end = 0;      ///< the last committed checkpoint's end_lsn
  lsn_t m_last_complete_end = 0;  ///< end LSN of the last PostgreSQL transaction wholly handed to Kafka
  clock::time_point m_last_commit{};
  std::optional<partial_transaction> m_skip;  ///< resuming a split transaction: its first rows are in Kafka

  std::optional<tx_context> m_tx;  ///< the transaction being decoded
  std::uint64_t m_tx_index = 0;    ///< position of the next event inside it
  std::uint64_t m_tx_events = 0;
  std::set<std::pair<lsn_t, std::uint64_t>> m_poison;  ///< (Begin LSN, position) of records Kafka refused
  std::optional<pending_record> m_pending;
  /// A delivery called its topic unknown: which record, until the cluster says whether the topic exists.
  struct topic_check {
    std::string topic;
    std::uint64_t event_id = 0;
    bool backfill = false;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    std::string what;
  };
  std::optional<topic_check> m_topic_check;
  std::unordered_map<std::string, topic_limits> m_topic_limits;
  const topic_limits* m_last_limits = nullptr;  ///< in m_topic_limits: the limits of m_last_limits_topic
  std::string m_last_limits_topic;
  /// batch.size of the producers made from now on; lowered when a topic refused a batch of records that each fit
  /// its max.message.bytes (librdkafka batches up to 1 MB whatever the topic takes). 0: librdkafka's.
  std::size_t m_batch_size_cap = 0;
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
  std::atomic<bool> m_standby{false};      ///< another relay holds the leader lock; read by the HTTP thread
  mutable std::mutex m_reason_mutex;
  std::string m_halt_reason;
  std::string m_leader_holder;  ///< who leads while this relay waits (m_reason_mutex)
  std::int64_t m_epoch = 0;     ///< the leader epoch of this relay's current term

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

}  // namespace outbox::relay
