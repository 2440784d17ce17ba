#include "id_sorter.hpp"

#include <algorithm>

namespace outbox::ctl::detail {
namespace {

template <typename T>
void put(std::FILE* f, const T& v) {
  if (std::fwrite(&v, sizeof v, 1, f) != 1) throw verify_failure("writing a sorted run to a temporary file failed");
}

template <typename T>
bool get(std::FILE* f, T& v) {
  return std::fread(&v, sizeof v, 1, f) == 1;
}

}  // namespace

/// The next entry of one spilled run.
struct id_sorter::run_reader {
  std::FILE* file;
  entry current;
  bool valid = false;

  void advance() {
    std::uint32_t len = 0;
    std::uint8_t flag = 0;
    valid = false;
    if (!get(file, len)) return;
    current.id.resize(len);
    if (len > 0 && std::fread(current.id.data(), 1, len, file) != len) return;
    if (!get(file, current.topic) || !get(file, current.ms) || !get(file, flag)) return;
    current.in_window = flag != 0;
    valid = true;
  }
};

id_sorter::id_sorter(std::uint64_t budget_bytes) : m_budget(budget_bytes) {}

id_sorter::~id_sorter() {
  for (std::FILE* f : m_files) std::fclose(f);
}

void id_sorter::add(std::string_view id, const std::string& topic, std::int64_t ms, bool in_window) {
  auto it = m_topic_index.find(topic);
  if (it == m_topic_index.end()) {
    it = m_topic_index.emplace(topic, static_cast<std::uint32_t>(m_topics.size())).first;
    m_topics.push_back(topic);
  }
  m_run.push_back(entry{std::string(id), it->second, ms, in_window});
  m_bytes += sizeof(entry) + 16 + (id.size() > 15 ? id.size() + 1 : 0);  // the entry, vector slack, the heap id
  if (m_bytes >= m_budget) spill();
}

void id_sorter::spill() {
  std::sort(m_run.begin(), m_run.end(), [](const entry& a, const entry& b) { return a.id < b.id; });
  std::FILE* f = std::tmpfile();
  if (f == nullptr)
    throw verify_failure("cannot create a temporary file in /tmp for a sorted run (is /tmp writable and not full?)");
  m_files.push_back(f);
  for (const auto& e : m_run) {
    put(f, static_cast<std::uint32_t>(e.id.size()));
    if (!e.id.empty() && std::fwrite(e.id.data(), 1, e.id.size(), f) != e.id.size()) {
      throw verify_failure("writing a sorted run to a temporary file failed");
    }
    put(f, e.topic);
    put(f, e.ms);
    put(f, static_cast<std::uint8_t>(e.in_window ? 1 : 0));
  }
  if (std::fflush(f) != 0) throw verify_failure("writing a sorted run to a temporary file failed (disk full?)");
  m_run.clear();
  m_run.shrink_to_fit();
  m_bytes = 0;
}

void id_sorter::start_merge() {
  std::sort(m_run.begin(), m_run.end(), [](const entry& a, const entry& b) { return a.id < b.id; });
  for (std::FILE* f : m_files) {
    std::rewind(f);
    auto r = std::make_unique<run_reader>();
    r->file = f;
    r->advance();
    m_readers.push_back(std::move(r));
  }
}

const id_sorter::entry* id_sorter::next() {
  // The least of the in-memory run's head and each spilled run's head; a few runs, so a linear scan serves.
  const entry* least = m_memory_pos < m_run.size() ? &m_run[m_memory_pos] : nullptr;
  run_reader* from = nullptr;
  for (auto& r : m_readers) {
    if (r->valid && (least == nullptr || r->current.id < least->id)) {
      least = &r->current;
      from = r.get();
    }
  }
  if (least == nullptr) return nullptr;
  if (from == nullptr) {
    m_current = std::move(m_run[m_memory_pos++]);
  } else {
    m_current = std::move(from->current);
    from->advance();
  }
  return &m_current;
}

}  // namespace outbox::ctl::detail
