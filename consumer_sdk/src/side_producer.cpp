#include "side_producer.hpp"

#include "outbox/kafka/client.hpp"
#include "outbox/kafka/errors.hpp"
#include "outbox/kafka/produce.hpp"

#include <string_view>

namespace outbox::consumer::detail {
namespace {

using clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds k_delivery_timeout{30000};

}  // namespace

side_producer::side_producer(const std::string& brokers,
                             const std::vector<std::pair<std::string, std::string>>& properties) {
  kafka::conf_builder conf;
  conf.set("bootstrap.servers", brokers, "consumer.brokers ");
  conf.set_all(properties, "consumer.properties.",
               [](std::string_view key) { return !kafka::consumer_only_property(key) && key != "client.id"; });
  conf.set("client.id", "outbox-consumer-retry")
      .set("enable.idempotence", "true")
      .set("acks", "all")
      .set("linger.ms", "0")
      .set("allow.auto.create.topics", "false")
      // send() waits for the definitive delivery report, so this bounds how long one copy holds the loop.
      .set("message.timeout.ms", std::to_string(k_delivery_timeout.count()));
  rd_kafka_conf_set_dr_msg_cb(conf.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->_private != nullptr) *static_cast<rd_kafka_resp_err_t*>(m->_private) = m->err;
  });
  conf.log_lines();
  m_kafka = conf.create(RD_KAFKA_PRODUCER, "the retry/dead-letter producer");
}

side_producer::~side_producer() {
  if (m_kafka) rd_kafka_flush(m_kafka.get(), 5000);
}

send_result side_producer::send(const std::string& topic, const record& r, const record_format::header_pairs& extra) {
  kafka::headers_ptr headers(rd_kafka_headers_new(r.headers.size() + extra.size()));
  for (std::size_t i = 0; i < r.headers.size(); ++i) {
    const auto& [name, value] = r.headers[i];
    if (record_format::is_retry_header(name)) continue;
    kafka::add_header(headers.get(), name, r.header_is_null(i) ? std::nullopt : std::optional<std::string_view>(value));
  }
  for (const auto& [name, value] : extra) kafka::add_header(headers.get(), name, value);

  auto result = std::make_unique<rd_kafka_resp_err_t>(RD_KAFKA_RESP_ERR__IN_PROGRESS);
  kafka::outgoing out;
  out.topic = topic;
  if (r.key) out.key = *r.key;
  if (r.value) out.value = *r.value;
  out.headers = headers.get();
  out.opaque = result.get();
  if (const kafka::error_ptr e = kafka::produce(m_kafka.get(), out)) {
    const auto code = rd_kafka_error_code(e.get());
    return {kafka::record_refused(code) ? send_status::refused : send_status::retry_later,
            "cannot produce to " + topic + ": " + rd_kafka_error_string(e.get())};
  }
  static_cast<void>(headers.release());  // librdkafka owns them now
  const auto deadline = clock::now() + k_delivery_timeout + std::chrono::seconds(5);
  while (*result == RD_KAFKA_RESP_ERR__IN_PROGRESS && clock::now() < deadline) rd_kafka_poll(m_kafka.get(), 50);
  if (*result == RD_KAFKA_RESP_ERR__IN_PROGRESS) {
    // Still queued: the delivery report will write into `result` later, so it must outlive this call.
    m_abandoned.push_back(std::move(result));
    return {send_status::retry_later, "no delivery report from Kafka for " + topic + " in time"};
  }
  if (*result == RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  const std::string why = topic + ": " + rd_kafka_err2str(*result);
  if (kafka::record_refused(*result) || kafka::classify(*result) == retry_class::fatal) {
    return {send_status::refused, why};
  }
  return {send_status::retry_later, why};
}

}  // namespace outbox::consumer::detail
