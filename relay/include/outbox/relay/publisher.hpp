#pragma once

#include "outbox/base/error.hpp"
#include "outbox/config/relay_config.hpp"
#include "outbox/relay/router.hpp"

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace outbox::relay {

/// The outcome of one record, reported once by librdkafka.
struct delivery {
  std::uint64_t event_id = 0;
  std::size_t bytes = 0;
  std::uint32_t source = 0;         ///< what the caller passed to produce(): which source the record came from
  std::int64_t commit_time_ms = 0;  ///< as passed to produce()
  std::string_view topic;           ///< valid during the callback only
  std::string_view key;             ///< valid during the callback only
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

  [[nodiscard]] bool ok() const noexcept { return err == RD_KAFKA_RESP_ERR_NO_ERROR; }
};

/// What produce() did with a record.
enum class produce_result : std::uint8_t {
  queued,      ///< librdkafka has it; its delivery report follows
  queue_full,  ///< librdkafka's queue is full: backpressure, try the same record again after deliveries
  refused,     ///< librdkafka refused this record for good (too large, bad topic); `why` says so
  /// The producer, not the record, is at fault: a fatal error was raised, or (transactional) the open transaction
  /// already failed and must be aborted. Nothing is wrong with the record; `why` says what happened.
  producer_failed,
};

/// How a Kafka transaction call ended.
struct tx_outcome {
  enum class kind : std::uint8_t {
    ok,
    retriable,  ///< try the call again (or, for a commit whose outcome is unknown, recreate the producer)
    abortable,  ///< abort the transaction and go on from the last checkpoint
    fatal,      ///< the producer is unusable: fenced by another instance with the same transactional.id, or worse
  };
  kind what = kind::ok;
  std::string message;
  [[nodiscard]] bool ok() const noexcept { return what == kind::ok; }
};

/// The Kafka side of the relay: an idempotent, gap-less librdkafka producer (acks=all, murmur2_random, records never
/// timed out). Used by the event-loop thread only, except handle(), which other threads may use for metadata and
/// admin calls. Delivery reports are served by poll() on the loop's thread.
class publisher {
 public:
  using delivery_handler = std::function<void(const delivery&)>;
  /// librdkafka's error callback (from its own thread): the code and reason, for counting and reachability.
  using error_handler = std::function<void(rd_kafka_resp_err_t err, const std::string& reason)>;

  /// Throws outbox_error("config") naming the key when librdkafka refuses a setting.
  /// With a `transactional_id` the producer is transactional (sink.delivery: exactly_once): records go out only
  /// inside begin_transaction()/commit_transaction(), with sink.transaction_timeout as their delivery timeout.
  /// A `batch_size_cap` above 0 caps librdkafka's batch.size (a record larger than it still goes alone).
  publisher(const config::sink_config& sink, std::size_t max_inflight_messages, delivery_handler on_delivery,
            error_handler on_error, const std::string& transactional_id = {}, std::size_t batch_size_cap = 0);
  ~publisher();
  publisher(const publisher&) = delete;
  publisher& operator=(const publisher&) = delete;

  /// Becomes readable when librdkafka has delivery reports or errors to serve.
  [[nodiscard]] int wakeup_fd() const { return m_wakeup[0]; }

  /// Hands a record to librdkafka (which copies it), to its topic's cached handle. When refused, `why` says why and
  /// `code` is librdkafka's error.
  produce_result produce(const record_view& record, std::uint64_t event_id, std::uint32_t source,
                         std::int64_t commit_time_ms, std::string* why = nullptr, rd_kafka_resp_err_t* code = nullptr);

  /// Serves every queued delivery report and error; drains the wakeup fd.
  void poll();
  /// Waits up to `timeout` for every in-flight record; serves their reports.
  void flush(std::chrono::milliseconds timeout);
  /// Stops every callback into the owner (before it goes away); later reports are dropped.
  void detach() noexcept;
  /// Drops what is queued or in flight (their reports arrive with a purge error unless detached).
  void purge() noexcept;

  [[nodiscard]] bool transactional() const noexcept { return m_transactional; }
  /// The batch.size cap this producer was made with; 0 when librdkafka's (or sink.properties') applies.
  [[nodiscard]] std::size_t batch_size_cap() const noexcept { return m_batch_size_cap; }
  /// init_transactions(): fences older producers with the same transactional.id and aborts their open
  /// transaction. Blocking; any thread.
  tx_outcome init_transactions(std::chrono::milliseconds timeout);
  /// begin_transaction() (local, does not block).
  tx_outcome begin_transaction();
  /// commit_transaction(): flushes and commits. Blocking; any thread, but no produce() may run meanwhile.
  tx_outcome commit_transaction(std::chrono::milliseconds timeout);
  /// abort_transaction(): drops what the open transaction holds. Blocking; any thread.
  tx_outcome abort_transaction(std::chrono::milliseconds timeout);

  /// Asks the cluster for metadata; returns the broker list or throws a retryable outbox_error.
  std::vector<std::string> describe_cluster(std::chrono::milliseconds timeout);
  /// Whether librdkafka raised a fatal error (idempotence or gap-less guarantee broken), and which.
  [[nodiscard]] std::optional<std::string> fatal_error() const;

  [[nodiscard]] std::size_t inflight_messages() const { return m_inflight_messages; }
  /// Records from the oldest one not yet reported to the newest: the bookkeeping one record stuck on a sick partition
  /// makes grow while the others flow (the relay stops reading when it grows too large).
  [[nodiscard]] std::size_t tracked_records() const { return m_ring.size(); }
  [[nodiscard]] std::uint64_t inflight_bytes() const { return m_inflight_bytes; }
  /// The librdkafka handle, for metadata and admin calls (thread-safe in librdkafka).
  [[nodiscard]] rd_kafka_t* handle() const noexcept { return m_producer; }

 private:
  struct inflight_entry {
    std::uint64_t event_id;
    std::int64_t commit_time_ms;
    std::uint32_t bytes;
    std::uint32_t source;
    bool done;
  };
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };

  rd_kafka_topic_t* topic_handle(std::string_view topic);
  static void on_delivery_report(rd_kafka_t* rk, const rd_kafka_message_t* message, void* opaque);
  static void on_error_cb(rd_kafka_t* rk, int err, const char* reason, void* opaque);

  rd_kafka_t* m_producer = nullptr;
  int m_wakeup[2] = {-1, -1};
  delivery_handler m_on_delivery;
  error_handler m_on_error;
  std::unordered_map<std::string, rd_kafka_topic_t*, string_hash, std::equal_to<>> m_topics;
  std::deque<inflight_entry> m_ring;  ///< per produced record, from the oldest not yet reported
  std::uint64_t m_ring_base = 0;      ///< sequence number of m_ring.front()
  std::uint64_t m_next_seq = 0;
  std::size_t m_inflight_messages = 0;
  std::uint64_t m_inflight_bytes = 0;
  bool m_detached = false;
  bool m_transactional = false;
  std::size_t m_batch_size_cap = 0;
};

}  // namespace outbox::relay
