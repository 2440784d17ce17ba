// The deployments where a relay could lose or duplicate events without a word: partitioned outboxes, rows written
// before the first start, a slot that disappears, DDL while streaming, non-transactional messages, records Kafka
// refuses. Each test fails on a relay that only handles the plain path.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"
#include "outbox/test/stream_check.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <string>
#include <vector>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class relay_gaps : public relay_fixture {
 protected:
  /// Inserts `n` rows for `topic` with ids `<prefix>-<i>` and keys `k<i % keys>`, `per_tx` rows per transaction;
  /// returns them in commit order.
  std::vector<expected_event> insert_rows(const std::string& table, const std::string& topic, const std::string& prefix,
                                          int n, int keys = 5, int per_tx = 10, const std::string& extra_cols = "",
                                          const std::string& extra_vals = "") {
    std::vector<expected_event> out;
    for (int start = 0; start < n; start += per_tx) {
      std::string sql =
          "INSERT INTO " + table + " (id, aggregate_type, aggregate_id, event_type, payload" + extra_cols + ") VALUES ";
      for (int i = start; i < std::min(n, start + per_tx); ++i) {
        const std::string id = uuid_for(prefix, i);
        const std::string key = "k" + std::to_string(i % keys);
        sql += (i > start ? ", " : "") + std::string("('") + id + "', '" + topic + "', '" + key +
               "', 'e', '{\"i\": " + std::to_string(i) + "}'" + extra_vals + ")";
        out.push_back({key, id});
      }
      pg_exec(sql);
    }
    return out;
  }

  /// A uuid that encodes `prefix` and `i`, so ids stay unique across a test's batches.
  static std::string uuid_for(const std::string& prefix, int i) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%08x-0000-4000-8000-%012x", static_cast<unsigned>(std::hash<std::string>{}(prefix)),
                  static_cast<unsigned>(i));
    return buf;
  }

  std::string slot_confirmed() {
    return pg_scalar("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = '" + m_slot + "'");
  }
};

TEST_F(relay_gaps, a_partitioned_outbox_publishes_every_partition_under_the_parents_name) {
  const auto topic = unique_name("parts");
  const auto t = create_table(
      "ob_parts",
      "id uuid NOT NULL, aggregate_type text NOT NULL, aggregate_id text NOT NULL, event_type text NOT NULL, "
      "payload jsonb, headers jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now(), "
      "PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at");
  pg_exec("CREATE TABLE " + t + "_jan PARTITION OF " + t + " FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')");
  pg_exec("CREATE TABLE " + t + "_feb PARTITION OF " + t + " FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')");
  start_relay(config(tables({t})));

  auto expected = insert_rows(t, topic, "jan", 20, 4, 5, ", created_at", ", '2026-01-15'");
  const auto feb = insert_rows(t, topic, "feb", 20, 4, 5, ", created_at", ", '2026-02-15'");
  expected.insert(expected.end(), feb.begin(), feb.end());
  // A partition attached while the relay streams: its rows come under the parent's name too.
  pg_exec("CREATE TABLE " + t + "_mar (LIKE " + t + " INCLUDING DEFAULTS)");
  pg_exec("ALTER TABLE " + t + " ATTACH PARTITION " + t + "_mar FOR VALUES FROM ('2026-03-01') TO ('2026-04-01')");
  const auto mar = insert_rows(t, topic, "mar", 20, 4, 5, ", created_at", ", '2026-03-15'");
  expected.insert(expected.end(), mar.begin(), mar.end());

  const auto records = kafka_consume(topic, expected.size(), 60s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail;
  for (const auto& r : records) EXPECT_EQ(r.header("outbox_table"), "public." + t);
  EXPECT_EQ(pg_scalar("SELECT pubviaroot FROM pg_publication WHERE pubname = '" + m_publication + "'"), "t");
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_gaps, a_publication_that_names_partitions_by_their_own_names_is_refused_with_the_fix) {
  const auto t = create_table(
      "ob_leafpub",
      "id uuid NOT NULL, aggregate_type text NOT NULL, aggregate_id text NOT NULL, event_type text NOT NULL, "
      "payload jsonb, headers jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now(), "
      "PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at");
  pg_exec("CREATE TABLE " + t + "_a PARTITION OF " + t + " FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')");
  pg_exec("CREATE PUBLICATION " + m_publication + " FOR TABLE " + t + " WITH (publish = 'insert')");
  launch_relay(config(tables({t})));
  EXPECT_EQ(m_relay->wait(60s), 1) << m_relay->log();
  EXPECT_THAT(m_relay->log(), HasSubstr("publish_via_partition_root = true"));
}

TEST_F(relay_gaps, rows_written_before_the_first_start_are_published_once_then_the_stream) {
  const auto topic = unique_name("before");
  const auto t = create_table("ob_before");
  auto expected = insert_rows(t, topic, "old", 100, 7, 10);
  start_relay(config(tables({t})));
  const auto fresh = insert_rows(t, topic, "new", 30, 7, 3);
  expected.insert(expected.end(), fresh.begin(), fresh.end());
  const auto records = kafka_consume(topic, expected.size(), 60s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail;
  EXPECT_THAT(m_relay->log(), HasSubstr("backfill finished"));
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
  EXPECT_EQ(kafka_record_count(topic), static_cast<long long>(expected.size())) << "nothing twice";
  EXPECT_EQ(pg_scalar("SELECT backfill FROM outbox_relay_state WHERE slot_name = '" + m_slot + "'"), "done");
}

TEST_F(relay_gaps, with_delete_after_publish_the_backfill_is_exactly_the_unpublished_backlog) {
  const auto topic = unique_name("backlog");
  const auto t = create_table("ob_backlog");
  auto expected = insert_rows(t, topic, "old", 100, 7, 10);
  start_relay(config("    - name: public." + t + "\n      delete_after_publish: true\n"));
  const auto fresh = insert_rows(t, topic, "new", 20, 7, 4);
  expected.insert(expected.end(), fresh.begin(), fresh.end());
  const auto records = kafka_consume(topic, expected.size(), 60s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail;
  EXPECT_TRUE(wait_until([&] { return pg_scalar("SELECT count(*) FROM " + t) == "0"; }, 30s))
      << "published rows are deleted, backfilled ones too";
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_gaps, initial_backfill_none_starts_with_the_slot) {
  const auto topic = unique_name("nobackfill");
  const auto t = create_table("ob_nobackfill");
  insert_rows(t, topic, "old", 10);
  start_relay(config(tables({t}), "  initial_backfill: none\n"));
  const auto fresh = insert_rows(t, topic, "new", 10);
  const auto records = kafka_consume(topic, fresh.size(), 60s);
  EXPECT_TRUE(check_stream(records, fresh).ok()) << check_stream(records, fresh).detail;
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_gaps, a_slot_dropped_while_the_relay_was_stopped_is_never_silently_recreated) {
  const auto topic = unique_name("lostslot");
  const auto t = create_table("ob_lostslot");
  start_relay(config(tables({t})));
  auto expected = insert_rows(t, topic, "first", 10);
  ASSERT_EQ(kafka_consume(topic, expected.size(), 60s).size(), expected.size());
  ASSERT_EQ(m_relay->stop(SIGTERM, 30s), 0);

  pg_drop_slot(m_slot);
  const auto missed = insert_rows(t, topic, "missed", 20);
  expected.insert(expected.end(), missed.begin(), missed.end());

  m_relay->start();
  EXPECT_EQ(m_relay->wait(60s), 1) << m_relay->log();
  const std::string log = m_relay->log();
  EXPECT_THAT(log, HasSubstr("replication slot " + m_slot + " is gone"));
  EXPECT_THAT(log, HasSubstr("--recreate-slot"));
  EXPECT_THAT(log, HasSubstr("set source.slot to a new name"));
  EXPECT_EQ(pg_scalar("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '" + m_slot + "'"), "0")
      << "the relay must not make a new slot by itself";

  restart_relay(std::vector<std::string>{"--recreate-slot"});
  const auto later = insert_rows(t, topic, "later", 5);
  expected.insert(expected.end(), later.begin(), later.end());
  const auto records = consume_until_complete(topic, expected, 60s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok(true)) << v.detail;
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_gaps, a_state_row_from_another_postgresql_system_stops_the_start_with_the_way_out) {
  const auto topic = unique_name("othersys");
  const auto t = create_table("ob_othersys");
  start_relay(config(tables({t})));
  const auto expected = insert_rows(t, topic, "first", 10);
  ASSERT_EQ(kafka_consume(topic, expected.size(), 60s).size(), expected.size());
  ASSERT_EQ(m_relay->stop(SIGTERM, 30s), 0);

  // What a restore of this database into another cluster looks like: the relay's state row names the old system.
  pg_exec("UPDATE outbox_relay_state SET system_identifier = '1' WHERE slot_name = '" + m_slot + "'");
  const std::string confirmed = slot_confirmed();
  m_relay->start();
  EXPECT_EQ(m_relay->wait(60s), 1) << m_relay->log();
  const std::string log = m_relay->log();
  EXPECT_THAT(log, HasSubstr("on PostgreSQL system 1, but this server is system"));
  EXPECT_THAT(log, HasSubstr("--recreate-slot"));
  EXPECT_EQ(slot_confirmed(), confirmed) << "a refused start confirms nothing";
}

TEST_F(relay_gaps, a_table_recreated_while_streaming_halts_the_relay_and_backfill_table_publishes_its_rows) {
  const auto topic = unique_name("swap");
  const auto t = create_table("ob_swap");
  start_relay(config(tables({t})));
  auto expected = insert_rows(t, topic, "before", 5);
  ASSERT_EQ(kafka_consume(topic, expected.size(), 60s).size(), expected.size());

  // A "swap" migration: the new table is not in the FOR TABLE publication.
  m_tables.push_back(t + "_old");
  pg_exec("BEGIN; ALTER TABLE " + t + " RENAME TO " + t + "_old; CREATE TABLE " + t + " (LIKE " + t +
          "_old INCLUDING ALL); COMMIT;");
  const auto after = insert_rows(t, topic, "after", 5);
  expected.insert(expected.end(), after.begin(), after.end());

  ASSERT_TRUE(m_relay->wait_for_log("halted", 60s)) << m_relay->log();
  EXPECT_THAT(m_relay->log(), HasSubstr("is a new table"));
  EXPECT_THAT(m_relay->log(), HasSubstr("now called " + t + "_old"));
  EXPECT_TRUE(wait_until([&] { return metric("outbox_relay_halted") == 1.0; }, 10s));
  const auto [status, body] = http_get("/readyz");
  EXPECT_EQ(status, 503);
  EXPECT_THAT(body, HasSubstr("halted"));
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 1) << "a halted relay stops with 1";

  pg_exec("ALTER PUBLICATION " + m_publication + " ADD TABLE " + t);
  pg_exec("ALTER PUBLICATION " + m_publication + " DROP TABLE " + t + "_old");
  restart_relay(std::vector<std::string>{"--backfill-table", "public." + t});
  const auto records = consume_until_complete(topic, expected, 60s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok(true)) << v.detail;
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_gaps, a_renamed_column_halts_before_its_first_row_and_the_new_mapping_goes_on_from_there) {
  const auto topic = unique_name("rename");
  const auto t = create_table("ob_rename");
  start_relay(config(tables({t})));
  auto expected = insert_rows(t, topic, "before", 6, 3, 3);
  ASSERT_EQ(kafka_consume(topic, expected.size(), 60s).size(), expected.size());
  pg_exec("ALTER TABLE " + t + " RENAME COLUMN aggregate_id TO account_id");
  for (int i = 0; i < 4; ++i) {
    pg_exec("INSERT INTO " + t + " (id, aggregate_type, account_id, event_type, payload) VALUES ('" +
            uuid_for("after", i) + "', '" + topic + "', 'k" + std::to_string(i % 3) + "', 'e', '{}')");
    expected.push_back({"k" + std::to_string(i % 3), uuid_for("after", i)});
  }
  ASSERT_TRUE(m_relay->wait_for_log("halted", 60s)) << m_relay->log();
  EXPECT_THAT(m_relay->log(), HasSubstr("has no column \\\"aggregate_id\\\""));
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 1);
  EXPECT_EQ(kafka_record_count(topic), 6) << "nothing of the renamed table was published with the old mapping";

  // The new mapping: the restart begins right at the rename, so the old name is never needed again.
  write_config(config("    - name: public." + t + "\n      columns: {aggregate_id: account_id}\n"));
  restart_relay();
  const auto records = kafka_consume(topic, expected.size(), 60s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail;
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_gaps, a_non_transactional_message_of_a_rolled_back_transaction_is_never_published) {
  const auto topic = unique_name("nontx");
  const auto prefix = unique_name("app");
  start_relay(config("", "  logical_messages: {prefix: " + prefix + "}\n"));
  auto envelope = [&](const std::string& id) {
    return "'{\"id\": \"" + id + "\", \"aggregate_type\": \"" + topic +
           "\", \"aggregate_id\": \"k\", \"event_type\": \"payment_captured\", \"payload\": {\"amount\": 12.50}}'";
  };
  pg_exec("BEGIN; SELECT pg_logical_emit_message(false, '" + prefix + "', " + envelope("never") + "); ROLLBACK;");
  pg_exec("SELECT pg_logical_emit_message(false, '" + prefix + "', " + envelope("also-never") + ")");
  pg_exec("BEGIN; SELECT pg_logical_emit_message(true, '" + prefix + "', " + envelope("real") + "); COMMIT;");
  const auto records = kafka_consume(topic, 1, 60s);
  ASSERT_EQ(records.size(), 1U);
  EXPECT_EQ(records[0].header("event_id"), "real");
  EXPECT_EQ(records[0].value, R"({"amount": 12.50})") << "the payload keeps its exact bytes";
  EXPECT_TRUE(wait_until(
      [&] {
        return metric("outbox_relay_invalid_records_total{reason=\"non_transactional_message\",action=\"skipped\"}") ==
               2.0;
      },
      10s));
  EXPECT_THAT(m_relay->log(), HasSubstr("pg_logical_emit_message(true"));
  EXPECT_EQ(kafka_record_count(topic), 1);
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

/// A topic that takes at most 512 KiB per record, and a key whose second event is 700 KiB.
class relay_refused_record : public relay_gaps {
 protected:
  void SetUp() override {
    relay_gaps::SetUp();
    m_topic = unique_name("limited");
    kafka_create_topic(m_topic, 1, {{"max.message.bytes", "524288"}});
    m_table = create_table("ob_limited");
  }

  /// A1 small, A2 700 KiB, A3 small, each in its own transaction, all key "acct-1".
  void insert_run() {
    for (int i = 1; i <= 3; ++i) {
      const std::string payload = i == 2 ? "jsonb_build_object('blob', repeat('x', 700 * 1024))" : "'{}'";
      pg_exec("INSERT INTO " + m_table + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('" +
              uuid_for("run", i) + "', '" + m_topic + "', 'acct-1', 'e', " + payload + ")");
    }
    m_after = pg_scalar("SELECT pg_current_wal_insert_lsn()::text");
  }

  std::string m_topic;
  std::string m_table;
  std::string m_after;
};

TEST_F(relay_refused_record, halt_stops_before_the_record_and_the_key_never_shows_a_gap) {
  start_relay(config(tables({m_table})));
  insert_run();
  ASSERT_TRUE(m_relay->wait_for_log("halted", 60s)) << m_relay->log();
  EXPECT_THAT(m_relay->log(), HasSubstr("too_large"));
  EXPECT_THAT(m_relay->log(), HasSubstr("max.message.bytes (524288)"));
  const auto records = kafka_consume(m_topic, 3, 5s);
  ASSERT_EQ(records.size(), 1U) << "only A1; A3 must not overtake A2";
  EXPECT_EQ(records[0].header("event_id"), uuid_for("run", 1));
  EXPECT_TRUE(wait_until([&] { return metric("outbox_relay_halted") == 1.0; }, 10s));
  EXPECT_EQ(metric("outbox_relay_invalid_records_total{reason=\"too_large\",action=\"halted\"}"), 1.0);
  EXPECT_EQ(pg_scalar("SELECT confirmed_flush_lsn < '" + m_after +
                      "'::pg_lsn FROM pg_replication_slots WHERE "
                      "slot_name = '" +
                      m_slot + "'"),
            "t");
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 1);
  // A restart meets the same record again and halts again: it is never skipped.
  m_relay->start();
  EXPECT_TRUE(m_relay->wait_for_log("too_large", 60s));
  EXPECT_EQ(kafka_record_count(m_topic), 1);
}

TEST_F(relay_refused_record, dead_letter_lets_the_key_go_on_and_keeps_the_record) {
  const auto dlq = unique_name("relaydlq");
  start_relay(
      config(tables({m_table}), "", "", "  on_invalid_record: dead_letter\n  dead_letter_topic: " + dlq + "\n"));
  insert_run();
  const auto records = kafka_consume(m_topic, 2, 60s);
  ASSERT_EQ(records.size(), 2U);
  EXPECT_EQ(records[0].header("event_id"), uuid_for("run", 1));
  EXPECT_EQ(records[1].header("event_id"), uuid_for("run", 3));
  const auto dead = kafka_consume(dlq, 1, 60s);
  ASSERT_EQ(dead.size(), 1U);
  EXPECT_EQ(dead[0].header("event_id"), uuid_for("run", 2));
  EXPECT_EQ(dead[0].header("outbox_dlq_reason"), "too_large");
  EXPECT_EQ(dead[0].header("outbox_dlq_table"), "public." + m_table);
  EXPECT_EQ(dead[0].header("outbox_dlq_topic"), m_topic);
  EXPECT_EQ(dead[0].header("outbox_dlq_value_kind"), "record");
  EXPECT_EQ(dead[0].header("outbox_dlq_truncated"), "true");
  EXPECT_TRUE(dead[0].header("outbox_dlq_lsn").has_value());
  EXPECT_TRUE(dead[0].header("outbox_dlq_xid").has_value());
  EXPECT_EQ(dead[0].key, "acct-1");
  EXPECT_TRUE(wait_until(
      [&] {
        return metric("outbox_relay_invalid_records_total{reason=\"too_large\",action=\"dead_lettered\"}") == 1.0;
      },
      10s));
  EXPECT_EQ(metric("outbox_relay_halted"), 0.0);
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_gaps, a_bad_row_is_dead_lettered_with_the_raw_row_and_the_stream_goes_on) {
  const auto topic = unique_name("badrow");
  const auto dlq = unique_name("relaydlq");
  const auto t = create_table("ob_badrow");
  start_relay(config(tables({t}), "", "", "  on_invalid_record: dead_letter\n  dead_letter_topic: " + dlq + "\n"));
  pg_exec("INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type, payload, headers) VALUES ('" +
          uuid_for("bad", 1) + "', 'bad topic!', 'k', 'e', '{}', '{}'), ('" + uuid_for("bad", 2) + "', '" + topic +
          "', 'k', 'e', '{}', '{\"outbox_lsn\": \"forged\"}'), ('" + uuid_for("bad", 3) + "', '" + topic +
          "', 'k', 'e', '{\"ok\": true}', '{}')");
  const auto good = kafka_consume(topic, 1, 60s);
  ASSERT_EQ(good.size(), 1U);
  EXPECT_EQ(good[0].header("event_id"), uuid_for("bad", 3));
  const auto dead = kafka_consume(dlq, 2, 60s);
  ASSERT_EQ(dead.size(), 2U);
  EXPECT_EQ(dead[0].header("outbox_dlq_reason"), "bad_topic");
  EXPECT_EQ(dead[0].header("outbox_dlq_value_kind"), "row");
  EXPECT_THAT(dead[0].value.value_or(""), HasSubstr("\"aggregate_type\":\"bad topic!\""));
  EXPECT_EQ(dead[0].header("event_id"), uuid_for("bad", 1));
  EXPECT_EQ(dead[1].header("outbox_dlq_reason"), "reserved_header");
  EXPECT_EQ(dead[1].header("outbox_dlq_column"), "headers");
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_gaps, a_bad_row_of_the_backfill_is_dead_lettered_naming_its_table) {
  // Rows written before the first start go through the backfill, whose dead letters name the table as the
  // stream's do (the name once dangled there: a use after free AddressSanitizer reports).
  const auto topic = unique_name("bfbad");
  const auto dlq = unique_name("relaydlq");
  const auto t = create_table("ob_backfill_dead_letter_with_a_long_name");
  pg_exec("INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type, payload, headers) VALUES ('" +
          uuid_for("bfbad", 1) + "', 'bad topic!', 'k', 'e', '{}', '{}'), ('" + uuid_for("bfbad", 2) + "', '" + topic +
          "', 'k', 'e', '{\"ok\": true}', '{}')");
  start_relay(config(tables({t}), "", "", "  on_invalid_record: dead_letter\n  dead_letter_topic: " + dlq + "\n"));
  ASSERT_EQ(kafka_consume(topic, 1, 60s).size(), 1U) << m_relay->log();
  const auto dead = kafka_consume(dlq, 1, 60s);
  ASSERT_EQ(dead.size(), 1U) << m_relay->log();
  EXPECT_EQ(dead[0].header("outbox_dlq_reason"), "bad_topic");
  EXPECT_EQ(dead[0].header("outbox_dlq_table"), "public." + t);
  EXPECT_EQ(dead[0].header("event_id"), uuid_for("bfbad", 1));
  EXPECT_THAT(m_relay->log(), HasSubstr("backfill finished"));
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_gaps, outboxctl_lists_the_relays_dead_letters_and_replays_a_record_once_its_topic_takes_it) {
  // A record over its topic's max.message.bytes and a row with an impossible topic, both dead-lettered. Once the
  // topic takes bigger records, `outboxctl dlq replay` sends the record there as the relay built it; the row is not
  // a record and is skipped with the reason.
  const auto topic = unique_name("small");
  kafka_create_topic(topic, 1, {{"max.message.bytes", "4096"}});
  const auto dlq = unique_name("relaydlq");
  const auto t = create_table("ob_replay");
  start_relay(config(tables({t}), "", "", "  on_invalid_record: dead_letter\n  dead_letter_topic: " + dlq + "\n"));
  pg_exec("INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('" +
          uuid_for("big", 1) + "', '" + topic + "', 'acct-9', 'e', jsonb_build_object('blob', repeat('x', 8192))), ('" +
          uuid_for("big", 2) + "', 'no such topic!', 'acct-9', 'e', '{}')");
  ASSERT_EQ(kafka_consume(dlq, 2, 60s).size(), 2U) << m_relay->log();
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
  const auto& brokers = require_services().kafka_brokers;

  const auto listed = run_command({OUTBOX_OUTBOXCTL_BIN, "dlq", "list", "--brokers", brokers, "--topic", dlq, "--json"},
                                  60s);
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  const auto records = nlohmann::json::parse(listed.output.substr(listed.output.find('[')));
  ASSERT_EQ(records.size(), 2U) << listed.output;
  for (const auto& r : records) {
    EXPECT_EQ(r["format"], "relay");
    EXPECT_EQ(r["source_table"], "public." + t);
    EXPECT_TRUE(r["source_lsn"].is_string());
  }
  EXPECT_EQ(records[0]["error_class"], "too_large");
  EXPECT_EQ(records[0]["value_kind"], "record");
  EXPECT_EQ(records[0]["original_topic"], topic);
  EXPECT_EQ(records[0]["truncated"], false);
  EXPECT_EQ(records[1]["error_class"], "bad_topic");
  EXPECT_EQ(records[1]["value_kind"], "row");
  const auto table = run_command({OUTBOX_OUTBOXCTL_BIN, "dlq", "list", "--brokers", brokers, "--topic", dlq}, 60s);
  EXPECT_THAT(table.output, HasSubstr("public." + t + "@"));
  EXPECT_THAT(table.output, HasSubstr("too_large"));

  kafka_alter_topic_config(topic, {{"max.message.bytes", "1048576"}});
  const auto replayed = run_command({OUTBOX_OUTBOXCTL_BIN, "dlq", "replay", "--brokers", brokers, "--topic", dlq}, 120s);
  EXPECT_EQ(replayed.exit_code, 1) << "one dead letter was skipped\n" << replayed.output;
  EXPECT_THAT(replayed.output, HasSubstr("replayed 1, skipped 1"));
  EXPECT_THAT(replayed.output, HasSubstr("is not a record"));
  const auto arrived = kafka_consume(topic, 1, 60s);
  ASSERT_EQ(arrived.size(), 1U);
  EXPECT_EQ(arrived[0].key, "acct-9");
  EXPECT_EQ(arrived[0].header("event_id"), uuid_for("big", 1));
  EXPECT_EQ(arrived[0].header("outbox_table"), "public." + t);
  EXPECT_FALSE(arrived[0].header("outbox_dlq_reason").has_value());
  EXPECT_FALSE(arrived[0].header("outbox_dlq_value_kind").has_value());
  EXPECT_EQ(arrived[0].header("dlq_replay_count"), "1");
  EXPECT_THAT(arrived[0].value.value_or(""), HasSubstr(std::string(8192, 'x')));
}

TEST_F(relay_gaps, a_bad_row_halts_by_default_and_says_why) {
  const auto t = create_table("ob_badhalt");
  start_relay(config(tables({t})));
  pg_exec("INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('" + uuid_for("h", 1) +
          "', 'Order Payment', 'k', 'e', '{}')");
  ASSERT_TRUE(m_relay->wait_for_log("halted", 60s)) << m_relay->log();
  EXPECT_THAT(m_relay->log(), HasSubstr("\\\"Order Payment\\\""));
  EXPECT_THAT(m_relay->log(), HasSubstr("on_invalid_record: dead_letter"));
  EXPECT_TRUE(wait_until([&] { return http_get("/readyz").first == 503; }, 10s));
  EXPECT_EQ(http_get("/healthz").first, 200) << "alive, so its metrics can be scraped";
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 1);
}

}  // namespace
}  // namespace outbox::test
