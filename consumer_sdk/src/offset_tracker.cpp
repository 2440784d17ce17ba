#include "outbox/consumer/offset_tracker.hpp"

#include <algorithm>

namespace outbox::consumer {

bool partition_offsets::started(std::int64_t offset) {
  if (offset <= m_last_started || offset < 0) return false;
  m_pending.push_back({offset, false});
  m_last_started = offset;
  ++m_unfinished;
  return true;
}

bool partition_offsets::finished(std::int64_t offset) {
  const auto it = std::lower_bound(m_pending.begin(), m_pending.end(), offset,
                                   [](const entry& e, std::int64_t o) { return e.offset < o; });
  if (it == m_pending.end() || it->offset != offset || it->done) return false;
  it->done = true;
  --m_unfinished;
  while (!m_pending.empty() && m_pending.front().done) {
    m_next = m_pending.front().offset + 1;
    m_pending.pop_front();
  }
  return true;
}

void partition_offsets::rewind(std::int64_t offset) {
  while (!m_pending.empty() && m_pending.back().offset >= offset) {
    if (!m_pending.back().done) --m_unfinished;
    m_pending.pop_back();
  }
  m_last_started = std::min(m_last_started, offset - 1);
}

void offset_tracker::assign(const topic_partition& tp) { m_partitions.insert_or_assign(tp, state{}); }

void offset_tracker::revoke(const topic_partition& tp) { m_partitions.erase(tp); }

partition_offsets* offset_tracker::offsets(const topic_partition& tp) {
  const auto it = m_partitions.find(tp);
  return it == m_partitions.end() ? nullptr : &it->second.offsets;
}

bool offset_tracker::started(const topic_partition& tp, std::int64_t offset) {
  const auto it = m_partitions.find(tp);
  return it != m_partitions.end() && it->second.offsets.started(offset);
}

bool offset_tracker::finished(const topic_partition& tp, std::int64_t offset) {
  const auto it = m_partitions.find(tp);
  return it != m_partitions.end() && it->second.offsets.finished(offset);
}

std::vector<commit_position> offset_tracker::pending(const std::vector<topic_partition>* only) const {
  std::vector<commit_position> out;
  for (const auto& [tp, s] : m_partitions) {
    const std::int64_t next = s.offsets.committable();
    if (next < 0 || next <= s.sent) continue;
    if (only != nullptr && std::find(only->begin(), only->end(), tp) == only->end()) continue;
    out.push_back({tp, next});
  }
  return out;
}

void offset_tracker::commit_sent(const commit_position& p) {
  const auto it = m_partitions.find(p.where);
  if (it != m_partitions.end()) it->second.sent = std::max(it->second.sent, p.offset);
}

void offset_tracker::commit_result(const commit_position& p, bool ok) {
  const auto it = m_partitions.find(p.where);
  if (it == m_partitions.end()) return;
  state& s = it->second;
  if (ok) {
    s.committed = std::max(s.committed, p.offset);
  } else if (s.sent == p.offset) {
    s.sent = s.committed;  // send again on the next commit
  }
}

std::int64_t offset_tracker::committed(const topic_partition& tp) const {
  const auto it = m_partitions.find(tp);
  return it == m_partitions.end() ? -1 : it->second.committed;
}

}  // namespace outbox::consumer
