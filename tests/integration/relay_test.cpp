// outbox-relay against real PostgreSQL and Kafka: record shape, order and completeness.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/relay_fixture.hpp"
#include "outbox/test/tls.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;

class relay_records : public relay_fixture {};

std::vector<std::string> header_names(const consumed_record& r) {
  std::vector<std::string> out;
  for (const auto& [k, v] : r.headers) out.push_back(k);
  return out;
}

const consumed_record* find_by_key(const std::vector<consumed_record>& records, std::string_view key) {
  for (const auto& r : records) {
    if (r.key == key) return &r;
  }
  return nullptr;
}

TEST_F(relay_records, each_payload_type_becomes_the_record_spec_describes) {
  const auto topic = unique_name("shape");
  const auto jsonb_t = create_table("ob_jsonb");
  const auto json_t = create_table("ob_json",
                                   "id uuid PRIMARY KEY DEFAULT gen_random_uuid(), aggregate_type text, "
                                   "aggregate_id text, event_type text, payload json, headers jsonb");
  const auto text_t = create_table("ob_text",
                                   "id uuid PRIMARY KEY DEFAULT gen_random_uuid(), aggregate_type text, "
                                   "aggregate_id text, event_type text, payload text, headers jsonb");
  const auto bytea_t = create_table("ob_bytea",
                                    "id uuid PRIMARY KEY DEFAULT gen_random_uuid(), aggregate_type "
                                    "text, aggregate_id text, event_type text, payload bytea, headers jsonb");
  start_relay(config(tables({jsonb_t, json_t, text_t, bytea_t})));

  const std::string big(900 * 1024, 'x');
  pg_exec(
      "BEGIN; "
      "INSERT INTO " +
      jsonb_t +
      " (id, aggregate_type, aggregate_id, event_type, payload, headers) VALUES "
      "('00000000-0000-0000-0000-000000000001', '" +
      topic +
      "', 'k-jsonb', 'created', "
      "'{\"b\": 1, \"a\": \"ü€😀\"}', '{\"trace_id\": \"abc\", \"n\": 5, \"obj\": {\"x\": [1, 2]}}'), "
      "('00000000-0000-0000-0000-000000000002', '" +
      topic +
      "', 'k-null', 'deleted', NULL, '{}'), "
      "('00000000-0000-0000-0000-000000000003', '" +
      topic +
      "', 'k-big', 'big', "
      "jsonb_build_object('blob', '" +
      big +
      "'), '{}'); "
      "INSERT INTO " +
      json_t +
      " (aggregate_type, aggregate_id, event_type, payload, headers) VALUES "
      "('" +
      topic +
      "', 'k-json', 'created', '{\"b\":1,  \"a\":2}', NULL); "
      "INSERT INTO " +
      text_t +
      " (aggregate_type, aggregate_id, event_type, payload, headers) VALUES "
      "('" +
      topic +
      "', 'k-text-ключ', 'created', 'plain text ✓', '{}'); "
      "INSERT INTO " +
      bytea_t +
      " (aggregate_type, aggregate_id, event_type, payload, headers) VALUES "
      "('" +
      topic +
      "', 'k-bytea', 'created', '\\x00ff41'::bytea, '{}'); "
      "COMMIT;");

  const auto records = kafka_consume(topic, 6, 60s);
  ASSERT_EQ(records.size(), 6U);

  const auto* jb = find_by_key(records, "k-jsonb");
  ASSERT_NE(jb, nullptr);
  EXPECT_EQ(jb->value, R"({"a": "ü€😀", "b": 1})");  // jsonb's own text form, bytes as stored
  // Row headers follow the object's order as stored: jsonb keeps keys shortest first, then bytewise.
  EXPECT_EQ(header_names(*jb),
            (std::vector<std::string>{"event_id", "event_type", "aggregate_type", "n", "obj", "trace_id", "outbox_lsn",
                                      "outbox_xid", "outbox_commit_ts_ms", "outbox_table"}));
  EXPECT_EQ(jb->header("event_id"), "00000000-0000-0000-0000-000000000001");
  EXPECT_EQ(jb->header("event_type"), "created");
  EXPECT_EQ(jb->header("aggregate_type"), topic);
  EXPECT_EQ(jb->header("trace_id"), "abc");
  EXPECT_EQ(jb->header("n"), "5");
  EXPECT_EQ(nlohmann::json::parse(jb->header("obj").value_or("null")), nlohmann::json::parse(R"({"x":[1,2]})"));
  EXPECT_EQ(jb->header("outbox_table"), "public." + jsonb_t);
  EXPECT_TRUE(jb->header("outbox_lsn").value_or("").find('/') != std::string::npos);
  const auto commit_ms = std::stoll(jb->header("outbox_commit_ts_ms").value_or("0"));
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  EXPECT_LT(std::llabs(now_ms - commit_ms), 120'000) << "commit timestamp should be Unix milliseconds";

  const auto* tomb = find_by_key(records, "k-null");
  ASSERT_NE(tomb, nullptr);
  EXPECT_FALSE(tomb->value.has_value()) << "NULL payload must publish a tombstone";

  const auto* large = find_by_key(records, "k-big");
  ASSERT_NE(large, nullptr);
  EXPECT_EQ(large->value, R"({"blob": ")" + big + R"("})");

  const auto* js = find_by_key(records, "k-json");
  ASSERT_NE(js, nullptr);
  EXPECT_EQ(js->value, R"({"b":1,  "a":2})");  // json keeps its text exactly

  const auto* tx = find_by_key(records, "k-text-ключ");
  ASSERT_NE(tx, nullptr);
  EXPECT_EQ(tx->value, "plain text ✓");

  const auto* by = find_by_key(records, "k-bytea");
  ASSERT_NE(by, nullptr);
  EXPECT_EQ(by->value, std::string("\x00\xff\x41", 3)) << "bytea is published as raw bytes";

  // Every record of one transaction carries the same commit LSN and xid.
  std::set<std::string> lsns;
  std::set<std::string> xids;
  for (const auto& r : records) {
    lsns.insert(r.header("outbox_lsn").value_or(""));
    xids.insert(r.header("outbox_xid").value_or(""));
  }
  EXPECT_EQ(lsns.size(), 1U);
  EXPECT_EQ(xids.size(), 1U);
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

// Over TLS, a change larger than libpq's free input buffer reaches the relay in TLS records of up to 16 KiB
// (PostgreSQL 17 and later send large messages without splitting them into 8 KiB writes). libpq's
// PQconsumeInput() takes one record's worth per read, so the rest of the last record can stay decrypted inside
// OpenSSL with the socket empty: a relay that then waits on the socket alone sits until the server sends again.
// The walsender does: once it has sent a transaction the client has not confirmed, it sends a keepalive before it
// waits for more WAL, and that read frees the rest. Each row here comes alone, into an idle stream, and must be in
// Kafka within seconds, on every server version of the compat runs.
TEST_F(relay_records, over_tls_a_large_row_alone_in_an_idle_stream_is_published_at_once) {
  const auto topic = unique_name("tlsbig");
  const auto t = create_table("ob_tlsbig");
  std::string yaml = config(tables({t}));
  yaml.replace(yaml.find("${OUTBOX_PG_DSN}"), 16, "\"" + require_tls_services().pg_dsn + "\"");
  start_relay(yaml);
  EXPECT_EQ(pg_scalar("SELECT s.ssl FROM pg_stat_ssl s JOIN pg_replication_slots r ON r.active_pid = s.pid WHERE "
                      "r.slot_name = '" +
                      m_slot + "'"),
            "t")
      << "the replication connection is not over TLS";
  std::size_t published = 0;
  for (const std::size_t kib : {20, 50, 120, 500}) {
    std::this_thread::sleep_for(1s);  // an idle stream: everything before this row is in Kafka and confirmed
    const auto t0 = std::chrono::steady_clock::now();
    pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) VALUES ('" + topic + "', 'k" +
            std::to_string(kib) + "', 'e', jsonb_build_object('blob', repeat('x', " + std::to_string(kib * 1024) +
            ")))");
    ++published;
    ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= static_cast<long long>(published); }, 20s, 20ms))
        << "a row of " << kib << " KiB was not published within 20 s\n"
        << m_relay->log();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    std::cout << "[ tls      ] a row of " << kib << " KiB in Kafka after " << took.count() << " ms\n";
    EXPECT_LT(took, 5s) << "a row of " << kib << " KiB waited for more input from the server";
  }
  const auto records = kafka_consume(topic, published, 60s);
  ASSERT_EQ(records.size(), published);
  for (const auto& r : records) EXPECT_GT(r.value.value_or("").size(), 20U * 1024);
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_records, custom_column_names_and_topic_template) {
  const auto prefix = unique_name("custom");
  const auto t = create_table("ob_custom",
                              "event_uuid uuid PRIMARY KEY, kind text NOT NULL, entity text NOT NULL, "
                              "what text NOT NULL, body jsonb, meta jsonb");
  const std::string tables_yaml = "    - name: public." + t +
                                  "\n      columns: {id: event_uuid, aggregate_type: kind, aggregate_id: entity, "
                                  "event_type: what, payload: body, headers: meta}\n";
  // Route by template: <prefix>.<aggregate_type>.<event_type>
  std::string yaml = config(tables_yaml);
  yaml.replace(yaml.find("sink:\n"), 6, "sink:\n  topic_template: \"" + prefix + ".{aggregate_type}.{event_type}\"\n");
  start_relay(yaml);
  pg_exec("INSERT INTO " + t +
          " VALUES ('00000000-0000-0000-0000-0000000000aa', 'invoice', 'inv-1', 'issued', "
          "'{\"n\": 1}', '{\"tenant\": \"t1\"}')");
  const auto records = kafka_consume(prefix + ".invoice.issued", 1, 60s);
  ASSERT_EQ(records.size(), 1U);
  EXPECT_EQ(records[0].key, "inv-1");
  EXPECT_EQ(records[0].value, R"({"n": 1})");
  EXPECT_EQ(records[0].header("event_id"), "00000000-0000-0000-0000-0000000000aa");
  EXPECT_EQ(records[0].header("tenant"), "t1");
}

TEST_F(relay_records, logical_message_source_publishes_envelopes) {
  const auto topic = unique_name("msg");
  const auto prefix = unique_name("ev");
  start_relay(config("", "  logical_messages: {prefix: " + prefix + "}\n"));
  pg_exec("BEGIN; SELECT pg_logical_emit_message(true, '" + prefix + "', '{\"id\": \"m-1\", \"aggregate_type\": \"" +
          topic +
          "\", \"aggregate_id\": \"acc-7\", \"event_type\": \"paid\", \"payload\": {\"amount_cents\": 1250}, "
          "\"headers\": {\"source\": \"psp\"}}'); "
          "SELECT pg_logical_emit_message(true, 'other-prefix', 'ignored'); COMMIT;");
  const auto records = kafka_consume(topic, 1, 60s);
  ASSERT_EQ(records.size(), 1U);
  EXPECT_EQ(records[0].key, "acc-7");
  EXPECT_EQ(nlohmann::json::parse(records[0].value.value_or("null")),
            nlohmann::json::parse(R"({"amount_cents":1250})"));
  EXPECT_EQ(records[0].header("event_id"), "m-1");
  EXPECT_EQ(records[0].header("source"), "psp");
  EXPECT_EQ(records[0].header("outbox_table"), "message:" + prefix);
}

TEST_F(relay_records, fifty_thousand_events_once_each_in_commit_order_per_key) {
  const auto topic = unique_name("bulk");
  const auto t = create_table("ob_bulk");
  start_relay(config(tables({t})));
  constexpr int k_transactions = 500;
  constexpr int k_per_tx = 100;
  constexpr int k_aggregates = 500;
  // Each transaction inserts rows whose `seq` grows in commit order; keys spread over 500 aggregates.
  std::string sql;
  for (int tx = 0; tx < k_transactions; ++tx) {
    sql += "BEGIN; INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
           "', 'agg-' || (((" + std::to_string(tx * k_per_tx) + " + g) * 7919) % " + std::to_string(k_aggregates) +
           "), 'e', jsonb_build_object('seq', " + std::to_string(tx * k_per_tx) + " + g) FROM generate_series(0, " +
           std::to_string(k_per_tx - 1) + ") g; COMMIT;";
    if (tx % 50 == 49) {
      pg_exec(sql);
      sql.clear();
    }
  }
  constexpr std::size_t k_total = static_cast<std::size_t>(k_transactions) * k_per_tx;
  const auto records = kafka_consume(topic, k_total, 180s);
  ASSERT_EQ(records.size(), k_total);
  std::set<std::string> ids;
  std::map<std::string, long long> last_seq;
  for (const auto& r : records) {
    ASSERT_TRUE(ids.insert(r.header("event_id").value_or("")).second) << "duplicate " << *r.header("event_id");
    const auto seq = nlohmann::json::parse(r.value.value_or("{}")).value("seq", -1LL);
    auto [it, fresh] = last_seq.try_emplace(r.key.value_or(""), seq);
    if (!fresh) {
      ASSERT_LT(it->second, seq) << "key " << it->first << " out of commit order";
      it->second = seq;
    }
  }
  EXPECT_EQ(last_seq.size(), static_cast<std::size_t>(k_aggregates));
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
  EXPECT_NE(m_relay->log().find("\"msg\":\"stopped\""), std::string::npos);
}

TEST_F(relay_records, idle_outbox_beside_a_busy_table_still_advances_the_slot) {
  const auto t = create_table("ob_idle");
  const auto busy = create_table("busy", "id bigserial PRIMARY KEY, v text");
  start_relay(config(tables({t}), "  heartbeat_interval: 500ms\n"));
  pg_exec("INSERT INTO " + busy + " (v) SELECT md5(g::text) FROM generate_series(1, 20000) g");
  const std::string target = pg_scalar("SELECT pg_current_wal_insert_lsn()::text");
  const bool advanced = wait_until(
      [&] {
        return pg_scalar("SELECT confirmed_flush_lsn >= '" + target +
                         "'::pg_lsn FROM pg_replication_slots "
                         "WHERE slot_name = '" +
                         m_slot + "'") == "t";
      },
      30s, 200ms);
  EXPECT_TRUE(advanced) << "confirmed_flush_lsn stayed behind " << target << ": "
                        << pg_scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '" +
                                     m_slot + "'");
}

TEST_F(relay_records, the_slot_it_makes_is_a_failover_slot_on_postgresql_17_and_later) {
  const auto t = create_table("ob_failover");
  start_relay(config(tables({t})));
  const int version = std::stoi(pg_scalar("SHOW server_version_num"));
  if (version >= 170000) {
    // Synchronized to standbys that sync slots (sync_replication_slots, synchronized_standby_slots), so that it
    // survives a promotion; the compat label runs this on 17 and 18.
    EXPECT_EQ(pg_scalar("SELECT failover FROM pg_replication_slots WHERE slot_name = '" + m_slot + "'"), "t");
    if (pg_scalar("SHOW synchronized_standby_slots").empty()) {
      EXPECT_NE(m_relay->log().find("synchronized_standby_slots is empty"), std::string::npos)
          << "the unprotected slot is reported";
      EXPECT_TRUE(wait_until([&] { return metric("outbox_relay_slot_failover_unprotected") == 1.0; }, 30s))
          << "and its metric says so";
    }
  } else {
    EXPECT_EQ(pg_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + m_slot + "'"), "1");
  }
}

TEST_F(relay_records, delete_after_publish_removes_published_rows) {
  const auto topic = unique_name("del");
  const auto t = create_table("ob_del");
  start_relay(config("    - name: public." + t + "\n      delete_after_publish: true\n"));
  pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
          "', 'k' || g, 'e', '{}' FROM generate_series(1, 2500) g");
  const auto records = kafka_consume(topic, 2500, 60s);
  EXPECT_EQ(records.size(), 2500U);
  EXPECT_TRUE(wait_until([&] { return pg_scalar("SELECT count(*) FROM " + t) == "0"; }, 30s, 100ms))
      << pg_scalar("SELECT count(*) FROM " + t) << " rows left";
}

TEST_F(relay_records, a_column_added_mid_stream_is_picked_up) {
  const auto topic = unique_name("alter");
  const auto t = create_table("ob_alter");
  start_relay(config(tables({t})));
  pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) VALUES ('" + topic +
          "', 'k', 'before', '{\"n\": 1}')");
  ASSERT_EQ(kafka_consume(topic, 1, 60s).size(), 1U);
  pg_exec("ALTER TABLE " + t + " ADD COLUMN tenant text DEFAULT 't1'");
  pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload, tenant) VALUES ('" + topic +
          "', 'k', 'after', '{\"n\": 2}', 't2')");
  const auto records = kafka_consume(topic, 2, 60s);
  ASSERT_EQ(records.size(), 2U);
  EXPECT_EQ(records[1].header("event_type"), "after");
  EXPECT_EQ(records[1].value, R"({"n": 2})");
  EXPECT_TRUE(m_relay->running());
  EXPECT_NE(m_relay->log().find("table columns changed mid-stream"), std::string::npos);
}

TEST_F(relay_records, metrics_endpoint_serves_the_spec_metrics_and_promtool_accepts_them) {
  const auto topic = unique_name("metrics");
  const auto t = create_table("ob_metrics");
  start_relay(config(tables({t})));
  pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
          "', 'k' || g, 'e', '{}' FROM generate_series(1, 25) g");
  ASSERT_EQ(kafka_consume(topic, 25, 60s).size(), 25U);
  ASSERT_GT(metrics_port(), 0);
  httplib::Client client("127.0.0.1", metrics_port());
  std::string body;
  ASSERT_TRUE(wait_until(
      [&] {
        auto res = client.Get("/metrics");
        body = res ? res->body : "";
        return body.find("table=\"public." + t + "\",topic=\"" + topic + "\"} 25") != std::string::npos;
      },
      30s, 100ms))
      << body;
  for (const char* name :
       {"outbox_relay_events_published_total", "outbox_relay_transactions_total", "outbox_relay_inflight_messages",
        "outbox_relay_inflight_bytes", "outbox_relay_confirmed_lsn", "outbox_relay_replication_lag_bytes",
        "outbox_relay_slot_retained_wal_bytes", "outbox_relay_commit_to_ack_seconds_bucket", "outbox_relay_leader 1",
        "outbox_relay_up 1", "outbox_relay_publish_errors_total", "process_resident_memory_bytes",
        "process_cpu_seconds_total"}) {
    EXPECT_NE(body.find(name), std::string::npos) << name << " missing:\n" << body;
  }
  const std::string path = m_dir + "/metrics.txt";
  std::ofstream(path) << body;
  const auto check = run_command({"/bin/sh", "-c", "promtool check metrics < " + path}, 30s);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  auto ready = client.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;
  EXPECT_EQ(body.find(std::getenv("OUTBOX_PG_PASSWORD")), std::string::npos) << "password in metrics";
}

}  // namespace
}  // namespace outbox::test
