#pragma once

#include "attempt.hpp"
#include "retry_flow.hpp"
#include "outbox/consumer/offset_tracker.hpp"
#include "outbox/consumer/record.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace outbox::consumer::detail {

/// What one lane runs records with: its own attempt runner (with the inbox, its own database connection) and its
/// own retry flow; the dedupe store, key holds, breaker, metrics and side producer behind them are shared.
struct lane_engine {
  std::unique_ptr<attempt_runner> attempts;
  std::unique_ptr<retry_flow> flow;
};

/// Where a record handed to a lane was read from.
enum class job_kind { source, replay, tier };

/// A record handed to a lane by the polling thread, already registered as started in its partition.
struct job {
  record rec;
  topic_partition tp;  ///< the partition it was read from
  std::int64_t offset = 0;
  std::uint64_t generation = 0;  ///< the assignment of `tp` it was read under
  job_kind kind = job_kind::source;
  std::string tier_source;  ///< tier: the source topic of the tier
  std::chrono::milliseconds tier_delay{0};
};

/// A record a lane finished (done, duplicate, parked in a tier or dead-lettered): its offset may be marked
/// finished while `generation` is still its partition's assignment.
struct finished_offset {
  topic_partition tp;
  std::int64_t offset = 0;
  std::uint64_t generation = 0;
};

/// The lane of a record among `lanes`: a hash of its key, so that the records of a key (and their retry copies)
/// run in one lane, in order; a keyless record by its partition, so that those keep their partition's order.
std::size_t lane_of(const std::optional<std::string>& key, const topic_partition& tp, std::size_t lanes);

/// consumer.workers: one thread per lane, each running the records handed to it in order, the whole retry flow of
/// one record before the next (an in-process retry's delay or a dependency's backoff holds only its lane). The
/// polling thread submits, takes finished offsets back, and on revoke or stop has the lanes let go.
///
///   poll ─submit(job)─▶ lane[hash(key) % n] ─ start / from_tier ─ drive until finished ─▶ finished offsets
///                                                                  │ revoked / stopping: forget (claim given up)
///   poll ◀─take_finished()─ (marks offsets finished; commits below the oldest unfinished record)
class worker_pool {
 public:
  using engine_factory = std::function<lane_engine(std::size_t lane)>;

  /// Makes `lanes` engines with `make` (on this thread; it may throw) and starts their threads.
  worker_pool(std::size_t lanes, const engine_factory& make);
  /// Stops the lanes (see stop()).
  ~worker_pool();
  worker_pool(const worker_pool&) = delete;
  worker_pool& operator=(const worker_pool&) = delete;

  /// `tp` is assigned under `generation`: jobs read under it may run.
  void assign(const topic_partition& tp, std::uint64_t generation);
  /// Queues `j` on its lane.
  void submit(job j);
  /// The offsets finished since the last call.
  [[nodiscard]] std::vector<finished_offset> take_finished();
  /// Work on `tps` stops: their queued records are dropped, a record of theirs waiting in a lane is forgotten
  /// (its claim given up), and this returns once no lane runs a step of one of them any more (a handler already
  /// running finishes first). What finished before is still in take_finished().
  void drop(const std::vector<topic_partition>& tps);
  /// Every lane finishes the step it runs, forgets what waits, and ends; queued records are dropped.
  void stop();

  /// True while a lane is halted (the DLQ breaker, or Kafka refusing a dead letter), and why.
  [[nodiscard]] bool halted() const;
  [[nodiscard]] std::string halt_reason() const;
  /// Records waiting in a lane for a delay or a dependency, and how long the oldest has waited.
  [[nodiscard]] std::pair<std::size_t, double> waiting(std::chrono::steady_clock::time_point now) const;
  /// What a lane threw, if one did (the lane has ended); the polling thread rethrows it.
  [[nodiscard]] std::exception_ptr failure() const;

 private:
  struct lane {
    lane_engine engine;
    std::deque<job> queue;
    std::condition_variable wake;
    std::optional<topic_partition> running;  ///< the partition of the record it runs now
    std::optional<std::chrono::steady_clock::time_point> waiting_since;
    bool halted = false;
    std::string halt_reason;
    std::thread thread;
  };

  void work(lane& l);
  /// Runs `j` to its end; false when it was dropped (revoked or stopping) before it finished.
  bool run(lane& l, job& j);
  void note_halt(lane& l);
  [[nodiscard]] bool wanted(const job& j) const;  // under m_mutex

  mutable std::mutex m_mutex;  // everything below
  std::condition_variable m_idle;
  std::vector<std::unique_ptr<lane>> m_lanes;
  std::map<topic_partition, std::uint64_t> m_assigned;
  std::vector<finished_offset> m_finished;
  std::exception_ptr m_failure;
  bool m_stopping = false;
};

}  // namespace outbox::consumer::detail
