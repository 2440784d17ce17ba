#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace outbox::consumer {

/// A partition of a topic.
struct topic_partition {
  std::string topic;
  std::int32_t partition = 0;

  friend bool operator==(const topic_partition& a, const topic_partition& b) {
    return a.partition == b.partition && a.topic == b.topic;
  }
  friend bool operator<(const topic_partition& a, const topic_partition& b) {
    return std::tie(a.topic, a.partition) < std::tie(b.topic, b.partition);
  }
};

/// The records of one partition that were started, in offset order, and how far all of them are finished.
///
/// Kafka offsets have gaps (transaction markers, compaction), so the commit position is derived from the
/// records actually seen: it is one past the last record of the longest finished prefix.
class partition_offsets {
 public:
  /// Registers a record handed to processing; false (and ignored) unless it is above every started offset.
  bool started(std::int64_t offset);
  /// Marks a started record finished; false if it was never started or already finished.
  bool finished(std::int64_t offset);
  /// Forgets every started record from `offset` on (finished or not), so that they can be started again: the
  /// partition is read again from there. Nothing below `offset` changes.
  void rewind(std::int64_t offset);
  /// The offset to commit (the next one to read): every started record below it is finished; -1 if none.
  [[nodiscard]] std::int64_t committable() const noexcept { return m_next; }
  /// Records started but not finished.
  [[nodiscard]] std::size_t in_flight() const noexcept { return m_unfinished; }

 private:
  struct entry {
    std::int64_t offset;
    bool done;
  };
  std::deque<entry> m_pending;  // started and not yet part of the finished prefix, ascending
  std::int64_t m_next = -1;
  std::int64_t m_last_started = -1;
  std::size_t m_unfinished = 0;
};

/// A commit position: commit `offset` (the next offset to read) for `where`.
struct commit_position {
  topic_partition where;
  std::int64_t offset = 0;
};

/// Per assigned partition: which records are finished, and which positions are committed.
class offset_tracker {
 public:
  /// Starts tracking a newly assigned partition (forgets any earlier state of it).
  void assign(const topic_partition& tp);
  /// Stops tracking a revoked partition.
  void revoke(const topic_partition& tp);
  [[nodiscard]] bool assigned(const topic_partition& tp) const { return m_partitions.contains(tp); }
  /// The records of an assigned partition, or nullptr; valid until that partition is assigned or revoked again.
  [[nodiscard]] partition_offsets* offsets(const topic_partition& tp);

  /// See partition_offsets::started; false also when the partition is not assigned.
  bool started(const topic_partition& tp, std::int64_t offset);
  /// See partition_offsets::finished; false also when the partition is not assigned.
  bool finished(const topic_partition& tp, std::int64_t offset);

  /// Positions that moved past what was last sent for commit; all partitions, or only `only` when given.
  [[nodiscard]] std::vector<commit_position> pending(const std::vector<topic_partition>* only = nullptr) const;
  /// Records that a commit of `p` was sent (so pending() stops returning it).
  void commit_sent(const commit_position& p);
  /// Records the broker's answer to a commit of `p`; a failure makes it pending again.
  void commit_result(const commit_position& p, bool ok);
  /// The last position the broker confirmed for `tp`, or -1.
  [[nodiscard]] std::int64_t committed(const topic_partition& tp) const;

 private:
  struct state {
    partition_offsets offsets;
    std::int64_t sent = -1;
    std::int64_t committed = -1;
  };
  std::map<topic_partition, state> m_partitions;
};

}  // namespace outbox::consumer
