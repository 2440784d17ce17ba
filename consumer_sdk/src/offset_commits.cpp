#include "offset_commits.hpp"

#include "consumer_metrics.hpp"
#include "outbox/base/log.hpp"

#include <algorithm>

namespace outbox::consumer::detail {

offset_commits::offset_commits(offset_tracker& offsets, consumer_metrics& metrics, sender send)
    : m_offsets(offsets), m_metrics(metrics), m_send(std::move(send)) {}

void offset_commits::attach(rd_kafka_t* consumer) {
  m_consumer = consumer;
  m_queue.reset(rd_kafka_queue_new(consumer));
  m_send = [this](const std::vector<commit_position>& positions) {
    kafka::partition_list_ptr list = kafka::make_partition_list(static_cast<int>(positions.size()));
    for (const auto& p : positions) {
      rd_kafka_topic_partition_list_add(list.get(), p.where.topic.c_str(), p.where.partition)->offset = p.offset;
    }
    return rd_kafka_commit_queue(
               m_consumer, list.get(), m_queue.get(),
               [](rd_kafka_t*, rd_kafka_resp_err_t, rd_kafka_topic_partition_list_t*, void*) {},
               nullptr) == RD_KAFKA_RESP_ERR_NO_ERROR;
  };
}

void offset_commits::send(const std::vector<topic_partition>* only) {
  const auto positions = m_offsets.pending(only);
  if (positions.empty()) return;
  for (const auto& p : positions) m_offsets.commit_sent(p);
  if (m_send(positions)) {
    ++m_outstanding;
    return;
  }
  for (const auto& p : positions) m_offsets.commit_result(p, false);
  log::warn("consumer", "offset commit not sent; will try again");
}

void offset_commits::answered(const std::vector<std::pair<commit_position, bool>>& results) {
  if (m_outstanding > 0) --m_outstanding;
  for (const auto& [p, ok] : results) {
    m_offsets.commit_result(p, ok);
    m_metrics.commit(ok);
    if (!ok) {
      log::warn("consumer", "offset commit failed; will try again",
                {{"topic", p.where.topic}, {"partition", p.where.partition}, {"offset", p.offset}});
    }
  }
}

void offset_commits::drain(int timeout_ms) {
  while (m_outstanding > 0 && m_queue) {
    kafka::event_ptr ev(rd_kafka_queue_poll(m_queue.get(), timeout_ms));
    if (!ev) return;
    timeout_ms = 0;
    if (rd_kafka_event_type(ev.get()) != RD_KAFKA_EVENT_OFFSET_COMMIT) continue;
    const rd_kafka_resp_err_t err = rd_kafka_event_error(ev.get());
    std::vector<std::pair<commit_position, bool>> results;
    if (const auto* parts = rd_kafka_event_topic_partition_list(ev.get()); parts != nullptr) {
      for (int i = 0; i < parts->cnt; ++i) {
        const auto& p = parts->elems[i];
        results.push_back({{{p.topic, p.partition}, p.offset},
                           err == RD_KAFKA_RESP_ERR_NO_ERROR && p.err == RD_KAFKA_RESP_ERR_NO_ERROR});
      }
    }
    answered(results);
  }
}

void offset_commits::send_and_wait(const std::vector<topic_partition>* only,
                                   std::chrono::steady_clock::time_point deadline) {
  send(only);
  while (m_outstanding > 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      log::warn("consumer",
                "offset commit unanswered before the deadline; the records will be delivered again and "
                "skipped as duplicates");
      return;
    }
    drain(static_cast<int>(std::min<std::chrono::milliseconds::rep>(left.count(), 100)));
  }
}

}  // namespace outbox::consumer::detail
