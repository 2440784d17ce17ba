#include "outbox_sources.hpp"

#include "outbox/base/error.hpp"
#include "outbox/kafka/produce.hpp"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>

namespace outbox::ctl::detail {
namespace {

using clock = std::chrono::steady_clock;
constexpr std::chrono::seconds k_stall_timeout{30};
constexpr int k_fetch_rows = 10'000;

}  // namespace

void row_source::scan(const relay::topic_template& tmpl,
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
             " >= to_timestamp(" + std::to_string(m_o.since_ms) + " / 1000.0) AND " + m_s.quote_ident(vt.time_column) +
             " < to_timestamp(" + std::to_string(m_o.until_ms) + " / 1000.0)");
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

record_source::record_source(const verify_options& o) : m_o(o) {
  kafka::conf_builder b;
  b.set("bootstrap.servers", o.brokers, "--brokers: ");
  b.set("group.id", "outboxctl-verify-" + std::to_string(std::random_device{}()));
  b.set("enable.auto.commit", "false");
  b.set("enable.auto.offset.store", "false");
  b.set("enable.partition.eof", "true");
  b.set("allow.auto.create.topics", "false");
  b.set_all(o.kafka_properties, "--property ");
  b.log_lines(true);
  rd_kafka_conf_set_error_cb(
      b.get(), [](rd_kafka_t*, int, const char* reason, void* opaque) { *static_cast<std::string*>(opaque) = reason; });
  rd_kafka_conf_set_opaque(b.get(), &m_last_error);
  try {
    m_rk = b.create(RD_KAFKA_CONSUMER, "a Kafka consumer");
  } catch (const outbox_error& e) {
    throw verify_failure(e.what());
  }
}

std::vector<partition_range> record_source::ranges(const std::string& topic, std::int64_t from_ms) {
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
    const auto terr = rd_kafka_offsets_for_times(m_rk.get(), times.get(), static_cast<int>(k_request_timeout.count()));
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

void record_source::read(const std::string& topic, const std::vector<partition_range>& ranges,
                         const std::function<void(std::string_view, std::int64_t)>& fn) {
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
        throw verify_failure("no progress reading topic " + topic + " for " + std::to_string(k_stall_timeout.count()) +
                             " s" + (m_last_error.empty() ? "" : ": " + m_last_error));
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
      fn(id, rd_kafka_message_timestamp(m.get(), nullptr));
    }
    if (m->offset + 1 >= it->second) {
      it->second = -1;
      ++done;
    }
  }
  rd_kafka_assign(m_rk.get(), nullptr);
}

void record_source::fail(const std::string& what, rd_kafka_resp_err_t err) {
  throw verify_failure(what + " on " + m_o.brokers + ": " + rd_kafka_err2str(err) +
                       (m_last_error.empty() ? "" : " (" + m_last_error + ")") +
                       "; check --brokers and that Kafka is reachable");
}

std::unique_ptr<relay::pg_session> open_snapshot(const std::string& dsn, const std::string& application_name) {
  relay::conn_params params = relay::conn_params::parse(dsn);
  params.set("client_encoding", "UTF8");
  params.set_default("connect_timeout", "10");
  params.set_default("application_name", application_name);
  auto s = std::make_unique<relay::pg_session>(params, "connection");
  try {
    s->connect(k_request_timeout);
    s->exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  } catch (const outbox_error& e) {
    throw verify_failure(e.what());
  }
  return s;
}

}  // namespace outbox::ctl::detail
