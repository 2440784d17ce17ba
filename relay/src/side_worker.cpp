#include "side_worker.hpp"

namespace outbox::relay {

side_worker::side_worker(std::string name, conn_params params, std::chrono::milliseconds connect_timeout)
    : m_name(std::move(name)), m_connect_timeout(connect_timeout), m_session(std::move(params), m_name) {
  m_thread = std::thread([this] { run(); });
}

side_worker::~side_worker() { stop(); }

void side_worker::post(job j, error_handler on_error) {
  {
    const std::lock_guard lock(m_mutex);
    if (m_stopping) return;
    m_jobs.emplace_back(std::move(j), std::move(on_error));
  }
  m_wake.notify_one();
}

std::size_t side_worker::pending() const {
  const std::lock_guard lock(m_mutex);
  return m_jobs.size() + (m_running_job ? 1 : 0);
}

void side_worker::stop() noexcept {
  {
    const std::lock_guard lock(m_mutex);
    if (m_stopping && !m_thread.joinable()) return;
    m_stopping = true;
    m_jobs.clear();
  }
  m_session.abandon();
  m_wake.notify_all();
  if (m_thread.joinable()) m_thread.join();
}

void side_worker::run() {
  while (true) {
    std::pair<job, error_handler> j;
    {
      std::unique_lock lock(m_mutex);
      m_wake.wait(lock, [this] { return m_stopping || !m_jobs.empty(); });
      if (m_stopping) return;
      j = std::move(m_jobs.front());
      m_jobs.pop_front();
      m_running_job = true;
    }
    try {
      if (!m_session.connected()) m_session.connect(m_connect_timeout);
      j.first(m_session);
    } catch (const outbox_error& e) {
      m_session.close();  // reopened for the next job
      if (j.second) j.second(e);
    } catch (const std::exception& e) {
      m_session.close();
      if (j.second) j.second(outbox_error("source", std::string(m_name) + ": " + e.what(), retry_class::retryable));
    }
    const std::lock_guard lock(m_mutex);
    m_running_job = false;
  }
}

}  // namespace outbox::relay
