#pragma once

#include "outbox/consumer/offset_tracker.hpp"
#include "outbox/kafka/handles.hpp"

#include <chrono>
#include <functional>
#include <vector>

namespace outbox::consumer::detail {

class consumer_metrics;

/// Offset commits: sends what the tracker says is finished and records the broker's answers, so a failed
/// commit is sent again and a position is never committed past a record that is not finished.
///
///   tracker: p0 finished up to 41  -> send {p0: 42} -> outstanding 1 -> answer ok  -> committed(p0) = 42
///                                                                    -> answer err -> pending again
///
/// send() and answered() need no broker (a test passes its own sender); attach() connects them to a consumer's
/// commit queue, after which drain() reads the answers from it.
class offset_commits {
 public:
  /// Hands positions to Kafka (asynchronously); false when they could not even be sent.
  using sender = std::function<bool(const std::vector<commit_position>&)>;

  offset_commits(offset_tracker& offsets, consumer_metrics& metrics, sender send = {});

  /// Sends through `consumer`'s commit call, with the answers on a queue of its own.
  void attach(rd_kafka_t* consumer);
  /// Sends the positions that moved (of `only`, or all partitions); nothing when none moved.
  void send(const std::vector<topic_partition>* only = nullptr);
  /// The broker's answer to one sent commit: each position and whether it was committed.
  void answered(const std::vector<std::pair<commit_position, bool>>& results);
  /// Reads the answers that arrived on the attached queue, waiting up to `timeout_ms` for the first.
  void drain(int timeout_ms);
  /// send(), then drain() until every commit is answered or `deadline` passes.
  void send_and_wait(const std::vector<topic_partition>* only, std::chrono::steady_clock::time_point deadline);
  /// Commits sent and not answered yet.
  [[nodiscard]] int outstanding() const noexcept { return m_outstanding; }

 private:
  offset_tracker& m_offsets;
  consumer_metrics& m_metrics;
  sender m_send;
  rd_kafka_t* m_consumer = nullptr;
  kafka::queue_ptr m_queue;
  int m_outstanding = 0;
};

}  // namespace outbox::consumer::detail
