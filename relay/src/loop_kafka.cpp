// The Kafka side of the loop: deliveries, reachability, producer restarts, status updates.
#include "relay_loop.hpp"

namespace outbox::relay {

void relay::loop::watch_kafka(std::uint64_t generation) {
  m_kafka_wakeup->async_wait(asio::posix::stream_descriptor::wait_read, [this, generation](const std::error_code& ec) {
    if (ec || generation != m_publisher_generation) return;
    m_publisher->poll();
    after_deliveries();
    if (!m_finished && generation == m_publisher_generation) watch_kafka(generation);
  });
}

void relay::loop::set_kafka_up(bool up, const std::string& why) {
  if (up == m_kafka_up.load()) return;
  m_kafka_up = up;
  m_metrics.kafka_up.set(up ? 1 : 0);
  if (up) {
    log::info("kafka", "brokers reachable again", {{"side", "kafka"}, {"reason", why}});
  } else {
    log::warn("kafka", "Kafka brokers unreachable; records are held and retried", {{"side", "kafka"}, {"reason", why}});
  }
}

void relay::loop::on_kafka_error(rd_kafka_resp_err_t err, const std::string& reason) {
  m_metrics.publish_error(error_reason(err));
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    m_kafka_down_at = clock::now();
    set_kafka_up(false, reason);
    return;
  }
  if (err == RD_KAFKA_RESP_ERR__FATAL) {
    producer_failed(m_publisher->fatal_error().value_or(reason));
    return;
  }
  log::debug("kafka", "librdkafka error", {{"side", "kafka"}, {"error", rd_kafka_err2str(err)}, {"reason", reason}});
}

void relay::loop::on_delivery(const delivery& d) {
  if (d.source == k_checkpoint_source) {
    if (!d.ok() && !purged(d.err)) {
      m_metrics.publish_error("delivery");
      restart_pipeline("Kafka did not take the checkpoint record for " + m_config.sink.checkpoint_topic + ": " +
                       rd_kafka_err2str(d.err));
    }
    return;
  }
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
  m_metrics.commit_to_ack.observe(static_cast<double>(std::max<std::int64_t>(0, now_ms() - d.commit_time_ms)) / 1000.0);
  if (eos()) {
    // Deleted only once the transaction commits: until then a restart may send the row again.
    if (d.source < m_config.source.tables.size() && m_config.source.tables[d.source].delete_after_publish) {
      m_ktx.acked_rows.push_back(d.event_id);
    }
  } else {
    m_rows.acked(d.event_id);
  }
}

void relay::loop::on_delivery_failed(const delivery& d, bool backfill) {
  const std::string what = "Kafka did not take the record for topic " + std::string(d.topic) + " key \"" +
                           std::string(d.key.substr(0, 100)) + "\": " + rd_kafka_err2str(d.err);
  m_metrics.publish_error("delivery");
  if (m_topic_check) return;  // a restart follows the check in progress; this record is sent again after it
  if (d.err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC || d.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
    // librdkafka says so transiently while brokers restart (librdkafka #3513, #3009): ask the cluster whether the
    // topic is really missing before calling the record refused. Reading waits for the answer.
    m_topic_check = topic_check{std::string(d.topic), d.event_id, backfill, d.err, what};
    m_probe->describe(m_topic_check->topic);
    return;
  }
  if (batch_too_large(d)) {
    restart_pipeline(what +
                     " (a batch of records that each fit the topic's max.message.bytes; sent again in "
                     "batches of at most " +
                     std::to_string(m_batch_size_cap) + " bytes)");
    return;
  }
  refuse_or_retry(kafka::record_refused(d.err), d.event_id, backfill, d.err, what);
}

bool relay::loop::batch_too_large(const delivery& d) {
  // The broker checks max.message.bytes against a whole batch. A record that fits alone was refused only for the
  // company it was batched with: it is not an invalid record, and the next producer batches below the limit.
  if (d.err != RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) return false;
  const auto it = m_topic_limits.find(std::string(d.topic));
  if (it == m_topic_limits.end() || !it->second.max_message_bytes) return false;
  const std::size_t limit = *it->second.max_message_bytes;
  if (limit <= k_record_overhead || d.bytes + k_record_overhead > limit) return false;
  const std::size_t cap = limit - k_record_overhead;
  const std::size_t used = m_publisher->batch_size_cap();
  if (used != 0 && used <= cap) return false;  // batches were already that small: the record itself is refused
  if (m_batch_size_cap == 0 || m_batch_size_cap > cap) {
    m_batch_size_cap = cap;
    log::warn(k_component,
              "a topic refused a batch of records that each fit its max.message.bytes; the producer "
              "batches at most batch.size bytes from now on",
              {{"side", "kafka"}, {"topic", std::string(d.topic)}, {"max_message_bytes", limit}, {"batch_size", cap}});
  }
  return true;
}

void relay::loop::refuse_or_retry(bool refused, std::uint64_t event_id, bool backfill, rd_kafka_resp_err_t err,
                                  const std::string& what) {
  if (refused && m_config.sink.on_invalid_record == config::invalid_record_policy::halt) {
    m_metrics.invalid_record(error_reason(err), "halted");
    halt(what +
         "; the relay stopped before it and confirmed nothing past it. Fix the topic (or its "
         "max.message.bytes, ACLs), or set sink.on_invalid_record: dead_letter");
    return;
  }
  if (refused && !backfill) {
    if (const auto where = m_tracker.locate(event_id)) {
      m_poison.insert(*where);
      log::warn(k_component, "Kafka refused a record; it is dead-lettered when the stream reaches it again",
                {{"side", "kafka"}, {"error", what}});
    }
  }
  restart_pipeline(what);
}

void relay::loop::on_topic_checked(const topic_limits& limits) {
  const topic_check c = std::move(*m_topic_check);
  m_topic_check.reset();
  const bool missing = !limits.exists && limits.error.empty();
  if (!missing) {
    log::warn("kafka", "Kafka called a topic unknown that the cluster has (or could not describe); sending again",
              {{"side", "kafka"}, {"topic", c.topic}, {"error", limits.error}});
  }
  refuse_or_retry(missing, c.event_id, c.backfill, c.err, c.what);
}

void relay::loop::producer_failed(const std::string& what) {
  const bool fenced = what.find("FENCED") != std::string::npos || what.find("fenced") != std::string::npos;
  if (!fenced) {
    restart_pipeline("the Kafka producer failed: " + what);
    return;
  }
  const std::string tid = transactional_id_of(m_config);
  if (!m_config.source.leader_lock) {
    fail(error{"kafka.fatal",
               "the Kafka producer was fenced: " + what + ": another relay with transactional.id " + tid +
                   " leads (with source.leader_lock off this relay cannot tell whether it still does, so it stops)",
               retry_class::fatal});
    return;
  }
  restart_pipeline("the Kafka producer was fenced (" + what + "): another relay took transactional.id " + tid +
                   ", or the coordinator aborted a transaction open longer than sink.transaction_timeout; "
                   "the slot's leader lock decides who goes on from the checkpoint");
}

void relay::loop::restart_pipeline(const std::string& why) {
  if (m_restarting || m_halted || m_stopping) {
    if (m_stopping && !m_finished) {
      log::warn(k_component, "stopping now: events still in flight will be published again after restart",
                {{"side", "kafka"}, {"error", why}, {"inflight", m_publisher->inflight_messages()}});
      finish();
    }
    return;
  }
  m_restarting = true;
  m_topic_check.reset();
  log::warn(k_component, "restarting the Kafka producer and the stream from the confirmed LSN",
            {{"side", "kafka"}, {"error", why}, {"confirmed_lsn", format_lsn(confirmable())}});
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
    if (m_tx_thread.joinable()) m_tx_thread.join();
    // A Kafka transaction still open goes with the producer: the coordinator aborts it.
    if (m_ktx.open) m_metrics.kafka_transaction("failed");
    forget_kafka_tx();
    destroy_publisher();
    create_publisher();
    m_topic_limits.clear();
    m_last_limits = nullptr;
    m_limits_requested.clear();
    reset_stream_state();
    m_restarting = false;
    m_metrics.reconnects.inc();
    schedule_reconnect("reconnecting after a producer restart", "");
  });
}

void relay::loop::after_deliveries() {
  if (m_finished) return;
  if (m_commit_waiting && m_publisher->inflight_messages() == 0) launch_commit();
  m_metrics.inflight_messages.set(static_cast<double>(m_publisher->inflight_messages()));
  m_metrics.inflight_bytes.set(static_cast<double>(m_publisher->inflight_bytes()));
  if (m_stream && confirmable() != m_last_confirmed && clock::now() - m_last_status_sent >= k_min_confirm_gap) {
    send_status(false);
  }
  flush_deletes(false);
  if (m_phase == phase::backfilling) check_backfill_done();
  resume();
  if (m_halted) close_halted_stream();
  maybe_finish_shutdown();
}

void relay::loop::send_status(bool reply_requested) {
  if (!m_stream || (m_phase != phase::streaming && m_phase != phase::halted)) return;
  const lsn_t flushed = confirmable();
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

}  // namespace outbox::relay
