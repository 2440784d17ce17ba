#pragma once

#include "outbox/relay/lsn.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>

namespace outbox::relay {

/// Decides which LSN may be confirmed (flushed) to PostgreSQL.
///
/// The rule: confirm up to the end LSN of the last transaction T such that every event of T and of every
/// transaction before T is acknowledged by Kafka; a transaction without events is confirmable as soon as all
/// before it are. Confirming past an unacknowledged event would let PostgreSQL discard WAL that a restart still
/// needs, losing that event. When nothing is in flight and no transaction is open, confirm
/// max(highest server position observed, last committed end LSN): the server reports how far it has read and
/// sends a transaction only once it reads its commit record, so every transaction committed before a reported
/// position was sent before it and has then been acknowledged. The position may lie inside a large transaction
/// still being decoded; that is safe, because a slot skips on restart only transactions that commit before its
/// confirmed position. A position observed while busy is remembered and applies once idle. confirmable() never
/// moves backwards.
class lsn_tracker {
 public:
  using event_id = std::uint64_t;

  /// Begin of a transaction in stream order; throws std::logic_error if one is open.
  void begin(lsn_t final_lsn);
  /// Registers an event of the open transaction, handed to Kafka; ids strictly increase.
  event_id add_event();
  /// Commit of the open transaction; `end_lsn` becomes confirmable once its events and all before are acked.
  void commit(lsn_t end_lsn);
  /// Kafka acknowledged this event (any order); throws std::logic_error on an unknown or repeated id.
  void ack(event_id id);
  /// The server's WAL position (keepalive wal_end); confirmed only while idle, see the rule above.
  void observe_server_position(lsn_t wal_end);

  /// Highest LSN safe to report as the flush LSN; never decreases.
  [[nodiscard]] lsn_t confirmable() const noexcept { return m_confirmable; }
  /// Events handed out and not yet acknowledged.
  [[nodiscard]] std::size_t inflight_events() const noexcept { return m_inflight; }
  /// Transactions still tracked: the open one and committed ones not yet confirmable (0 when idle).
  [[nodiscard]] std::size_t open_transactions() const noexcept { return m_transactions.size(); }
  /// Events from the oldest one not yet confirmable to the newest (acknowledged or not), which the tracker holds
  /// at one bit each: a 100,000,000-row transaction costs 12.5 MB.
  [[nodiscard]] std::size_t tracked_events() const noexcept { return m_next_id - m_first_tracked_id; }
  /// Where an unconfirmed event is: the Begin final LSN of its transaction and its position inside it (0-based);
  /// nullopt for an unknown id.
  [[nodiscard]] std::optional<std::pair<lsn_t, std::uint64_t>> locate(event_id id) const;

 private:
  /// Events [first_id, end_id) of one transaction (or of several merged ones, with the last one's end LSN).
  struct transaction {
    lsn_t final_lsn;  ///< from Begin
    lsn_t end_lsn;
    event_id first_id;
    event_id end_id;
    std::size_t pending;
    bool committed;
  };

  void advance();
  [[nodiscard]] bool acked(event_id id) const noexcept;

  std::deque<transaction> m_transactions;
  std::deque<std::uint64_t> m_acked;  ///< one bit per id from m_bits_base on (word-aligned below m_first_tracked_id)
  event_id m_bits_base = 0;
  event_id m_first_tracked_id = 1;
  event_id m_next_id = 1;
  bool m_open = false;
  std::size_t m_inflight = 0;
  lsn_t m_server_position = 0;
  lsn_t m_last_committed = 0;
  lsn_t m_confirmable = 0;
};

}  // namespace outbox::relay
