// A record on its way to Kafka: topic limits, backpressure, invalid records and dead letters.
#include "relay_loop.hpp"

namespace outbox::relay {

void relay::loop::publish(const record_view& rec, std::uint32_t source, std::string_view row_id, std::int64_t commit_ms,
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

bool relay::loop::try_pending() {
  if (!m_pending) return true;
  pending_record& p = *m_pending;
  // Records of one topic come in runs: the last topic's limits are looked up without a hash or a string.
  if (m_last_limits == nullptr || p.view.topic != m_last_limits_topic) {
    const std::string topic(p.view.topic);
    const auto it = m_topic_limits.find(topic);
    if (it == m_topic_limits.end()) {
      if (m_limits_requested.insert(topic).second) m_probe->describe(topic);
      return false;
    }
    m_last_limits = &it->second;  // unordered_map elements stay where they are until erased
    m_last_limits_topic = topic;
  }
  const topic_limits& limits = *m_last_limits;
  if (!p.owned && limits.max_message_bytes && p.view.byte_size() + k_record_overhead > *limits.max_message_bytes) {
    const invalid_record why{"too_large", m_config.source.tables.empty() ? "" : "payload",
                             "the record for topic " + std::string(p.view.topic) + " (key \"" +
                                 std::string(p.view.key.substr(0, 100)) + "\") has " +
                                 std::to_string(p.view.byte_size()) + " bytes, more than the topic's " +
                                 "max.message.bytes (" + std::to_string(*limits.max_message_bytes) + ")"};
    const record_view view = p.view;
    const std::string table = source_name(p.source);
    const dead_letter_origin from{table, m_tx ? m_tx->commit_lsn : m_start_lsn, m_tx ? m_tx->xid : 0};
    m_pending.reset();
    on_invalid(why, [&] { return dead_letter_of_record(m_config.sink.dead_letter_topic, view, why, from); });
    return !m_pending.has_value();
  }
  if (eos() && !ensure_kafka_tx()) return false;
  if (!p.event_id) p.event_id = p.backfill ? (k_backfill_bit | ++m_backfill_ids) : m_tracker.add_event();
  std::string why;
  rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
  const produce_result r = m_publisher->produce(p.view, *p.event_id, p.source, p.commit_ms, &why, &code);
  if (r == produce_result::queue_full) {
    m_metrics.publish_error("queue_full");
    return false;  // retried after deliveries free room
  }
  if (r == produce_result::producer_failed) {
    m_metrics.publish_error("producer_failed");
    // The record stays pending: the restart drops it and reads it again from the confirmed LSN or the checkpoint.
    producer_failed(m_publisher->fatal_error().value_or(why));
    return false;
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
  if (eos()) count_in_kafka_tx(p.view.byte_size());
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

void relay::loop::on_topic_limits(const std::string& topic, const topic_limits& limits) {
  m_limits_requested.erase(topic);
  if (m_topic_check && m_topic_check->topic == topic) {
    on_topic_checked(limits);
    return;
  }
  if (!limits.error.empty()) {
    log::warn("kafka",
              "could not read the topic's max.message.bytes; records are checked against the producer's "
              "limit only",
              {{"topic", topic}, {"error", limits.error}});
  }
  m_topic_limits[topic] = limits;
  resume();
}

void relay::loop::resume() {
  if (m_pending && !try_pending()) return;
  if (m_phase == phase::streaming && !reading_paused()) {
    asio::post(m_io, [this] { pump(); });
  } else if (m_phase == phase::backfilling && !over_limits()) {
    asio::post(m_io, [this] { process_backfill(); });
  }
}

}  // namespace outbox::relay
