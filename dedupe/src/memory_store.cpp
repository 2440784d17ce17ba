#include "outbox/dedupe/store.hpp"

#include "outbox/base/error.hpp"
#include "outbox/dedupe/key_holds.hpp"

#include "event_id_check.hpp"

#include <algorithm>
#include <chrono>
#include <atomic>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace outbox::dedupe {
namespace {

using clock = std::chrono::steady_clock;
using detail::check_event_id;

enum class entry_state { in_progress, done };

struct entry;
using slot = std::pair<const std::string, entry>;
using slot_list = std::list<slot*>;

struct entry {
  entry_state state = entry_state::in_progress;
  clock::time_point stamp;     ///< when claimed or renewed (in progress) or completed (done)
  std::string owner;           ///< the token holding an in-progress claim; empty once done
  slot_list::iterator lru;     ///< position in the recency list (front = most recent)
  slot_list::iterator by_age;  ///< position in the stamp-ordered list (front = oldest)
};

/// Fixed cost of one entry besides its key: the map node, its bucket and two list nodes.
constexpr std::size_t k_entry_overhead = sizeof(slot) + 2 * sizeof(void*) + 2 * (sizeof(slot*) + 2 * sizeof(void*));

/// Buckets reserved up front (bounded by max_entries), so a busy consumer does not rehash early on.
constexpr std::size_t k_initial_buckets = 1U << 16U;

/// The map key: the group's length, the group, the event id (unambiguous for any bytes).
std::string store_key(std::string_view group, std::string_view event_id) {
  std::string key = std::to_string(group.size());
  key.reserve(key.size() + 1 + group.size() + event_id.size());
  key += ':';
  key += group;
  key += event_id;
  return key;
}

class memory_store final : public store {
 public:
  explicit memory_store(memory_options o) : m_options(o) {
    m_map.reserve(std::min<std::size_t>(m_options.max_entries, k_initial_buckets));
    if (m_options.max_entries == 0 || m_options.max_bytes == 0) {
      throw outbox_error("dedupe", "memory store: max_entries and max_bytes must be positive", retry_class::fatal);
    }
    if (m_options.ttl.count() <= 0 || m_options.lease.count() <= 0) {
      throw outbox_error("dedupe", "memory store: ttl and lease must be positive", retry_class::fatal);
    }
  }

  claim_result claim(std::string_view group, std::string_view event_id, std::string_view token) override {
    check_event_id(event_id);
    std::string key = store_key(group, event_id);
    std::lock_guard lock(m_mutex);
    const auto now = clock::now();  // under the mutex: keeps m_by_age in stamp order
    // One hash lookup for the common case, a first sighting: try_emplace finds or inserts.
    auto [it, inserted] = m_map.try_emplace(std::move(key));
    if (inserted) {
      link(*it, entry_state::in_progress, now);
      it->second.owner.assign(token);
      return claim_result::claimed;
    }
    slot& s = *it;
    entry& e = s.second;
    touch(s);
    if (expired(e, now)) {
      e.state = entry_state::in_progress;
      e.owner.assign(token);
      restamp(s, now);
      return claim_result::claimed;
    }
    if (e.state == entry_state::done) return claim_result::duplicate;
    if (e.owner != token && now - e.stamp < m_options.lease) return claim_result::in_progress;
    // The caller's own claim again, or one whose owner stopped renewing it: the caller holds it now.
    e.owner.assign(token);
    restamp(s, now);
    return claim_result::claimed;
  }

  bool renew(std::string_view group, std::string_view event_id, std::string_view token) override {
    check_event_id(event_id);
    const std::string key = store_key(group, event_id);
    std::lock_guard lock(m_mutex);
    const auto it = m_map.find(key);
    if (it == m_map.end() || it->second.state != entry_state::in_progress || it->second.owner != token) return false;
    restamp(*it, clock::now());
    return true;
  }

  bool complete(std::string_view group, std::string_view event_id, std::string_view token) override {
    check_event_id(event_id);
    const std::string key = store_key(group, event_id);
    std::lock_guard lock(m_mutex);
    const auto now = clock::now();  // under the mutex: keeps m_by_age in stamp order
    if (auto it = m_map.find(key); it != m_map.end()) {
      entry& e = it->second;
      if (e.state == entry_state::in_progress && e.owner != token && now - e.stamp < m_options.lease) return false;
      e.state = entry_state::done;
      e.owner = std::string();
      restamp(*it, now);
      touch(*it);
      return true;
    }
    // Evicted or expired while in progress: record the done mark anyway.
    insert(key, entry_state::done, now);
    return true;
  }

  bool release(std::string_view group, std::string_view event_id, std::string_view token) override {
    check_event_id(event_id);
    const std::string key = store_key(group, event_id);
    std::lock_guard lock(m_mutex);
    if (auto it = m_map.find(key);
        it != m_map.end() && it->second.state == entry_state::in_progress && it->second.owner == token) {
      erase(*it);
      return true;
    }
    return false;
  }

  std::size_t cleanup(std::size_t limit) override {
    std::lock_guard lock(m_mutex);
    return purge_expired(clock::now(), limit);
  }

  [[nodiscard]] std::chrono::milliseconds retention() const noexcept override { return m_options.ttl; }
  [[nodiscard]] std::chrono::milliseconds lease() const noexcept override { return m_options.lease; }
  [[nodiscard]] std::uint64_t evicted() const noexcept override { return m_evicted.load(std::memory_order_relaxed); }

 private:
  [[nodiscard]] bool expired(const entry& e, clock::time_point now) const { return now - e.stamp >= m_options.ttl; }

  static std::size_t bytes_of(const std::string& key) { return key.size() + k_entry_overhead; }

  /// Removes up to `limit` entries whose stamp is older than the TTL, oldest first.
  std::size_t purge_expired(clock::time_point now, std::size_t limit) {
    std::size_t removed = 0;
    while (removed < limit && !m_by_age.empty() && expired(m_by_age.front()->second, now)) {
      erase(*m_by_age.front());
      ++removed;
    }
    return removed;
  }

  void insert(const std::string& key, entry_state state, clock::time_point now) {
    auto [it, inserted] = m_map.try_emplace(key);
    link(*it, state, now);
  }

  /// Gives a slot just added to the map its state, list positions and byte count; enforces the bounds.
  void link(slot& s, entry_state state, clock::time_point now) {
    s.second.state = state;
    s.second.stamp = now;
    s.second.lru = m_lru.insert(m_lru.begin(), &s);
    s.second.by_age = m_by_age.insert(m_by_age.end(), &s);
    m_bytes += bytes_of(s.first);
    // Over a bound: expired entries go first, then the least recently used. The new entry is the most recent
    // and the youngest, so it is never the victim while another entry exists.
    while ((m_map.size() > m_options.max_entries || m_bytes > m_options.max_bytes) && m_map.size() > 1) {
      const bool expired_first = expired(m_by_age.front()->second, now);
      slot* victim = expired_first ? m_by_age.front() : m_lru.back();
      if (!expired_first) m_evicted.fetch_add(1, std::memory_order_relaxed);
      erase(*victim);
    }
  }

  void erase(slot& s) {
    m_lru.erase(s.second.lru);
    m_by_age.erase(s.second.by_age);
    m_bytes -= bytes_of(s.first);
    m_map.erase(m_map.find(s.first));
  }

  void touch(slot& s) { m_lru.splice(m_lru.begin(), m_lru, s.second.lru); }

  /// Stamps are taken under the mutex from a monotonic clock, so appending keeps m_by_age sorted.
  void restamp(slot& s, clock::time_point now) {
    s.second.stamp = now;
    m_by_age.splice(m_by_age.end(), m_by_age, s.second.by_age);
  }

  memory_options m_options;
  std::mutex m_mutex;
  std::unordered_map<std::string, entry> m_map;
  slot_list m_lru;
  slot_list m_by_age;
  std::size_t m_bytes = 0;
  std::atomic<std::uint64_t> m_evicted{0};
};

/// Holds in a map: per (group, topic, key), the parked records in the order added, with when.
class memory_key_holds final : public key_holds {
 public:
  explicit memory_key_holds(std::chrono::milliseconds lapse) : m_lapse(lapse) {}

  void add(std::string_view group, std::string_view topic, std::string_view key, held_record r) override {
    std::lock_guard lock(m_mutex);
    auto& q = m_holds[ident(group, topic, key)];
    for (const auto& e : q) {
      if (e.first == r) return;
    }
    q.emplace_back(r, clock::now());
  }

  std::optional<held_record> head(std::string_view group, std::string_view topic, std::string_view key) override {
    std::lock_guard lock(m_mutex);
    const auto it = m_holds.find(ident(group, topic, key));
    if (it == m_holds.end()) return std::nullopt;
    auto& q = it->second;
    const auto now = clock::now();
    while (!q.empty() && now - q.front().second >= m_lapse) q.pop_front();
    if (q.empty()) {
      m_holds.erase(it);
      return std::nullopt;
    }
    return q.front().first;
  }

  void remove(std::string_view group, std::string_view topic, std::string_view key, held_record r) override {
    std::lock_guard lock(m_mutex);
    const auto it = m_holds.find(ident(group, topic, key));
    if (it == m_holds.end()) return;
    auto& q = it->second;
    std::erase_if(q, [&](const auto& e) { return e.first == r; });
    if (q.empty()) m_holds.erase(it);
  }

 private:
  using ident_t = std::tuple<std::string, std::string, std::string>;
  static ident_t ident(std::string_view g, std::string_view t, std::string_view k) {
    return {std::string(g), std::string(t), std::string(k)};
  }

  std::chrono::milliseconds m_lapse;
  std::mutex m_mutex;
  std::map<ident_t, std::deque<std::pair<held_record, clock::time_point>>> m_holds;
};

}  // namespace

std::unique_ptr<store> make_memory_store(memory_options options) { return std::make_unique<memory_store>(options); }

std::unique_ptr<key_holds> make_memory_key_holds(std::chrono::milliseconds lapse) {
  return std::make_unique<memory_key_holds>(lapse);
}

}  // namespace outbox::dedupe
