#pragma once
// The outbox's event ids of a window in id order, within a memory budget: sorted runs spill to temporary files
// and are merged back (an external merge sort).

#include "outbox/ctl/reconcile.hpp"

#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace outbox::ctl::detail {

/// Collects (id, topic, time) entries, then hands them back in bytewise id order. Memory: the entries of one run
/// (about 64 bytes plus the id each) up to the budget, then one entry and a stdio buffer per spilled run.
class id_sorter {
 public:
  /// One collected entry; the topic is an index into topics().
  struct entry {
    std::string id;
    std::uint32_t topic = 0;
    std::int64_t ms = 0;
    bool in_window = true;
  };

  explicit id_sorter(std::uint64_t budget_bytes);
  ~id_sorter();
  id_sorter(const id_sorter&) = delete;
  id_sorter& operator=(const id_sorter&) = delete;

  void add(std::string_view id, const std::string& topic, std::int64_t ms, bool in_window);
  /// The entries in id order, converted by `convert`; call once, after the last add().
  template <typename T>
  pull<T> finish(std::function<void(const entry&, T&)> convert) {
    start_merge();
    return [this, convert = std::move(convert)](T& out) {
      const entry* e = next();
      if (e == nullptr) return false;
      convert(*e, out);
      return true;
    };
  }
  [[nodiscard]] const std::vector<std::string>& topics() const noexcept { return m_topics; }
  [[nodiscard]] int spilled_runs() const noexcept { return static_cast<int>(m_files.size()); }

 private:
  struct run_reader;

  void spill();
  void start_merge();
  const entry* next();

  std::uint64_t m_budget;
  std::uint64_t m_bytes = 0;
  std::vector<entry> m_run;
  std::vector<std::FILE*> m_files;
  std::vector<std::string> m_topics;
  std::unordered_map<std::string, std::uint32_t> m_topic_index;
  std::vector<std::unique_ptr<run_reader>> m_readers;
  std::size_t m_memory_pos = 0;
  entry m_current;
};

}  // namespace outbox::ctl::detail
