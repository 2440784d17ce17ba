#include "kafka_probe.hpp"

#include "outbox/base/error.hpp"
#include "outbox/kafka/admin.hpp"

#include <cstdlib>

namespace outbox::relay {
namespace {

constexpr std::chrono::milliseconds k_request_timeout{5000};
constexpr int k_failures_before_down = 2;

}  // namespace

kafka_probe::kafka_probe(rd_kafka_t* rk, std::chrono::milliseconds interval, state_handler on_state,
                         topic_handler on_topic)
    : m_rk(rk), m_interval(interval), m_on_state(std::move(on_state)), m_on_topic(std::move(on_topic)) {
  m_thread = std::thread([this] { run(); });
}

kafka_probe::~kafka_probe() { stop(); }

void kafka_probe::describe(const std::string& topic) {
  {
    const std::lock_guard lock(m_mutex);
    m_topics.push_back(topic);
  }
  m_wake.notify_one();
}

void kafka_probe::stop() noexcept {
  {
    const std::lock_guard lock(m_mutex);
    m_stopping = true;
  }
  m_wake.notify_all();
  if (m_thread.joinable()) m_thread.join();
}

void kafka_probe::run() {
  int failures = 0;
  auto next_probe = std::chrono::steady_clock::now();
  while (true) {
    std::optional<std::string> topic;
    {
      std::unique_lock lock(m_mutex);
      m_wake.wait_until(lock, next_probe, [this] { return m_stopping || !m_topics.empty(); });
      if (m_stopping) return;
      if (!m_topics.empty()) {
        topic = std::move(m_topics.front());
        m_topics.pop_front();
      }
    }
    if (topic) {
      topic_limits limits;
      try {
        const auto info = kafka::describe_topic(m_rk, *topic, k_request_timeout);
        limits.exists = info.has_value();
        if (limits.exists) {
          try {
            const auto configs = kafka::describe_topic_config(m_rk, *topic, k_request_timeout);
            if (const auto it = configs.find("max.message.bytes"); it != configs.end()) {
              limits.max_message_bytes = static_cast<std::size_t>(std::strtoull(it->second.c_str(), nullptr, 10));
            }
          } catch (const outbox_error& e) {
            limits.error = e.what();
          }
        }
      } catch (const outbox_error& e) {
        limits.error = e.what();
        limits.exists = true;  // unknown: do not call it missing
      }
      m_on_topic(*topic, limits);
      continue;
    }
    const auto sent = std::chrono::steady_clock::now();
    next_probe = sent + m_interval;
    const rd_kafka_metadata_t* md = nullptr;
    const auto err = rd_kafka_metadata(m_rk, 0, nullptr, &md, static_cast<int>(k_request_timeout.count()));
    if (md != nullptr) rd_kafka_metadata_destroy(md);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      failures = 0;
      m_on_state(true, "metadata request answered", sent);
    } else if (++failures >= k_failures_before_down) {
      m_on_state(false, std::string("metadata request failed: ") + rd_kafka_err2str(err), sent);
    }
  }
}

}  // namespace outbox::relay
