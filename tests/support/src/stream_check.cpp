#include "outbox/test/stream_check.hpp"

#include <pqxx/pqxx>

#include <map>
#include <unordered_map>

namespace outbox::test {

stream_verdict check_stream(const std::vector<consumed_record>& seen, const std::vector<expected_event>& expected) {
  stream_verdict v;
  v.seen = seen.size();
  std::unordered_map<std::string, std::size_t> position;  // event id -> index in `expected`
  for (std::size_t i = 0; i < expected.size(); ++i) position.emplace(expected[i].event_id, i);
  std::unordered_map<std::string, std::size_t> copies;
  std::map<std::string, std::size_t> last_first_seen;  // key -> expected index of its latest first occurrence
  auto note = [&](const std::string& what) {
    if (v.detail.size() < 2000) v.detail += what + "\n";
  };
  for (const auto& r : seen) {
    const std::string id = r.header("event_id").value_or("");
    const auto at = position.find(id);
    if (at == position.end()) {
      ++v.unexpected;
      note("unexpected event id \"" + id + "\" (" + r.topic + "[" + std::to_string(r.partition) + "]@" +
           std::to_string(r.offset) + ")");
      continue;
    }
    if (++copies[id] > 1) {
      ++v.duplicated;
      continue;
    }
    const std::string& key = expected[at->second].key;
    if (const auto prev = last_first_seen.find(key); prev != last_first_seen.end() && prev->second > at->second) {
      ++v.out_of_order;
      note("key \"" + key + "\": " + id + " came after a later event of the key");
    }
    last_first_seen[key] = std::max(last_first_seen[key], at->second);
  }
  for (const auto& e : expected) {
    if (copies.count(e.event_id) == 0) {
      ++v.missing;
      note("missing " + e.event_id + " (key \"" + e.key + "\")");
    }
  }
  return v;
}

std::vector<consumed_record> consume_until_complete(const std::string& topic, const std::vector<expected_event>& expected,
                                                    std::chrono::milliseconds timeout) {
  return kafka_consume_until(
      topic,
      [&](const std::vector<consumed_record>& seen) {
        return seen.size() >= expected.size() && check_stream(seen, expected).missing == 0;
      },
      timeout);
}

std::vector<expected_event> expected_rows(const std::string& dsn, const std::string& table) {
  pqxx::connection c(dsn);
  pqxx::nontransaction tx(c);
  std::vector<expected_event> rows;
  for (const auto& row : tx.exec("SELECT aggregate_id, id::text FROM " + table + " ORDER BY created_at, id")) {
    rows.push_back({row[0].as<std::string>(), row[1].as<std::string>()});
  }
  return rows;
}

}  // namespace outbox::test
