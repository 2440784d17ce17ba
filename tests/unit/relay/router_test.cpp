#include "outbox/base/error.hpp"
#include "outbox/relay/lsn.hpp"
#include "outbox/relay/pgoutput_decoder.hpp"
#include "outbox/relay/router.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace outbox::relay {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using header_list = std::vector<std::pair<std::string, std::string>>;

constexpr std::uint32_t oid_bytea = 17;
constexpr std::uint32_t oid_text = 25;
constexpr std::uint32_t oid_int4 = 23;
constexpr std::uint32_t oid_json = 114;
constexpr std::uint32_t oid_varchar = 1043;
constexpr std::uint32_t oid_timestamptz = 1184;
constexpr std::uint32_t oid_uuid = 2950;
constexpr std::uint32_t oid_jsonb = 3802;

constexpr const char* event_id = "0b6f1c8e-7d1a-4b5e-9a51-6a3c2f9e8d10";

const tx_context tx{(std::uint64_t{0x1} << 32) | 0x16B3748, 4242, 1700000000123};

column col(std::string name, std::uint32_t oid) { return column{std::move(name), oid, -1, false}; }

/// The default outbox table of SPEC §2.
relation outbox_relation(std::uint32_t payload_oid = oid_jsonb, std::uint32_t headers_oid = oid_jsonb) {
  return relation{
      16384,
      "public",
      "outbox",
      'd',
      {col("id", oid_uuid), col("aggregate_type", oid_text), col("aggregate_id", oid_text), col("event_type", oid_text),
       col("payload", payload_oid), col("headers", headers_oid), col("created_at", oid_timestamptz)}};
}

tuple_value text(std::string s) { return tuple_value{tuple_value::kind::text, std::move(s)}; }
tuple_value null() { return tuple_value{tuple_value::kind::null, {}}; }

std::vector<tuple_value> outbox_row(std::optional<std::string> payload, std::optional<std::string> headers = "{}",
                                    std::string aggregate_type = "order", std::string aggregate_id = "order-17",
                                    std::string event_type = "order_created") {
  return {text(event_id),
          text(std::move(aggregate_type)),
          text(std::move(aggregate_id)),
          text(std::move(event_type)),
          payload ? text(std::move(*payload)) : null(),
          headers ? text(std::move(*headers)) : null(),
          text("2024-01-02 03:04:05.123456+00")};
}

header_list trailer(const std::string& table) {
  return {{"outbox_lsn", format_lsn(tx.commit_lsn)},
          {"outbox_xid", "4242"},
          {"outbox_commit_ts_ms", "1700000000123"},
          {"outbox_table", table}};
}

header_list expected_headers(header_list extra = {}, const std::string& table = "public.outbox",
                             const std::string& type = "order_created", const std::string& agg = "order") {
  header_list h{{"event_id", event_id}, {"event_type", type}, {"aggregate_type", agg}};
  h.insert(h.end(), extra.begin(), extra.end());
  const header_list t = trailer(table);
  h.insert(h.end(), t.begin(), t.end());
  return h;
}

router default_router(std::string tmpl = "{aggregate_type}") {
  return router(std::move(tmpl), {table_route{"public", "outbox", {}}}, std::string("outbox"));
}

/// Runs `f`, expecting an outbox_error of `category`; returns its message.
template <typename F>
std::string error_of(F&& f, const std::string& category = "decode") {
  try {
    f();
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().category, category);
    EXPECT_EQ(e.value().retry, retry_class::fatal);
    return e.what();
  }
  ADD_FAILURE() << "expected an outbox_error";
  return {};
}

TEST(router, jsonb_row_becomes_exact_record) {
  const router r = default_router();
  const auto rec = r.route_insert(outbox_relation(),
                                  outbox_row(R"({"total": 1250, "items": [1, 2]})", R"({"trace_id": "t-1"})"), tx);
  ASSERT_TRUE(rec.has_value());
  const kafka_record expected{"order", "order-17", std::string(R"({"total": 1250, "items": [1, 2]})"),
                              expected_headers({{"trace_id", "t-1"}})};
  EXPECT_EQ(*rec, expected);
}

class router_text_payload : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(router_text_payload, published_exactly_as_stored) {
  const router r = default_router();
  const std::string stored = R"({ "b":1,   "a" : "x\u00e9" })";
  const auto rec = r.route_insert(outbox_relation(GetParam()), outbox_row(stored), tx);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(*rec, (kafka_record{"order", "order-17", stored, expected_headers()}));
}

INSTANTIATE_TEST_SUITE_P(types, router_text_payload, ::testing::Values(oid_jsonb, oid_json, oid_text, oid_varchar));

TEST(router, bytea_payload_is_raw_bytes) {
  const router r = default_router();
  const auto rec = r.route_insert(outbox_relation(oid_bytea), outbox_row("\\x00ff41Ab7f80"), tx);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->value, std::string("\x00\xff\x41\xab\x7f\x80", 6));
  EXPECT_EQ(rec->headers, expected_headers());

  const auto empty = r.route_insert(outbox_relation(oid_bytea), outbox_row("\\x"), tx);
  ASSERT_TRUE(empty.has_value());
  EXPECT_EQ(empty->value, std::string());
}

TEST(router, bad_bytea_is_an_error_naming_table_lsn_and_column) {
  const router r = default_router();
  const relation rel = outbox_relation(oid_bytea);
  const std::string bad_digit = error_of([&] { (void)r.route_insert(rel, outbox_row("\\x0g"), tx); });
  EXPECT_THAT(bad_digit, AllOf(HasSubstr("public.outbox"), HasSubstr(format_lsn(tx.commit_lsn)),
                               HasSubstr("\"payload\""), HasSubstr("not a hex digit"), HasSubstr(event_id)));
  const std::string odd = error_of([&] { (void)r.route_insert(rel, outbox_row("\\x0ff"), tx); });
  EXPECT_THAT(odd, HasSubstr("odd number of hex digits"));
  const std::string escape = error_of([&] { (void)r.route_insert(rel, outbox_row("ab\\000c"), tx); });
  EXPECT_THAT(escape, AllOf(HasSubstr("bytea_output"), HasSubstr("hex")));
}

TEST(router, null_payload_is_a_tombstone) {
  const router r = default_router();
  const auto rec = r.route_insert(outbox_relation(), outbox_row(std::nullopt), tx);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(*rec, (kafka_record{"order", "order-17", std::nullopt, expected_headers()}));
  const auto bytea = r.route_insert(outbox_relation(oid_bytea), outbox_row(std::nullopt), tx);
  ASSERT_TRUE(bytea.has_value());
  EXPECT_FALSE(bytea->value.has_value());
}

TEST(router, unicode_passes_byte_exact) {
  const router r = default_router();
  const std::string key = "客户-ß-\xF0\x9F\x99\x82";
  const std::string value = R"({"name": "Ünïcødé 🙂", "raw": "\ud83d\ude42"})";
  const auto rec =
      r.route_insert(outbox_relation(), outbox_row(value, R"({"lang": "日本語", "n": "é"})", "order", key), tx);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->key, key);
  EXPECT_EQ(rec->value, value);
  EXPECT_EQ(rec->headers, expected_headers({{"lang", "日本語"}, {"n", "é"}}));
}

TEST(router, payload_of_900_kib_works_copied_and_moved) {
  const router r = default_router();
  std::string big = R"({"blob": ")";
  big.append(900 * 1024, 'x');
  big += "\"}";
  const auto copied = r.route_insert(outbox_relation(), outbox_row(big), tx);
  ASSERT_TRUE(copied.has_value());
  EXPECT_EQ(copied->value, big);

  auto row = outbox_row(big);
  const auto moved = r.route_insert(outbox_relation(), std::move(row), tx);
  ASSERT_TRUE(moved.has_value());
  EXPECT_EQ(*moved, *copied);
  EXPECT_EQ(moved->byte_size(), copied->byte_size());
}

TEST(router, row_headers_keep_object_order_and_dump_non_strings) {
  const router r = default_router();
  const auto rec = r.route_insert(
      outbox_relation(),
      outbox_row("{}", R"({"zeta": "z", "alpha": 1, "n": null, "obj": {"x": [1, 2.5, "é"]}, "t": true, "s": ""})"), tx);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(
      rec->headers,
      expected_headers(
          {{"zeta", "z"}, {"alpha", "1"}, {"n", "null"}, {"obj", R"({"x":[1,2.5,"é"]})"}, {"t", "true"}, {"s", ""}}));
}

TEST(router, null_or_missing_headers_column_adds_nothing) {
  const router r = default_router();
  const auto null_headers = r.route_insert(outbox_relation(), outbox_row("{}", std::nullopt), tx);
  ASSERT_TRUE(null_headers.has_value());
  EXPECT_EQ(null_headers->headers, expected_headers());

  relation rel = outbox_relation();
  rel.columns.erase(rel.columns.begin() + 5);
  auto row = outbox_row("{}");
  row.erase(row.begin() + 5);
  const auto no_column = r.route_insert(rel, row, tx);
  ASSERT_TRUE(no_column.has_value());
  EXPECT_EQ(no_column->headers, expected_headers());
}

TEST(router, headers_from_json_and_text_columns) {
  const router r = default_router();
  for (const std::uint32_t oid : {oid_json, oid_text}) {
    const auto rec = r.route_insert(outbox_relation(oid_jsonb, oid), outbox_row("{}", R"({"b": "1", "a": "2"})"), tx);
    ASSERT_TRUE(rec.has_value());
    EXPECT_EQ(rec->headers, expected_headers({{"b", "1"}, {"a", "2"}}));
  }
}

TEST(router, reserved_header_names_are_rejected) {
  const router r = default_router();
  for (const std::string name : {"event_id", "event_type", "aggregate_type", "outbox_lsn", "outbox_custom"}) {
    const std::string msg = error_of([&] {
      (void)r.route_insert(outbox_relation(), outbox_row("{}", R"({"ok": "1", ")" + name + R"(": "x"})"), tx);
    });
    EXPECT_THAT(msg, AllOf(HasSubstr("\"" + name + "\""), HasSubstr("collides"), HasSubstr("public.outbox"),
                           HasSubstr(event_id), HasSubstr(format_lsn(tx.commit_lsn))));
  }
}

TEST(router, headers_that_are_not_an_object_are_rejected) {
  const router r = default_router();
  EXPECT_THAT(error_of([&] { (void)r.route_insert(outbox_relation(), outbox_row("{}", "[1, 2]"), tx); }),
              AllOf(HasSubstr("\"headers\""), HasSubstr("array"), HasSubstr("JSON object")));
  EXPECT_THAT(
      error_of([&] { (void)r.route_insert(outbox_relation(oid_jsonb, oid_text), outbox_row("{}", "{nope"), tx); }),
      AllOf(HasSubstr("\"headers\""), HasSubstr("not valid JSON")));
}

TEST(router, custom_column_names) {
  const column_map names{"event_uuid", "kind", "stream_key", "what", "body", "meta"};
  const router r("{aggregate_type}", {table_route{"app", "events", names}}, std::nullopt);
  const relation rel{77,
                     "app",
                     "events",
                     'd',
                     {col("seq", 20), col("body", oid_bytea), col("what", oid_varchar), col("stream_key", oid_text),
                      col("event_uuid", oid_uuid), col("meta", oid_json), col("kind", oid_text)}};
  const std::vector<tuple_value> row{text("1"),      text("\\xdeadbeef"),   text("order_created"), text("order-17"),
                                     text(event_id), text(R"({"x": "y"})"), text("order")};
  r.validate(rel);
  const auto rec = r.route_insert(rel, row, tx);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(*rec, (kafka_record{"order", "order-17", std::string("\xde\xad\xbe\xef"),
                                expected_headers({{"x", "y"}}, "app.events")}));
  EXPECT_FALSE(r.route_insert(outbox_relation(), outbox_row("{}"), tx).has_value());
}

TEST(router, two_tables_route_to_different_topics) {
  const router r("{schema}.{table}.{aggregate_type}",
                 {table_route{"public", "outbox", {}}, table_route{"billing", "outbox", {}}}, std::nullopt);
  relation billing = outbox_relation();
  billing.oid = 20000;
  billing.schema = "billing";
  const auto a = r.route_insert(outbox_relation(), outbox_row("{}"), tx);
  const auto b = r.route_insert(billing, outbox_row("{}", "{}", "invoice"), tx);
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(a->topic, "public.outbox.order");
  EXPECT_EQ(b->topic, "billing.outbox.invoice");
  EXPECT_EQ(b->headers.back(), (std::pair<std::string, std::string>{"outbox_table", "billing.outbox"}));
  EXPECT_NE(r.find_route(billing), r.find_route(outbox_relation()));
}

TEST(router, template_placeholders_are_filled) {
  const router r = default_router("events-{aggregate_type}_{event_type}.v1.{schema}.{table}.{aggregate_type}");
  const auto rec = r.route_insert(outbox_relation(), outbox_row("{}"), tx);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->topic, "events-order_order_created.v1.public.outbox.order");
  const auto fixed = default_router("all-events").route_insert(outbox_relation(), outbox_row("{}"), tx);
  ASSERT_TRUE(fixed.has_value());
  EXPECT_EQ(fixed->topic, "all-events");
}

TEST(router, bad_templates_are_config_errors) {
  for (const std::string tmpl : {"", "{aggregate}", "topic/{table}", "{table", "x}"}) {
    EXPECT_THAT(error_of([&] { (void)default_router(tmpl); }, "config"), HasSubstr("sink.topic_template")) << tmpl;
  }
  EXPECT_THAT(error_of([&] { (void)default_router(std::string(250, 'a')); }, "config"), HasSubstr("249"));
}

TEST(router, illegal_topic_names_row_id_lsn_and_template) {
  const router r = default_router("orders.{aggregate_type}");
  const std::string msg =
      error_of([&] { (void)r.route_insert(outbox_relation(), outbox_row("{}", "{}", "bad topic!"), tx); });
  EXPECT_THAT(msg,
              AllOf(HasSubstr(event_id), HasSubstr(format_lsn(tx.commit_lsn)), HasSubstr("orders.{aggregate_type}"),
                    HasSubstr("\"orders.bad topic!\""), HasSubstr("public.outbox")));

  const router bare = default_router();
  EXPECT_THAT(error_of([&] { (void)bare.route_insert(outbox_relation(), outbox_row("{}", "{}", ""), tx); }),
              HasSubstr("not a legal Kafka topic name"));
  EXPECT_THAT(error_of([&] { (void)bare.route_insert(outbox_relation(), outbox_row("{}", "{}", ".."), tx); }),
              HasSubstr("not a legal Kafka topic name"));
  EXPECT_THAT(
      error_of([&] { (void)bare.route_insert(outbox_relation(), outbox_row("{}", "{}", std::string(250, 'a')), tx); }),
      HasSubstr("not a legal Kafka topic name"));
  const auto longest = bare.route_insert(outbox_relation(), outbox_row("{}", "{}", std::string(249, 'a')), tx);
  ASSERT_TRUE(longest.has_value());
  EXPECT_EQ(longest->topic, std::string(249, 'a'));
}

TEST(router, null_aggregate_id_is_an_error) {
  const router r = default_router();
  auto row = outbox_row("{}");
  row[2] = null();
  EXPECT_THAT(error_of([&] { (void)r.route_insert(outbox_relation(), row, tx); }),
              AllOf(HasSubstr("\"aggregate_id\""), HasSubstr("NULL"), HasSubstr("public.outbox"),
                    HasSubstr(format_lsn(tx.commit_lsn)), HasSubstr(event_id)));
  row = outbox_row("{}");
  row[0] = null();
  EXPECT_THAT(error_of([&] { (void)r.route_insert(outbox_relation(), row, tx); }),
              AllOf(HasSubstr("\"id\""), HasSubstr("NULL")));
}

TEST(router, validate_rejects_unsupported_types_and_missing_columns) {
  const router r = default_router();
  EXPECT_NO_THROW(r.validate(outbox_relation()));
  const std::string int_payload = error_of([&] { r.validate(outbox_relation(oid_int4)); }, "config");
  EXPECT_THAT(int_payload, AllOf(HasSubstr("public.outbox"), HasSubstr("\"payload\""), HasSubstr("integer"),
                                 HasSubstr("jsonb, json, text, varchar or bytea"), HasSubstr("columns.payload")));
  // route_insert checks the same on the first row of a relation.
  EXPECT_THAT(error_of([&] { (void)r.route_insert(outbox_relation(oid_int4), outbox_row("1"), tx); }, "config"),
              HasSubstr("integer"));

  relation jsonb_key = outbox_relation();
  jsonb_key.columns[2].type_oid = oid_jsonb;
  EXPECT_THAT(error_of([&] { r.validate(jsonb_key); }, "config"),
              AllOf(HasSubstr("\"aggregate_id\""), HasSubstr("jsonb")));

  EXPECT_THAT(error_of([&] { r.validate(outbox_relation(oid_jsonb, oid_bytea)); }, "config"),
              AllOf(HasSubstr("\"headers\""), HasSubstr("bytea")));

  relation missing = outbox_relation();
  missing.columns.erase(missing.columns.begin() + 3);
  EXPECT_THAT(error_of([&] { r.validate(missing); }, "config"),
              AllOf(HasSubstr("no column \"event_type\""), HasSubstr("public.outbox")));

  relation unrelated = outbox_relation(oid_int4);
  unrelated.name = "orders";
  EXPECT_NO_THROW(r.validate(unrelated));
}

TEST(router, unconfigured_relation_gives_nullopt) {
  const router r = default_router();
  relation other = outbox_relation();
  other.oid = 99;
  other.name = "orders";
  EXPECT_EQ(r.find_route(other), nullptr);
  EXPECT_FALSE(r.route_insert(other, outbox_row("{}"), tx).has_value());
  ASSERT_NE(r.find_route(outbox_relation()), nullptr);
  EXPECT_EQ(r.find_route(outbox_relation())->table, "outbox");
}

TEST(router, relation_changes_are_picked_up) {
  const router r = default_router();
  relation rel = outbox_relation();
  ASSERT_TRUE(r.route_insert(rel, outbox_row("{}"), tx).has_value());

  // Same object, columns reordered in place (a new Relation message after ALTER TABLE).
  std::swap(rel.columns[1], rel.columns[2]);
  auto row = outbox_row("{}");
  std::swap(row[1], row[2]);
  const auto after = r.route_insert(rel, row, tx);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->topic, "order");
  EXPECT_EQ(after->key, "order-17");

  // A new object with the same oid and a changed payload type.
  const relation changed = outbox_relation(oid_bytea);
  const auto bytes = r.route_insert(changed, outbox_row("\\x41"), tx);
  ASSERT_TRUE(bytes.has_value());
  EXPECT_EQ(bytes->value, "A");

  // Renamed away from the configured name: no longer routed.
  relation renamed = outbox_relation();
  renamed.name = "outbox_old";
  EXPECT_FALSE(r.route_insert(renamed, outbox_row("{}"), tx).has_value());
}

TEST(router, row_with_wrong_value_count_is_an_error) {
  const router r = default_router();
  auto row = outbox_row("{}");
  row.pop_back();
  EXPECT_THAT(error_of([&] { (void)r.route_insert(outbox_relation(), row, tx); }), HasSubstr("6 values"));
}

TEST(router, duplicate_tables_are_a_config_error) {
  EXPECT_THAT(
      error_of(
          [] {
            (void)router("{table}", {table_route{"", "outbox", {}}, table_route{"public", "outbox", {}}}, std::nullopt);
          },
          "config"),
      HasSubstr("public.outbox twice"));
}

logical_message message(std::string content, std::string prefix = "outbox") {
  return logical_message{true, 0x2A0000BEEF, std::move(prefix), std::move(content)};
}

const std::string envelope = R"({"id": "0b6f1c8e-7d1a-4b5e-9a51-6a3c2f9e8d10", "aggregate_type": "order",
  "aggregate_id": "order-17", "event_type": "order_created",
  "payload": {"total": 1250, "note": "ünï", "items": [1, 2]}, "headers": {"trace_id": "t-1", "attempt": 2}})";

TEST(router, logical_message_envelope_becomes_exact_record) {
  const router r = default_router("{aggregate_type}{schema}.{table}");
  const auto rec = r.route_message(message(envelope), tx);
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(*rec, (kafka_record{"order.outbox", "order-17", std::string(R"({"total":1250,"note":"ünï","items":[1,2]})"),
                                expected_headers({{"trace_id", "t-1"}, {"attempt", "2"}}, "message:outbox")}));
}

TEST(router, logical_message_payload_forms) {
  const router r = default_router();
  const std::string head =
      R"({"id": "0b6f1c8e-7d1a-4b5e-9a51-6a3c2f9e8d10", "aggregate_type": "order", "aggregate_id": "order-17", "event_type": "order_created")";
  const auto absent = r.route_message(message(head + "}"), tx);
  ASSERT_TRUE(absent.has_value());
  EXPECT_EQ(*absent, (kafka_record{"order", "order-17", std::nullopt, expected_headers({}, "message:outbox")}));
  const auto null_payload = r.route_message(message(head + R"(, "payload": null, "headers": null})"), tx);
  ASSERT_TRUE(null_payload.has_value());
  EXPECT_EQ(*null_payload, *absent);
  const auto string_payload = r.route_message(message(head + R"(, "payload": "hi \"there\""})"), tx);
  ASSERT_TRUE(string_payload.has_value());
  EXPECT_EQ(string_payload->value, R"("hi \"there\"")");
  const auto number_payload = r.route_message(message(head + R"(, "payload": 42})"), tx);
  ASSERT_TRUE(number_payload.has_value());
  EXPECT_EQ(number_payload->value, "42");
}

class router_envelope_field : public ::testing::TestWithParam<const char*> {};

TEST_P(router_envelope_field, missing_or_not_a_string_is_an_error) {
  const router r = default_router();
  const std::string field = GetParam();
  const header_list fields{
      {"id", event_id}, {"aggregate_type", "order"}, {"aggregate_id", "order-17"}, {"event_type", "order_created"}};
  std::string without = "{";
  std::string wrong_type = "{";
  for (const auto& [name, value] : fields) {
    const std::string entry = "\"" + name + "\": \"" + value + "\", ";
    if (name != field) without += entry;
    wrong_type += name == field ? "\"" + name + "\": 17, " : entry;
  }
  without += R"("payload": {}})";
  wrong_type += R"("payload": {}})";
  const std::string lsn = format_lsn(0x2A0000BEEF);
  EXPECT_THAT(error_of([&] { (void)r.route_message(message(without), tx); }),
              AllOf(HasSubstr("no \"" + field + "\" field"), HasSubstr(lsn), HasSubstr("\"outbox\"")));
  EXPECT_THAT(error_of([&] { (void)r.route_message(message(wrong_type), tx); }),
              AllOf(HasSubstr("\"" + field + "\" field is a JSON number"), HasSubstr(lsn)));
}

INSTANTIATE_TEST_SUITE_P(fields, router_envelope_field,
                         ::testing::Values("id", "aggregate_type", "aggregate_id", "event_type"));

TEST(router, bad_envelopes_are_errors) {
  const router r = default_router();
  const std::string lsn = format_lsn(0x2A0000BEEF);
  EXPECT_THAT(error_of([&] { (void)r.route_message(message("{not json"), tx); }),
              AllOf(HasSubstr("not valid JSON"), HasSubstr(lsn)));
  EXPECT_THAT(error_of([&] { (void)r.route_message(message("[1]"), tx); }), HasSubstr("array, not an object"));
  std::string bad_headers = envelope;
  bad_headers.replace(bad_headers.find(R"({"trace_id")"), std::string(R"({"trace_id": "t-1", "attempt": 2})").size(),
                      R"("x")");
  EXPECT_THAT(error_of([&] { (void)r.route_message(message(bad_headers), tx); }),
              AllOf(HasSubstr("\"headers\" field is a JSON string"), HasSubstr(event_id)));
  std::string reserved = envelope;
  reserved.replace(reserved.find("trace_id"), 8, "outbox_xid");
  EXPECT_THAT(error_of([&] { (void)r.route_message(message(reserved), tx); }),
              AllOf(HasSubstr("\"outbox_xid\""), HasSubstr("collides")));
}

TEST(router, other_prefixes_are_ignored) {
  const router r = default_router();
  EXPECT_FALSE(r.route_message(message("not even json", "outbox-heartbeat"), tx).has_value());
  EXPECT_FALSE(r.route_message(message(envelope, "outboxx"), tx).has_value());
  const router no_messages("{aggregate_type}", {table_route{"public", "outbox", {}}}, std::nullopt);
  EXPECT_FALSE(no_messages.route_message(message(envelope), tx).has_value());
}

TEST(router, byte_size_counts_key_value_and_headers) {
  const kafka_record rec{"topic-not-counted", "key", std::string("value"), {{"h1", "v1"}, {"header", ""}}};
  EXPECT_EQ(rec.byte_size(), 3U + 5U + 4U + 6U);
  const kafka_record tombstone{"t", "k", std::nullopt, {}};
  EXPECT_EQ(tombstone.byte_size(), 1U);
}

}  // namespace
}  // namespace outbox::relay
