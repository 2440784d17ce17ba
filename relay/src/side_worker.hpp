#pragma once

#include "outbox/base/error.hpp"
#include "outbox/relay/pg_session.hpp"

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace outbox::relay {

/// A thread with its own PostgreSQL session that runs jobs one at a time, off the event loop, so that a slow query,
/// a lock wait or a blackholed server never freezes the loop. When the session cannot connect or a job throws, the
/// job's `on_error` runs (on the worker) and the session is closed; the next job reconnects. Jobs report back by
/// posting to the loop themselves.
class side_worker {
 public:
  using job = std::function<void(pg_session&)>;
  using error_handler = std::function<void(const outbox_error&)>;

  side_worker(std::string name, conn_params params, std::chrono::milliseconds connect_timeout);
  ~side_worker();
  side_worker(const side_worker&) = delete;
  side_worker& operator=(const side_worker&) = delete;

  /// Queues a job; it runs after the ones before it.
  void post(job j, error_handler on_error);
  /// Jobs queued or running.
  [[nodiscard]] std::size_t pending() const;
  /// Abandons the running job (its wait fails at once), drops the queued ones and joins the thread.
  void stop() noexcept;

 private:
  void run();

  std::string m_name;
  std::chrono::milliseconds m_connect_timeout;
  pg_session m_session;
  mutable std::mutex m_mutex;
  std::condition_variable m_wake;
  std::deque<std::pair<job, error_handler>> m_jobs;
  bool m_running_job = false;
  bool m_stopping = false;
  std::thread m_thread;
};

}  // namespace outbox::relay
