#include "worker_pool.hpp"

#include "outbox/base/log.hpp"

#include <algorithm>
#include <string_view>

namespace outbox::consumer::detail {
namespace {

constexpr std::string_view k_component = "consumer";

}  // namespace

std::size_t lane_of(const std::optional<std::string>& key, const topic_partition& tp, std::size_t lanes) {
  if (lanes <= 1) return 0;
  if (key) return std::hash<std::string_view>{}(*key) % lanes;
  return (std::hash<std::string_view>{}(tp.topic) ^ static_cast<std::size_t>(tp.partition)) % lanes;
}

worker_pool::worker_pool(std::size_t lanes, const engine_factory& make) {
  m_lanes.reserve(lanes);
  for (std::size_t i = 0; i < lanes; ++i) {
    auto l = std::make_unique<lane>();
    l->engine = make(i);
    m_lanes.push_back(std::move(l));
  }
  for (auto& l : m_lanes) l->thread = std::thread([this, raw = l.get()] { work(*raw); });
}

worker_pool::~worker_pool() { stop(); }

void worker_pool::assign(const topic_partition& tp, std::uint64_t generation) {
  std::lock_guard lock(m_mutex);
  m_assigned[tp] = generation;
}

void worker_pool::submit(job j) {
  lane& l = *m_lanes[lane_of(j.rec.key, j.tp, m_lanes.size())];
  {
    std::lock_guard lock(m_mutex);
    l.queue.push_back(std::move(j));
  }
  l.wake.notify_one();
}

std::vector<finished_offset> worker_pool::take_finished() {
  std::vector<finished_offset> out;
  std::lock_guard lock(m_mutex);
  out.swap(m_finished);
  return out;
}

void worker_pool::drop(const std::vector<topic_partition>& tps) {
  const auto dropped = [&](const topic_partition& tp) { return std::find(tps.begin(), tps.end(), tp) != tps.end(); };
  std::unique_lock lock(m_mutex);
  for (const auto& tp : tps) m_assigned.erase(tp);
  for (auto& l : m_lanes) {
    std::erase_if(l->queue, [&](const job& j) { return dropped(j.tp); });
    l->wake.notify_all();
  }
  m_idle.wait(lock, [&] {
    return std::none_of(m_lanes.begin(), m_lanes.end(),
                        [&](const auto& l) { return l->running && dropped(*l->running); });
  });
}

void worker_pool::stop() {
  {
    std::lock_guard lock(m_mutex);
    if (m_stopping && std::none_of(m_lanes.begin(), m_lanes.end(), [](const auto& l) { return l->thread.joinable(); }))
      return;
    m_stopping = true;
    for (auto& l : m_lanes) l->queue.clear();
  }
  for (auto& l : m_lanes) {
    l->wake.notify_all();
    if (l->thread.joinable()) l->thread.join();
  }
}

bool worker_pool::halted() const {
  std::lock_guard lock(m_mutex);
  return std::any_of(m_lanes.begin(), m_lanes.end(), [](const auto& l) { return l->halted; });
}

std::string worker_pool::halt_reason() const {
  std::lock_guard lock(m_mutex);
  for (const auto& l : m_lanes) {
    if (l->halted) return l->halt_reason;
  }
  return {};
}

std::pair<std::size_t, double> worker_pool::waiting(std::chrono::steady_clock::time_point now) const {
  std::lock_guard lock(m_mutex);
  std::size_t n = 0;
  double oldest = 0;
  for (const auto& l : m_lanes) {
    if (!l->waiting_since) continue;
    ++n;
    oldest = std::max(oldest, std::chrono::duration<double>(now - *l->waiting_since).count());
  }
  return {n, oldest};
}

std::exception_ptr worker_pool::failure() const {
  std::lock_guard lock(m_mutex);
  return m_failure;
}

bool worker_pool::wanted(const job& j) const {
  if (m_stopping) return false;
  const auto it = m_assigned.find(j.tp);
  return it != m_assigned.end() && it->second == j.generation;
}

void worker_pool::work(lane& l) {
  std::unique_lock lock(m_mutex);
  while (true) {
    l.wake.wait(lock, [&] { return m_stopping || !l.queue.empty(); });
    if (m_stopping) return;
    job j = std::move(l.queue.front());
    l.queue.pop_front();
    if (!wanted(j)) continue;
    l.running = j.tp;
    lock.unlock();
    bool finished = false;
    std::exception_ptr failed;
    try {
      finished = run(l, j);
    } catch (...) {
      failed = std::current_exception();
    }
    lock.lock();
    l.running.reset();
    l.waiting_since.reset();
    if (finished) m_finished.push_back({std::move(j.tp), j.offset, j.generation});
    m_idle.notify_all();
    if (failed) {
      if (!m_failure) m_failure = failed;
      log::error(k_component, "a worker failed; the consumer stops");
      return;
    }
  }
}

bool worker_pool::run(lane& l, job& j) {
  retry_flow& flow = *l.engine.flow;
  std::optional<pending_record> p;
  switch (j.kind) {
    case job_kind::source:
      p = flow.start(j.rec, j.tp, false);
      break;
    case job_kind::replay:
      p = flow.start(j.rec, j.tp, true);
      break;
    case job_kind::tier:
      p = flow.from_tier(j.rec, j.tp, j.tier_source, j.tier_delay);
      break;
  }
  note_halt(l);
  while (p) {
    {
      std::unique_lock lock(m_mutex);
      l.waiting_since = p->since;
      l.wake.wait_until(lock, p->due, [&] { return !wanted(j); });
      l.waiting_since.reset();
      if (!wanted(j)) {
        lock.unlock();
        flow.forget(*p);
        return false;
      }
    }
    if (flow.drive(*p)) p.reset();
    note_halt(l);
  }
  return true;
}

void worker_pool::note_halt(lane& l) {
  const retry_flow& flow = *l.engine.flow;
  std::lock_guard lock(m_mutex);
  l.halted = flow.halted();
  l.halt_reason = l.halted ? flow.halt_reason() : std::string();
}

}  // namespace outbox::consumer::detail
