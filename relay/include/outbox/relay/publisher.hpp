#pragma once

#include "outbox/base/error.hpp"
#include "outbox/relay/router.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct rd_kafka_s;

namespace outbox::relay {

/// The outcome of one record, reported once by librdkafka.
struct delivery {
  std::uint64_t event_id = 0;
  std::size_t bytes = 0;
  std::uint32_t route = 0;          ///< what the caller passed to produce(): which source the record came from
  std::int64_t commit_time_ms = 0;  ///< as passed to produce()
  std::string_view topic;           ///< valid during the callback only
  bool ok = true;
  error failure;  ///< when !ok: names topic, key and the broker's error
};

/// The Kafka side of the relay: an idempotent librdkafka producer (acks=all, murmur2_random).
/// Used by the event-loop thread only; delivery reports are served by `poll()` on that thread.
class publisher {
 public:
  using delivery_handler = std::function<void(const delivery&)>;
  using state_handler = std::function<void(bool brokers_up, const std::string& reason)>;

  publisher(const std::string& brokers, const std::vector<std::pair<std::string, std::string>>& properties,
            std::size_t max_inflight_messages, delivery_handler on_delivery, state_handler on_state);
  ~publisher();
  publisher(const publisher&) = delete;
  publisher& operator=(const publisher&) = delete;

  /// Becomes readable when librdkafka has delivery reports or errors to serve.
  [[nodiscard]] int wakeup_fd() const { return m_wakeup[0]; }

  /// Hands a record to librdkafka (copying it). Throws outbox_error when librdkafka refuses it.
  void produce(const kafka_record& record, std::uint64_t event_id, std::uint32_t route = 0,
               std::int64_t commit_time_ms = 0);

  /// Serves every queued delivery report and error; drains the wakeup fd.
  void poll();

  /// Waits up to `timeout` for every in-flight record; serves their reports.
  void flush(std::chrono::milliseconds timeout);

  /// Asks the cluster for metadata; returns the broker list or throws a retryable outbox_error.
  std::vector<std::string> describe_cluster(std::chrono::milliseconds timeout);

  [[nodiscard]] std::size_t inflight_messages() const { return m_inflight_messages; }
  [[nodiscard]] std::uint64_t inflight_bytes() const { return m_inflight_bytes; }

 private:
  struct tag;
  static void on_delivery_report(rd_kafka_s* rk, const void* message, void* opaque);
  static void on_error(rd_kafka_s* rk, int err, const char* reason, void* opaque);

  rd_kafka_s* m_producer = nullptr;
  int m_wakeup[2] = {-1, -1};
  delivery_handler m_on_delivery;
  state_handler m_on_state;
  std::size_t m_inflight_messages = 0;
  std::uint64_t m_inflight_bytes = 0;
  bool m_brokers_down = false;
};

}  // namespace outbox::relay
