#include "outbox/ctl/verify.hpp"

#include "outbox_sources.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/kafka/produce.hpp"
#include "outbox/relay/pg_session.hpp"
#include "outbox/relay/topic_template.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <unordered_map>

namespace outbox::ctl {
namespace {

/// A stable 64-bit hash of an event id (FNV-1a, then mixed): 8 bytes per id instead of the id itself.
std::uint64_t id_hash(std::string_view id) noexcept {
  std::uint64_t h = 1469598103934665603ULL;
  for (const char c : id) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  h ^= h >> 33U;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33U;
  return h;
}

/// Per topic, the state of one pass.
struct pass_state {
  std::vector<std::uint64_t> expected;  ///< hashes of rows of tables without delete_after_publish
  std::vector<std::uint64_t> backlog;   ///< hashes of rows of delete_after_publish tables
  std::vector<std::uint64_t> seen;      ///< hashes of event ids in the topic
};

}  // namespace

verify_options options_from_relay_config(const config::relay_config& c) {
  verify_options o;
  o.dsn = c.source.dsn;
  o.brokers = c.sink.brokers;
  for (const auto& [k, v] : c.sink.properties) {
    if (!kafka::consumer_only_property(k) && k != "linger.ms" && k != "compression.type" &&
        !k.starts_with("queue.buffering") && k != "acks" && k != "enable.idempotence" && k != "partitioner") {
      o.kafka_properties.emplace_back(k, v);
    }
  }
  for (const auto& t : c.source.tables) o.tables.push_back(verify_table{t, "created_at"});
  o.topic_template = c.sink.topic_template;
  return o;
}

verify_report verify(const verify_options& o) {
  const relay::topic_template tmpl(o.topic_template);
  const auto session = detail::open_snapshot(o.dsn, "outboxctl-verify");
  relay::pg_session& s = *session;
  detail::row_source rows(o, s);
  detail::record_source kafka(o);

  verify_report report;
  report.since_ms = o.since_ms;
  report.until_ms = o.until_ms;
  std::map<std::string, topic_report> topics;
  try {
    // First scan: which topics, how many rows.
    rows.scan(tmpl, [&](std::size_t t, std::string_view, const std::string& topic, std::int64_t written) {
      auto& tr = topics[topic];
      tr.topic = topic;
      ++tr.rows;
      ++report.rows;
      if (o.tables[t].source.delete_after_publish && (tr.oldest_waiting_ms < 0 || written < tr.oldest_waiting_ms)) {
        tr.oldest_waiting_ms = written;
      }
    });
  } catch (const outbox_error& e) {
    throw verify_failure(std::string("reading the outbox rows: ") + e.what());
  }
  std::map<std::string, std::vector<detail::partition_range>> ranges;
  std::uint64_t records = 0;
  for (const auto& [name, tr] : topics) {
    if (!relay::legal_topic(name)) continue;
    ranges[name] = kafka.ranges(name, o.since_ms - o.margin.count());
    for (const auto& r : ranges[name]) records += static_cast<std::uint64_t>(r.end - r.start);
  }
  const std::uint64_t need = 16 * (report.rows + records);
  report.passes = static_cast<int>(std::max<std::uint64_t>(1, (need + o.memory_budget - 1) / o.memory_budget));
  const auto passes = static_cast<std::uint64_t>(report.passes);
  for (auto& [name, tr] : topics) tr.oldest_waiting_ms = -1;

  for (std::uint64_t pass = 0; pass < passes; ++pass) {
    std::map<std::string, pass_state> state;
    try {
      rows.scan(tmpl, [&](std::size_t t, std::string_view id, const std::string& topic, std::int64_t) {
        const std::uint64_t h = id_hash(id);
        if (h % passes != pass) return;
        auto& st = state[topic];
        (o.tables[t].source.delete_after_publish ? st.backlog : st.expected).push_back(h);
      });
    } catch (const outbox_error& e) {
      throw verify_failure(std::string("reading the outbox rows: ") + e.what());
    }
    // Named references, not a structured binding: the lambdas below capture them (clang 14 cannot capture one).
    for (auto& entry : state) {
      const auto& name = entry.first;
      auto& st = entry.second;
      auto& tr = topics[name];
      if (ranges.count(name) != 0) {
        kafka.read(name, ranges[name], [&](std::string_view id, std::int64_t) {
          if (pass == 0) ++tr.records_read;
          const std::uint64_t h = id_hash(id);
          if (h % passes == pass) st.seen.push_back(h);
        });
      }
      std::sort(st.seen.begin(), st.seen.end());
      std::sort(st.expected.begin(), st.expected.end());
      std::sort(st.backlog.begin(), st.backlog.end());
      auto copies = [&](std::uint64_t h) {
        const auto [lo, hi] = std::equal_range(st.seen.begin(), st.seen.end(), h);
        return static_cast<std::uint64_t>(hi - lo);
      };
      std::set<std::uint64_t> missing;
      std::set<std::uint64_t> duplicated;
      std::vector<std::uint64_t> waiting;  // every waiting hash, sorted: the oldest is looked for among all
      for (const auto h : st.expected) {
        const auto n = copies(h);
        if (n == 0) {
          ++tr.missing;
          if (missing.size() < o.max_listed) missing.insert(h);
        } else {
          ++tr.found;
          if (n > 1) {
            tr.duplicated += n - 1;
            if (duplicated.size() < o.max_listed) duplicated.insert(h);
          }
        }
      }
      for (const auto h : st.backlog) {
        if (copies(h) == 0) {
          ++tr.waiting;
          waiting.push_back(h);
        } else {
          ++tr.found;
        }
      }
      if (missing.empty() && duplicated.empty() && waiting.empty()) continue;
      // The ids behind the hashes, for the report: one more scan, of this topic's rows only.
      try {
        rows.scan(tmpl, [&](std::size_t, std::string_view id, const std::string& topic, std::int64_t written) {
          if (topic != name) return;
          const std::uint64_t h = id_hash(id);
          if (missing.count(h) != 0 && tr.missing_ids.size() < o.max_listed) tr.missing_ids.emplace_back(id);
          if (duplicated.count(h) != 0 && tr.duplicated_ids.size() < o.max_listed) tr.duplicated_ids.emplace_back(id);
          if (std::binary_search(waiting.begin(), waiting.end(), h)) {
            if (tr.waiting_ids.size() < o.max_listed) tr.waiting_ids.emplace_back(id);
            if (tr.oldest_waiting_ms < 0 || written < tr.oldest_waiting_ms) tr.oldest_waiting_ms = written;
          }
        });
      } catch (const outbox_error& e) {
        throw verify_failure(std::string("reading the outbox rows: ") + e.what());
      }
    }
  }
  for (auto& [name, tr] : topics) {
    report.missing += tr.missing;
    report.duplicated += tr.duplicated;
    report.waiting += tr.waiting;
    report.topics.push_back(std::move(tr));
  }
  return report;
}

}  // namespace outbox::ctl
