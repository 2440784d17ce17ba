#include "outbox/relay/lsn_tracker.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace outbox::relay {

void lsn_tracker::begin(lsn_t final_lsn) {
  if (m_open) throw std::logic_error("lsn_tracker: Begin at " + format_lsn(final_lsn) + " while a transaction is open");
  m_transactions.push_back(transaction{final_lsn, final_lsn, m_next_id, m_next_id, 0, false});
  m_open = true;
}

lsn_tracker::event_id lsn_tracker::add_event() {
  if (!m_open) throw std::logic_error("lsn_tracker: event outside a transaction");
  const event_id id = m_next_id++;
  auto& tx = m_transactions.back();
  tx.end_id = m_next_id;
  ++tx.pending;
  if ((id - m_bits_base) / 64 >= m_acked.size()) m_acked.push_back(0);
  ++m_inflight;
  return id;
}

void lsn_tracker::commit(lsn_t end_lsn) {
  if (!m_open) throw std::logic_error("lsn_tracker: Commit at " + format_lsn(end_lsn) + " without a Begin");
  m_open = false;
  m_last_committed = std::max(m_last_committed, end_lsn);
  auto& tx = m_transactions.back();
  tx.end_lsn = end_lsn;
  tx.committed = true;
  // Without events of its own, it is confirmable exactly when its predecessor is: merge, so that a run of
  // empty transactions behind a slow event costs no memory.
  if (tx.first_id == tx.end_id && m_transactions.size() > 1) {
    m_transactions.pop_back();
    auto& prev = m_transactions.back();
    prev.end_lsn = std::max(prev.end_lsn, end_lsn);
  }
  advance();
}

void lsn_tracker::ack(event_id id) {
  if (id < m_first_tracked_id || id >= m_next_id || acked(id)) {
    throw std::logic_error("lsn_tracker: ack of unknown or already acknowledged event " + std::to_string(id));
  }
  m_acked[(id - m_bits_base) / 64] |= std::uint64_t{1} << ((id - m_bits_base) % 64);
  --m_inflight;
  auto it = std::upper_bound(m_transactions.begin(), m_transactions.end(), id,
                             [](event_id value, const transaction& tx) { return value < tx.first_id; });
  --it;
  if (--it->pending == 0 && it == m_transactions.begin()) advance();
}

bool lsn_tracker::acked(event_id id) const noexcept {
  return ((m_acked[(id - m_bits_base) / 64] >> ((id - m_bits_base) % 64)) & 1U) != 0;
}

std::optional<std::pair<lsn_t, std::uint64_t>> lsn_tracker::locate(event_id id) const {
  if (id < m_first_tracked_id || id >= m_next_id) return std::nullopt;
  auto it = std::upper_bound(m_transactions.begin(), m_transactions.end(), id,
                             [](event_id value, const transaction& tx) { return value < tx.first_id; });
  if (it == m_transactions.begin()) return std::nullopt;
  --it;
  if (id >= it->end_id) return std::nullopt;
  return std::make_pair(it->final_lsn, id - it->first_id);
}

void lsn_tracker::observe_server_position(lsn_t wal_end) {
  m_server_position = std::max(m_server_position, wal_end);
  if (m_transactions.empty()) m_confirmable = std::max(m_confirmable, m_server_position);
}

void lsn_tracker::advance() {
  while (!m_transactions.empty() && m_transactions.front().committed && m_transactions.front().pending == 0) {
    const auto& tx = m_transactions.front();
    m_confirmable = std::max(m_confirmable, tx.end_lsn);
    m_first_tracked_id = tx.end_id;
    // Whole words below the first tracked id are no longer needed.
    while (!m_acked.empty() && m_bits_base + 64 <= m_first_tracked_id) {
      m_acked.pop_front();
      m_bits_base += 64;
    }
    m_transactions.pop_front();
  }
  if (m_transactions.empty()) m_confirmable = std::max({m_confirmable, m_server_position, m_last_committed});
}

}  // namespace outbox::relay
