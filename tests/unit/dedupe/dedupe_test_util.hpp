#pragma once

#include "outbox/dedupe/store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace outbox::dedupe::test {

/// Polls `done` until it is true or `timeout` passes; returns the last result.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // poll interval, bounded by the deadline
  }
  return true;
}

/// "evt-<n>".
inline std::string event_id(std::size_t n) { return "evt-" + std::to_string(n); }

/// `threads` workers each run through all `ids` event ids (each from its own starting point) on the stores
/// given round-robin, completing what they claim; returns how often each id was claimed.
inline std::vector<int> claim_concurrently(const std::vector<store*>& stores, std::size_t threads, std::size_t ids) {
  std::vector<std::atomic<int>> claimed(ids);
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (std::size_t t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      store& s = *stores[t % stores.size()];
      while (!go.load()) std::this_thread::yield();
      for (std::size_t i = 0; i < ids; ++i) {
        const std::size_t id = (i + t * 7) % ids;
        if (s.claim("g", event_id(id)) == claim_result::claimed) {
          claimed[id].fetch_add(1);
          s.complete("g", event_id(id));
        }
      }
    });
  }
  go = true;
  for (auto& w : workers) w.join();
  std::vector<int> out;
  out.reserve(ids);
  for (auto& c : claimed) out.push_back(c.load());
  return out;
}

/// The ids in `counts` not claimed exactly once (empty is the invariant).
inline std::vector<std::size_t> not_exactly_once(const std::vector<int>& counts) {
  std::vector<std::size_t> bad;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    if (counts[i] != 1) bad.push_back(i);
  }
  return bad;
}

}  // namespace outbox::dedupe::test
