#pragma once

#include "outbox/test/kafka.hpp"

#include <chrono>
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace outbox::test {

/// One expected event: its key and its event id, listed in commit order.
struct expected_event {
  std::string key;
  std::string event_id;
};

/// What check_stream found; ok() when nothing is wrong. `detail` names the first few problems.
struct stream_verdict {
  std::size_t seen = 0;
  std::size_t missing = 0;       ///< expected ids never seen
  std::size_t duplicated = 0;    ///< extra copies of expected ids
  std::size_t unexpected = 0;    ///< ids nobody expected
  std::size_t out_of_order = 0;  ///< per key, a first occurrence before an earlier event's
  std::string detail;

  [[nodiscard]] bool ok(bool duplicates_allowed = false) const {
    return missing == 0 && unexpected == 0 && out_of_order == 0 && (duplicates_allowed || duplicated == 0);
  }
};

/// The one invariant check of every stream test: every expected event id is in `seen` (by its `event_id` header),
/// nothing unexpected is, how many copies are extra, and per key the first occurrences follow the expected order.
stream_verdict check_stream(const std::vector<consumed_record>& seen, const std::vector<expected_event>& expected);

/// Reads `topic` from the beginning until every expected event id was seen (or `timeout`); what it read.
std::vector<consumed_record> consume_until_complete(const std::string& topic, const std::vector<expected_event>& expected,
                                                    std::chrono::milliseconds timeout);

/// The rows of outbox table `table` in the database `dsn`, in commit order (created_at, then id) as expected events.
std::vector<expected_event> expected_rows(const std::string& dsn, const std::string& table);

}  // namespace outbox::test
