// Malformed input tried on purpose, end to end: payloads of every type at the topic's size limit and one byte over,
// headers objects past the limits, keys PostgreSQL will not store, envelopes that are not JSON. Each gets its
// documented outcome, and the good rows around it arrive once each, in order per key.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/relay_fixture.hpp"
#include "outbox/test/stream_check.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <csignal>
#include <set>
#include <string>
#include <vector>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

/// The topic limit every size test uses, and the 512 bytes the relay keeps free of it for Kafka's framing.
constexpr int k_topic_limit = 16384;
constexpr int k_framing = 512;

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : bytes) {
    out += digits[c >> 4U];
    out += digits[c & 15U];
  }
  return out;
}

class malformed_input : public relay_fixture {
 protected:
  /// A table of the default shape with `payload` of type `payload_type`.
  std::string payload_table(const std::string& payload_type) {
    return create_table("ob_" + payload_type,
                        "id text PRIMARY KEY, aggregate_type text NOT NULL, aggregate_id text NOT NULL, "
                        "event_type text NOT NULL, payload " +
                            payload_type + ", headers jsonb NOT NULL DEFAULT '{}'::jsonb");
  }

  /// Inserts one small row `id` for `topic`, key `key`, in its own transaction.
  void insert_small(const std::string& table, const std::string& topic, const std::string& key, const std::string& id,
                    const std::string& payload = "'{\"ok\": true}'") {
    pg_exec("INSERT INTO " + table + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('" + id +
            "', '" + topic + "', '" + key + "', 'e', " + payload + ")");
  }

  /// Inserts row `id` whose record (key, value and every header, as the relay counts them) has exactly `bytes`
  /// bytes, its payload incompressible filler of `payload_type`. Returns the payload as stored, hex for bytea.
  std::string insert_sized(const std::string& table, const std::string& payload_type, const std::string& topic,
                           const std::string& key, const std::string& id, int bytes) {
    return pg_scalar(sized_insert(table, payload_type, topic, key, id, bytes));
  }

  /// The INSERT of insert_sized, returning the payload.
  static std::string sized_insert(const std::string& table, const std::string& payload_type, const std::string& topic,
                                  const std::string& key, const std::string& id, int bytes) {
    // The headers the relay adds: event_id, event_type ("e"), aggregate_type, outbox_lsn, outbox_xid,
    // outbox_commit_ts_ms (13 digits), outbox_table. The xid and the LSN's width are read inside the insert's own
    // transaction; the commit LSN has the width of the insert position unless WAL crosses a 4 GiB boundary.
    const std::string fixed = std::to_string(key.size() + 8 + id.size() + 10 + 1 + 14 + topic.size() + 10 + 9 + 10 +
                                             19 + 13 + 12 + std::string("public.").size() + table.size());
    const std::string room = "(" + std::to_string(bytes) + " - " + fixed +
                             " - length(split_part(pg_current_wal_insert_lsn()::text, '/', 1))"
                             " - length((pg_current_xact_id()::text::bigint % 4294967296)::text))";
    auto filler = [&](const std::string& n) {
      return "(SELECT left(string_agg(md5('" + id + "' || i), ''), " + n + ") FROM generate_series(1, " + n +
             " / 32 + 1) AS i)";
    };
    std::string value;
    std::string back = "payload::text";
    if (payload_type == "jsonb") {
      value = "to_jsonb(" + filler(room + " - 2") + ")";
    } else if (payload_type == "json") {
      value = "to_json(" + filler(room + " - 2") + ")";
    } else if (payload_type == "text") {
      value = filler(room);
    } else {
      value = "decode(" + filler("2 * " + room) + ", 'hex')";
      back = "encode(payload, 'hex')";
    }
    return "INSERT INTO " + table + " (id, aggregate_type, aggregate_id, event_type, payload) SELECT '" + id + "', '" +
           topic + "', '" + key + "', 'e', " + value + " RETURNING " + back;
  }

  std::string dead_letter_sink(const std::string& dlq) const {
    return "  on_invalid_record: dead_letter\n  dead_letter_topic: " + dlq + "\n";
  }

  /// The distinct event ids of `records`.
  static std::set<std::string> distinct_ids(const std::vector<consumed_record>& records) {
    std::set<std::string> out;
    for (const auto& r : records) out.insert(r.header("event_id").value_or("?"));
    return out;
  }

  /// The first record with event id `id`, or nullptr.
  static const consumed_record* first_with_id(const std::vector<consumed_record>& records, const std::string& id) {
    for (const auto& r : records) {
      if (r.header("event_id") == id) return &r;
    }
    return nullptr;
  }

  /// The event ids of `records`, in the order they were read.
  static std::vector<std::string> ids(const std::vector<consumed_record>& records) {
    std::vector<std::string> out;
    for (const auto& r : records) out.push_back(r.header("event_id").value_or("?"));
    return out;
  }
};

TEST_F(malformed_input,
       every_payload_type_at_the_topic_limit_is_published_byte_exact_and_one_byte_over_is_dead_lettered) {
  const auto topic = unique_name("limit");
  kafka_create_topic(topic, 1, {{"max.message.bytes", std::to_string(k_topic_limit)}});
  const auto dlq = unique_name("relaydlq");
  const std::vector<std::string> types{"jsonb", "json", "text", "bytea"};
  std::vector<std::string> names;
  for (const auto& t : types) names.push_back(payload_table(t));
  start_relay(config(tables(names), "", "", dead_letter_sink(dlq)));

  std::vector<expected_event> expected;
  std::vector<std::string> at_limit_payloads;
  std::set<std::string> over_ids;
  for (std::size_t i = 0; i < types.size(); ++i) {
    const std::string key = "acct-" + types[i];
    const std::string p = types[i] + "-";
    const std::string small = types[i] == "bytea" ? "'\\x00ff00'::bytea" : "'{\"ok\": true}'";
    insert_small(names[i], topic, key, p + "before", small);
    at_limit_payloads.push_back(
        insert_sized(names[i], types[i], topic, key, p + "at-limit", k_topic_limit - k_framing));
    insert_sized(names[i], types[i], topic, key, p + "one-over", k_topic_limit - k_framing + 1);
    insert_small(names[i], topic, key, p + "after", small);
    for (const char* what : {"before", "at-limit", "after"}) expected.push_back({key, p + what});
    over_ids.insert(p + "one-over");
  }

  // Records that each fit may be refused as one batch; the relay then sends them again in smaller batches, so a
  // record may come twice (at least once), never out of order per key.
  const auto records = kafka_consume_until(
      topic, [&](const auto& rs) { return distinct_ids(rs).size() >= 12; }, 60s);
  const auto verdict = check_stream(records, expected);
  EXPECT_TRUE(verdict.ok(true)) << verdict.detail << "\n" << m_relay->log();
  for (std::size_t i = 0; i < types.size(); ++i) {
    const auto* at = first_with_id(records, types[i] + "-at-limit");
    const auto* before = first_with_id(records, types[i] + "-before");
    ASSERT_NE(at, nullptr) << types[i];
    ASSERT_NE(before, nullptr) << types[i];
    const std::string value = at->value.value_or("");
    EXPECT_EQ(types[i] == "bytea" ? to_hex(value) : value, at_limit_payloads[i]) << types[i] << " byte-exact";
    std::size_t size = at->key.value_or("").size() + value.size();
    for (const auto& [name, v] : at->headers) size += name.size() + v.size();
    EXPECT_EQ(size, static_cast<std::size_t>(k_topic_limit - k_framing)) << types[i] << ": the record is at the limit";
    EXPECT_EQ(before->value, types[i] == "bytea" ? std::string("\0\xff\0", 3) : "{\"ok\": true}")
        << types[i] << ": NUL and 0xFF bytes of a bytea payload are published raw";
  }

  const auto dead = kafka_consume_until(
      dlq, [&](const auto& rs) { return distinct_ids(rs) == over_ids; }, 60s);
  EXPECT_EQ(distinct_ids(dead), over_ids);
  for (const auto& d : dead) {
    EXPECT_EQ(d.header("outbox_dlq_reason"), "too_large");
    EXPECT_EQ(d.header("outbox_dlq_value_kind"), "record");
    EXPECT_EQ(d.header("outbox_dlq_topic"), topic);
    EXPECT_THAT(d.header("outbox_dlq_error").value_or(""), HasSubstr("max.message.bytes (16384)"));
  }
  EXPECT_EQ(metric("outbox_relay_halted"), 0.0);
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(malformed_input, one_byte_over_the_limit_halts_by_default_after_the_row_at_the_limit_is_out) {
  const auto topic = unique_name("limit");
  kafka_create_topic(topic, 1, {{"max.message.bytes", std::to_string(k_topic_limit)}});
  const auto t = payload_table("jsonb");
  start_relay(config(tables({t})));
  insert_small(t, topic, "acct-1", "before");
  insert_sized(t, "jsonb", topic, "acct-1", "at-limit", k_topic_limit - k_framing);
  insert_sized(t, "jsonb", topic, "acct-1", "one-over", k_topic_limit - k_framing + 1);
  insert_small(t, topic, "acct-1", "after");
  ASSERT_TRUE(m_relay->wait_for_log("halted", 60s)) << m_relay->log();
  EXPECT_THAT(m_relay->log(), HasSubstr("too_large"));
  EXPECT_THAT(m_relay->log(), HasSubstr("has " + std::to_string(k_topic_limit - k_framing + 1) + " bytes"));
  const auto records = kafka_consume(topic, 3, 5s);
  EXPECT_EQ(ids(records), (std::vector<std::string>{"before", "at-limit"})) << "\"after\" never overtakes";
  EXPECT_TRUE(wait_until([&] { return metric("outbox_relay_halted") == 1.0; }, 10s));
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 1);
}

TEST_F(malformed_input, records_at_the_limit_in_one_transaction_are_each_published_though_together_they_are_not) {
  const auto topic = unique_name("limit");
  kafka_create_topic(topic, 1, {{"max.message.bytes", std::to_string(k_topic_limit)}});
  const auto t = payload_table("jsonb");
  start_relay(config(tables({t})));
  std::string sql = "BEGIN; ";
  std::vector<std::string> expected;
  for (int i = 0; i < 4; ++i) {
    expected.push_back("at-limit-" + std::to_string(i));
    sql += sized_insert(t, "jsonb", topic, "acct-1", expected.back(), k_topic_limit - k_framing) + "; ";
  }
  pg_exec(sql + "COMMIT;");
  // Kafka refuses them as one batch; the relay sends them again in batches under the limit (each at least once).
  const auto records = kafka_consume_until(
      topic, [&](const auto& rs) { return distinct_ids(rs).size() >= 4; }, 60s);
  std::vector<expected_event> in_order;
  for (const auto& id : expected) in_order.push_back({"acct-1", id});
  const auto verdict = check_stream(records, in_order);
  EXPECT_TRUE(verdict.ok(true)) << verdict.detail << "\n" << m_relay->log();
  EXPECT_EQ(metric("outbox_relay_halted"), 0.0);
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(malformed_input, headers_objects_are_published_whole_until_they_pass_the_limit_and_non_objects_are_refused) {
  const auto big = unique_name("hdrs");
  const auto small = unique_name("hdrlimit");
  kafka_create_topic(small, 1, {{"max.message.bytes", std::to_string(k_topic_limit)}});
  const auto dlq = unique_name("relaydlq");
  kafka_create_topic(dlq, 1);  // one partition: the dead letters in stream order
  const auto t = payload_table("jsonb");
  start_relay(config(tables({t}), "", "", dead_letter_sink(dlq)));
  auto insert = [&](const std::string& topic, const std::string& id, const std::string& headers) {
    pg_exec("INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type, payload, headers) VALUES ('" + id +
            "', '" + topic + "', 'k', 'e', '{}', " + headers + ")");
  };
  insert(big, "h-before", "'{}'");
  // 5,000 headers, and one header of 64 KiB: Kafka has no limit of its own on either.
  insert(big, "h-many", "(SELECT jsonb_object_agg('h' || i, i) FROM generate_series(1, 5000) AS i)");
  insert(big, "h-long", "jsonb_build_object('trace', repeat('t', 65536))");
  insert(small, "h-past-limit", "jsonb_build_object('trace', repeat('t', " + std::to_string(k_topic_limit) + "))");
  insert(big, "h-array", "'[1, 2]'");
  insert(big, "h-scalar", "'\"x\"'");
  insert(big, "h-after", "'{}'");

  const auto records = kafka_consume(big, 4, 60s);
  EXPECT_EQ(ids(records), (std::vector<std::string>{"h-before", "h-many", "h-long", "h-after"})) << m_relay->log();
  if (records.size() == 4) {
    EXPECT_EQ(records[1].headers.size(), 3U + 5000U + 4U);
    EXPECT_EQ(records[1].header("h4999"), "4999");
    EXPECT_EQ(records[2].header("trace"), std::string(65536, 't'));
  }
  const auto dead = kafka_consume(dlq, 3, 60s);
  ASSERT_EQ(ids(dead), (std::vector<std::string>{"h-past-limit", "h-array", "h-scalar"}));
  EXPECT_EQ(dead[0].header("outbox_dlq_reason"), "too_large");
  EXPECT_EQ(dead[1].header("outbox_dlq_reason"), "bad_headers");
  EXPECT_EQ(dead[1].header("outbox_dlq_column"), "headers");
  EXPECT_EQ(dead[1].header("outbox_dlq_value_kind"), "row");
  EXPECT_THAT(dead[1].header("outbox_dlq_error").value_or(""), HasSubstr("JSON object"));
  EXPECT_EQ(dead[2].header("outbox_dlq_reason"), "bad_headers");
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(malformed_input, postgresql_refuses_nul_and_bad_utf8_in_text_so_nothing_of_them_reaches_kafka) {
  const auto topic = unique_name("textcols");
  const auto t = payload_table("text");
  start_relay(config(tables({t})));
  insert_small(t, topic, "k", "t-before");
  const std::vector<std::string> refused{
      "INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type) VALUES ('t-nul', '" + topic +
          "', E'k\\x00z', 'e')",
      "INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type) VALUES ('t-nul2', '" + topic +
          "', 'k' || chr(0), 'e')",
      "INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type) VALUES ('t-bad', '" + topic +
          "', E'k\\xff', 'e')",
      "INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('t-bad2', '" + topic +
          "', 'k', 'e', convert_from('\\xc3'::bytea, 'UTF8'))",
  };
  for (const auto& sql : refused) EXPECT_THROW(pg_exec(sql), pqxx::sql_error) << sql;
  insert_small(t, topic, "k", "t-after");
  const auto records = kafka_consume(topic, 2, 60s);
  EXPECT_EQ(ids(records), (std::vector<std::string>{"t-before", "t-after"}));
  EXPECT_EQ(pg_scalar("SELECT count(*) FROM " + t), "2");
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
  EXPECT_EQ(kafka_record_count(topic), 2);
}

TEST_F(malformed_input, envelopes_that_are_not_json_or_not_utf8_are_dead_lettered_as_emitted_and_the_stream_goes_on) {
  const auto topic = unique_name("env");
  kafka_create_topic(topic, 1);
  const auto prefix = unique_name("ev");
  const auto dlq = unique_name("relaydlq");
  kafka_create_topic(dlq, 1);  // one partition: the dead letters in stream order
  start_relay(config("", "  logical_messages: {prefix: " + prefix + "}\n", "", dead_letter_sink(dlq)));
  auto envelope = [&](const std::string& id, const std::string& key) {
    return "{\"id\": \"" + id + "\", \"aggregate_type\": \"" + topic + "\", \"aggregate_id\": \"" + key +
           "\", \"event_type\": \"e\", \"payload\": {\"n\": 1}}";
  };
  auto emit = [&](const std::string& content_sql) {
    pg_exec("SELECT pg_logical_emit_message(true, '" + prefix + "', " + content_sql + ")");
  };
  emit("'" + envelope("m-before", "k") + "'");
  emit("'not json at all'");
  emit("'[1, 2, 3]'");
  emit("'" + envelope("m-cut", "k").substr(0, 40) + "'");
  emit("'{\"id\": \"m-nofields\"}'");
  // bytea content: an aggregate_id with a 0xFF byte, which a text column could never hold.
  emit("'\\x" + to_hex(envelope("m-notutf8", "k\xff")) + "'::bytea");
  emit("'" + envelope("m-nulid\\u0000", "k") + "'");
  // A key with a NUL byte: a text column cannot hold one, a JSON string can. It is valid UTF-8, so it is the key.
  emit("'" + envelope("m-nulkey", "k\\u0000z") + "'");
  emit("'" + envelope("m-after", "k") + "'");

  const auto records = kafka_consume(topic, 3, 60s);
  EXPECT_EQ(ids(records), (std::vector<std::string>{"m-before", "m-nulkey", "m-after"})) << m_relay->log();
  if (records.size() == 3) {
    EXPECT_EQ(records[1].key, std::string("k\0z", 3)) << "published byte-exact";
  }
  const auto dead = kafka_consume(dlq, 6, 60s);
  ASSERT_EQ(dead.size(), 6U) << m_relay->log();
  const std::vector<std::string> reasons{"bad_envelope", "bad_envelope", "bad_envelope",
                                         "bad_envelope", "bad_envelope", "bad_id"};
  for (std::size_t i = 0; i < dead.size(); ++i) {
    EXPECT_EQ(dead[i].header("outbox_dlq_reason"), reasons[i]) << i;
    EXPECT_EQ(dead[i].header("outbox_dlq_value_kind"), "envelope") << i;
    EXPECT_EQ(dead[i].header("outbox_dlq_table"), "message:" + prefix) << i;
  }
  EXPECT_EQ(dead[0].value, "not json at all") << "the content as emitted";
  EXPECT_EQ(dead[4].value, envelope("m-notutf8", "k\xff")) << "the content as emitted, bytes and all";
  EXPECT_THAT(dead[4].header("outbox_dlq_error").value_or(""), HasSubstr("not valid UTF-8"));
  EXPECT_EQ(dead[2].header("event_id"), std::nullopt) << "an envelope cut short has no usable id";
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

}  // namespace
}  // namespace outbox::test
