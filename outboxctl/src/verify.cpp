#include "outbox/ctl/verify.hpp"

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

using clock = std::chrono::steady_clock;
constexpr std::chrono::milliseconds k_request_timeout{10'000};
constexpr std::chrono::seconds k_stall_timeout{30};
constexpr int k_fetch_rows = 10'000;

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

/// The rows of every table in the window, read through a cursor in one snapshot, as many times as needed.
class row_source {
 public:
  row_source(const verify_options& o, relay::pg_session& s) : m_o(o), m_s(s) {}

  /// Calls fn(table index, id, topic, written_ms) for every row of the window.
  void scan(const relay::topic_template& tmpl,
            const std::function<void(std::size_t, std::string_view, const std::string&, std::int64_t)>& fn) {
    std::string topic;
    for (std::size_t t = 0; t < m_o.tables.size(); ++t) {
      const auto& vt = m_o.tables[t];
      const auto& src = vt.source;
      const std::string cursor = "outbox_verify_" + std::to_string(t);
      m_s.exec("DECLARE " + cursor + " NO SCROLL CURSOR FOR SELECT " + m_s.quote_ident(src.columns.id) + "::text, " +
               m_s.quote_ident(src.columns.aggregate_type) + "::text, " + m_s.quote_ident(src.columns.event_type) +
               "::text, (extract(epoch FROM " + m_s.quote_ident(vt.time_column) + ") * 1000)::bigint FROM " +
               relay::quote_qualified(m_s, src.schema, src.table) + " WHERE " + m_s.quote_ident(vt.time_column) +
               " >= to_timestamp(" + std::to_string(m_o.since_ms) + " / 1000.0) AND " +
               m_s.quote_ident(vt.time_column) + " < to_timestamp(" + std::to_string(m_o.until_ms) + " / 1000.0)");
      while (true) {
        const relay::pg_rows rows = m_s.exec("FETCH " + std::to_string(k_fetch_rows) + " FROM " + cursor);
        for (int r = 0; r < rows.size(); ++r) {
          tmpl.render(topic, rows.text(r, 1), rows.text(r, 2), src.schema, src.table);
          fn(t, rows.text(r, 0), topic, std::atoll(std::string(rows.text(r, 3)).c_str()));
        }
        if (rows.size() < k_fetch_rows) break;
      }
      m_s.exec("CLOSE " + cursor);
    }
  }

 private:
  const verify_options& m_o;
  relay::pg_session& m_s;
};

/// One partition's range to read: [start, end).
struct partition_range {
  std::int32_t partition = 0;
  std::int64_t start = 0;
  std::int64_t end = 0;
};

/// Reads topics with a plain assign()-based consumer (no group, no commits).
class record_source {
 public:
  explicit record_source(const verify_options& o) : m_o(o) {
    kafka::conf_builder b;
    b.set("bootstrap.servers", o.brokers, "--brokers: ");
    b.set("group.id", "outboxctl-verify-" + std::to_string(std::random_device{}()));
    b.set("enable.auto.commit", "false");
    b.set("enable.auto.offset.store", "false");
    b.set("enable.partition.eof", "true");
    b.set("allow.auto.create.topics", "false");
    b.set_all(o.kafka_properties, "--property ");
    b.log_lines(true);
    rd_kafka_conf_set_error_cb(b.get(), [](rd_kafka_t*, int, const char* reason, void* opaque) {
      *static_cast<std::string*>(opaque) = reason;
    });
    rd_kafka_conf_set_opaque(b.get(), &m_last_error);
    try {
      m_rk = b.create(RD_KAFKA_CONSUMER, "a Kafka consumer");
    } catch (const outbox_error& e) {
      throw verify_failure(e.what());
    }
  }

  /// The ranges of `topic` from the first record at or after `from_ms` to the current end; empty when the topic does
  /// not exist.
  std::vector<partition_range> ranges(const std::string& topic, std::int64_t from_ms) {
    const kafka::topic_ptr handle(rd_kafka_topic_new(m_rk.get(), topic.c_str(), nullptr));
    const rd_kafka_metadata_t* md = nullptr;
    const auto err = rd_kafka_metadata(m_rk.get(), 0, handle.get(), &md, static_cast<int>(k_request_timeout.count()));
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) fail("metadata of topic " + topic, err);
    const kafka::metadata_ptr owned(md);
    std::vector<partition_range> out;
    for (int i = 0; i < md->topic_cnt; ++i) {
      if (topic != md->topics[i].topic || md->topics[i].err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
      kafka::partition_list_ptr times = kafka::make_partition_list(md->topics[i].partition_cnt);
      for (int p = 0; p < md->topics[i].partition_cnt; ++p) {
        rd_kafka_topic_partition_list_add(times.get(), topic.c_str(), md->topics[i].partitions[p].id)->offset = from_ms;
      }
      const auto terr =
          rd_kafka_offsets_for_times(m_rk.get(), times.get(), static_cast<int>(k_request_timeout.count()));
      if (terr != RD_KAFKA_RESP_ERR_NO_ERROR) fail("offsets for times of topic " + topic, terr);
      for (int p = 0; p < times->cnt; ++p) {
        const auto& e = times->elems[p];
        std::int64_t low = 0;
        std::int64_t high = 0;
        const auto werr = rd_kafka_query_watermark_offsets(m_rk.get(), topic.c_str(), e.partition, &low, &high,
                                                           static_cast<int>(k_request_timeout.count()));
        if (werr != RD_KAFKA_RESP_ERR_NO_ERROR) fail("watermarks of topic " + topic, werr);
        // -1: no record at or after the time, so nothing to read.
        const std::int64_t start = e.offset < 0 ? high : std::max(e.offset, low);
        if (start < high) out.push_back({e.partition, start, high});
      }
    }
    return out;
  }

  /// Calls fn(event_id) for every record of the ranges (records without an event_id give "").
  void read(const std::string& topic, const std::vector<partition_range>& ranges,
            const std::function<void(std::string_view)>& fn) {
    if (ranges.empty()) return;
    kafka::partition_list_ptr list = kafka::make_partition_list(static_cast<int>(ranges.size()));
    std::map<std::int32_t, std::int64_t> end_of;
    for (const auto& r : ranges) {
      rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), r.partition)->offset = r.start;
      end_of[r.partition] = r.end;
    }
    if (const auto e = rd_kafka_assign(m_rk.get(), list.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) fail("assign", e);
    std::size_t done = 0;
    auto last_progress = clock::now();
    while (done < end_of.size()) {
      kafka::message_ptr m(rd_kafka_consumer_poll(m_rk.get(), 200));
      if (!m) {
        if (clock::now() - last_progress > k_stall_timeout) {
          rd_kafka_assign(m_rk.get(), nullptr);
          throw verify_failure("no progress reading topic " + topic + " for " +
                               std::to_string(k_stall_timeout.count()) + " s" +
                               (m_last_error.empty() ? "" : ": " + m_last_error));
        }
        continue;
      }
      const auto it = end_of.find(m->partition);
      if (it == end_of.end() || it->second < 0) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        it->second = -1;
        ++done;
        continue;
      }
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        m_last_error = rd_kafka_message_errstr(m.get());
        continue;
      }
      last_progress = clock::now();
      if (m->offset < it->second) {
        std::string_view id;
        kafka::for_each_header(m.get(), [&](std::string_view name, std::optional<std::string_view> value) {
          if (id.empty() && name == "event_id" && value) id = *value;
        });
        fn(id);
      }
      if (m->offset + 1 >= it->second) {
        it->second = -1;
        ++done;
      }
    }
    rd_kafka_assign(m_rk.get(), nullptr);
  }

 private:
  [[noreturn]] void fail(const std::string& what, rd_kafka_resp_err_t err) {
    throw verify_failure(what + " on " + m_o.brokers + ": " + rd_kafka_err2str(err) +
                         (m_last_error.empty() ? "" : " (" + m_last_error + ")") +
                         "; check --brokers and that Kafka is reachable");
  }

  const verify_options& m_o;
  std::string m_last_error;
  kafka::client_ptr m_rk;
};

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
  relay::conn_params params = relay::conn_params::parse(o.dsn);
  params.set("client_encoding", "UTF8");
  params.set_default("connect_timeout", "10");
  params.set_default("application_name", "outboxctl-verify");
  relay::pg_session s(params, "connection");
  try {
    s.connect(k_request_timeout);
    s.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  } catch (const outbox_error& e) {
    throw verify_failure(e.what());
  }
  row_source rows(o, s);
  record_source kafka(o);

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
  std::map<std::string, std::vector<partition_range>> ranges;
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
    for (auto& [name, st] : state) {
      auto& tr = topics[name];
      if (ranges.count(name) != 0) {
        kafka.read(name, ranges[name], [&](std::string_view id) {
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
