#pragma once

#include "outbox/base/record_format.hpp"
#include "outbox/consumer/record.hpp"
#include "outbox/kafka/handles.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace outbox::consumer::detail {

/// How Kafka answered one copy.
enum class send_status {
  sent,         ///< acknowledged by every in-sync replica
  retry_later,  ///< Kafka is down, busy or answered in doubt: the same copy may go through later
  refused,      ///< refused for good (too large, not authorized, invalid): sending it again cannot help
};

/// The answer and, unless sent, Kafka's reason naming the topic.
struct send_result {
  send_status status = send_status::sent;
  std::string error;
};

/// Where the retry flow sends copies: the side producer, or a test's recorder.
class copy_sink {
 public:
  virtual ~copy_sink() = default;
  /// Sends `r` (key, value, headers without the SDK's retry bookkeeping) plus `extra` to `topic`; waits for the answer.
  virtual send_result send(const std::string& topic, const record& r, const record_format::header_pairs& extra) = 0;
};

/// Produces the SDK's own records (retry-tier copies, dead letters) and waits for each acknowledgement: the
/// original offset is committed only after Kafka has the copy. Idempotent, acks=all, never creates topics
/// (start-up does, with the partitions and retention they need).
class side_producer final : public copy_sink {
 public:
  /// Uses `properties` except the consumer-only ones (security settings reach it this way).
  side_producer(const std::string& brokers, const std::vector<std::pair<std::string, std::string>>& properties);
  ~side_producer() override;
  side_producer(const side_producer&) = delete;
  side_producer& operator=(const side_producer&) = delete;

  /// Sends `r`'s key, value and headers (without the SDK's retry bookkeeping; null headers stay null) plus
  /// `extra` to `topic`, and waits for Kafka's definitive answer (bounded by message.timeout.ms, 30 s). Never
  /// gives up before librdkafka does: a copy abandoned while still queued could land later, and be sent twice.
  send_result send(const std::string& topic, const record& r, const record_format::header_pairs& extra) override;

  /// The producer's handle, for admin requests at start-up.
  [[nodiscard]] rd_kafka_t* handle() const noexcept { return m_kafka.get(); }

 private:
  kafka::client_ptr m_kafka;
  std::vector<std::unique_ptr<rd_kafka_resp_err_t>> m_abandoned;
};

}  // namespace outbox::consumer::detail
