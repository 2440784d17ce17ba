#include "outbox/base/error.hpp"
#include "outbox/config/relay_config.hpp"
#include "outbox/relay/lsn.hpp"
#include "outbox/relay/pg_types.hpp"
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
using cells = std::vector<std::optional<std::string>>;

constexpr std::uint32_t oid_int4 = 23;
constexpr std::uint32_t oid_timestamptz = 1184;
constexpr std::uint32_t oid_custom_enum = 16400;  // an enum, a domain or citext: any type with a text output

constexpr const char* event_id = "0b6f1c8e-7d1a-4b5e-9a51-6a3c2f9e8d10";

const tx_context tx{(std::uint64_t{0x1} << 32) | 0x16B3748, 4242, 1700000000123};

column col(std::string name, std::uint32_t oid) { return column{std::move(name), oid, -1, false}; }

/// The default outbox table of SPEC §2.
relation outbox_relation(std::uint32_t payload_oid = pg_types::jsonb, std::uint32_t headers_oid = pg_types::jsonb) {
  return relation{16384,
                  "public",
                  "outbox",
                  'd',
                  {col("id", pg_types::uuid), col("aggregate_type", pg_types::text),
                   col("aggregate_id", pg_types::text), col("event_type", pg_types::text), col("payload", payload_oid),
                   col("headers", headers_oid), col("created_at", oid_timestamptz)}};
}

cells outbox_cells(std::optional<std::string> payload, std::optional<std::string> headers = "{}",
                   std::string aggregate_type = "order", std::string aggregate_id = "order-17",
                   std::string event_type = "order_created", std::optional<std::string> id = event_id) {
  return {std::move(id),      std::move(aggregate_type), std::move(aggregate_id),        std::move(event_type),
          std::move(payload), std::move(headers),        "2024-01-02 03:04:05.123456+00"};
}

/// Tuple values that view `c` (which must outlive them).
std::vector<tuple_value> values_of(const cells& c) {
  std::vector<tuple_value> out;
  for (const auto& v : c) {
    out.push_back(v ? tuple_value{tuple_value::kind::text, *v} : tuple_value{tuple_value::kind::null, {}});
  }
  return out;
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

config::table_source table(std::string schema, std::string name, config::column_map columns = {}) {
  config::table_source t;
  t.schema = std::move(schema);
  t.table = std::move(name);
  auto def = [](std::string& field, const char* d) {
    if (field.empty()) field = d;
  };
  def(columns.id, "id");
  def(columns.aggregate_type, "aggregate_type");
  def(columns.aggregate_id, "aggregate_id");
  def(columns.event_type, "event_type");
  def(columns.payload, "payload");
  def(columns.headers, "headers");
  t.columns = std::move(columns);
  return t;
}

config::relay_config make_config(std::string tmpl = "{aggregate_type}",
                                 std::vector<config::table_source> tables = {table("public", "outbox")},
                                 std::optional<std::string> prefix = std::string("outbox"),
                                 std::vector<std::string> allowed = {}) {
  config::relay_config c;
  c.sink.topic_template = std::move(tmpl);
  c.source.tables = std::move(tables);
  if (prefix) c.source.logical_messages = config::logical_messages_source{*prefix};
  c.sink.allowed_topics = std::move(allowed);
  return c;
}

/// Routes one row of `rel` (announcing the relation first, as its Relation message would), expecting a record.
kafka_record record_of(router& r, const relation& rel, const cells& row) {
  EXPECT_FALSE(r.on_relation(rel).has_value());
  const auto values = values_of(row);
  const routed out = r.route_insert(rel, values, tx);
  EXPECT_EQ(out.what, routed::outcome::record) << out.invalid.message << out.stop_reason;
  if (out.what != routed::outcome::record) return {};
  return kafka_record::of(*out.record);
}

/// Routes one row, expecting an invalid record; returns why.
invalid_record invalid_of(router& r, const relation& rel, const cells& row) {
  EXPECT_FALSE(r.on_relation(rel).has_value());
  const auto values = values_of(row);
  const routed out = r.route_insert(rel, values, tx);
  EXPECT_EQ(out.what, routed::outcome::invalid);
  return out.invalid;
}

TEST(router, jsonb_row_becomes_exact_record) {
  router r(make_config());
  const auto rec =
      record_of(r, outbox_relation(), outbox_cells(R"({"total": 1250, "items": [1, 2]})", R"({"trace_id": "t-1"})"));
  const kafka_record expected{"order", "order-17", std::string(R"({"total": 1250, "items": [1, 2]})"),
                              expected_headers({{"trace_id", "t-1"}})};
  EXPECT_EQ(rec, expected);
}

class router_text_payload : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(router_text_payload, published_exactly_as_stored) {
  router r(make_config());
  const std::string stored = R"({ "b":1,   "a" : "x\u00e9" })";
  EXPECT_EQ(record_of(r, outbox_relation(GetParam()), outbox_cells(stored)),
            (kafka_record{"order", "order-17", stored, expected_headers()}));
}

INSTANTIATE_TEST_SUITE_P(types, router_text_payload,
                         ::testing::Values(pg_types::jsonb, pg_types::json, pg_types::text, pg_types::varchar,
                                           oid_custom_enum));

TEST(router, bytea_payload_is_raw_bytes) {
  router r(make_config());
  const auto rec = record_of(r, outbox_relation(pg_types::bytea), outbox_cells("\\x00ff41Ab7f80"));
  EXPECT_EQ(rec.value, std::string("\x00\xff\x41\xab\x7f\x80", 6));
  EXPECT_EQ(rec.headers, expected_headers());
  EXPECT_EQ(record_of(r, outbox_relation(pg_types::bytea), outbox_cells("\\x")).value, std::string());
}

TEST(router, bad_bytea_is_an_invalid_record_naming_table_lsn_and_column) {
  router r(make_config());
  const relation rel = outbox_relation(pg_types::bytea);
  const auto bad_digit = invalid_of(r, rel, outbox_cells("\\x0g"));
  EXPECT_EQ(bad_digit.reason, "bad_bytea");
  EXPECT_EQ(bad_digit.column, "payload");
  EXPECT_THAT(bad_digit.message, AllOf(HasSubstr("public.outbox"), HasSubstr(format_lsn(tx.commit_lsn)),
                                       HasSubstr("\"payload\""), HasSubstr("not a hex digit"), HasSubstr(event_id)));
  EXPECT_THAT(invalid_of(r, rel, outbox_cells("\\x0ff")).message, HasSubstr("odd number of hex digits"));
  EXPECT_THAT(invalid_of(r, rel, outbox_cells("ab\\000c")).message, AllOf(HasSubstr("bytea_output"), HasSubstr("hex")));
}

TEST(router, null_payload_is_a_tombstone) {
  router r(make_config());
  EXPECT_EQ(record_of(r, outbox_relation(), outbox_cells(std::nullopt)),
            (kafka_record{"order", "order-17", std::nullopt, expected_headers()}));
  EXPECT_FALSE(record_of(r, outbox_relation(pg_types::bytea), outbox_cells(std::nullopt)).value.has_value());
}

TEST(router, unicode_passes_byte_exact) {
  router r(make_config());
  const std::string key = "客户-ß-\xF0\x9F\x99\x82";
  const std::string value = R"({"name": "Ünïcødé 🙂", "raw": "\ud83d\ude42"})";
  const auto rec =
      record_of(r, outbox_relation(), outbox_cells(value, R"({"lang": "日本語", "n": "é"})", "order", key));
  EXPECT_EQ(rec.key, key);
  EXPECT_EQ(rec.value, value);
  EXPECT_EQ(rec.headers, expected_headers({{"lang", "日本語"}, {"n", "é"}}));
}

TEST(router, payload_of_900_kib_is_published_whole) {
  router r(make_config());
  std::string big = R"({"blob": ")";
  big.append(900 * 1024, 'x');
  big += "\"}";
  const auto rec = record_of(r, outbox_relation(), outbox_cells(big));
  EXPECT_EQ(rec.value, big);
}

TEST(router, header_values_keep_their_exact_json_text) {
  router r(make_config());
  const auto rec = record_of(
      r, outbox_relation(),
      outbox_cells("{}", R"({"zeta": "z", "alpha": 1, "amount": 1.10, "big": 123456789012345678901234, )"
                         R"("fx": 1.2345678901234567891, "n": null, "obj": {"x": [1, 2.5, "é"]}, "t": true, "s": "", )"
                         R"("esc": "a\"b\u00e9"})"));
  EXPECT_EQ(rec.headers, expected_headers({{"zeta", "z"},
                                           {"alpha", "1"},
                                           {"amount", "1.10"},
                                           {"big", "123456789012345678901234"},
                                           {"fx", "1.2345678901234567891"},
                                           {"n", "null"},
                                           {"obj", R"({"x": [1, 2.5, "é"]})"},
                                           {"t", "true"},
                                           {"s", ""},
                                           {"esc", "a\"bé"}}));
}

TEST(router, null_or_missing_headers_column_adds_nothing) {
  router r(make_config());
  EXPECT_EQ(record_of(r, outbox_relation(), outbox_cells("{}", std::nullopt)).headers, expected_headers());

  router r2(make_config());
  relation rel = outbox_relation();
  rel.columns.erase(rel.columns.begin() + 5);
  auto row = outbox_cells("{}");
  row.erase(row.begin() + 5);
  EXPECT_EQ(record_of(r2, rel, row).headers, expected_headers());
}

TEST(router, headers_from_json_and_text_columns) {
  for (const std::uint32_t oid : {pg_types::json, pg_types::text}) {
    router r(make_config());
    EXPECT_EQ(
        record_of(r, outbox_relation(pg_types::jsonb, oid), outbox_cells("{}", R"({"b": "1", "a": "2"})")).headers,
        expected_headers({{"b", "1"}, {"a", "2"}}));
  }
}

TEST(router, reserved_header_names_are_invalid_records) {
  router r(make_config());
  for (const std::string name : {"event_id", "event_type", "aggregate_type", "outbox_lsn", "outbox_custom"}) {
    const auto why = invalid_of(r, outbox_relation(), outbox_cells("{}", R"({"ok": "1", ")" + name + R"(": "x"})"));
    EXPECT_EQ(why.reason, "reserved_header");
    EXPECT_EQ(why.column, "headers");
    EXPECT_THAT(why.message, AllOf(HasSubstr("\"" + name + "\""), HasSubstr("collides"), HasSubstr("public.outbox"),
                                   HasSubstr(event_id), HasSubstr(format_lsn(tx.commit_lsn))));
  }
}

TEST(router, headers_that_are_not_a_json_object_are_invalid_records) {
  router r(make_config());
  const auto array = invalid_of(r, outbox_relation(), outbox_cells("{}", "[1, 2]"));
  EXPECT_EQ(array.reason, "bad_headers");
  EXPECT_THAT(array.message, AllOf(HasSubstr("\"headers\""), HasSubstr("not a JSON object")));
  router r2(make_config());
  EXPECT_THAT(invalid_of(r2, outbox_relation(pg_types::jsonb, pg_types::text), outbox_cells("{}", "{nope")).message,
              AllOf(HasSubstr("\"headers\""), HasSubstr("not valid JSON")));
  router r3(make_config());
  const auto wrong_type = invalid_of(r3, outbox_relation(pg_types::jsonb, oid_int4), outbox_cells("{}", "7"));
  EXPECT_EQ(wrong_type.reason, "bad_type");
  EXPECT_THAT(wrong_type.message, HasSubstr("integer"));
}

TEST(router, ids_that_would_break_consumers_dedupe_are_invalid_records) {
  router r(make_config());
  const auto empty = invalid_of(r, outbox_relation(), outbox_cells("{}", "{}", "order", "order-17", "created", ""));
  EXPECT_EQ(empty.reason, "empty_id");
  EXPECT_EQ(empty.column, "id");
  const auto long_id = invalid_of(r, outbox_relation(),
                                  outbox_cells("{}", "{}", "order", "order-17", "created", std::string(1025, 'x')));
  EXPECT_EQ(long_id.reason, "id_too_long");
  EXPECT_EQ(
      record_of(r, outbox_relation(), outbox_cells("{}", "{}", "order", "order-17", "created", std::string(1024, 'x')))
          .headers.front()
          .second.size(),
      1024U);
  const auto nul = invalid_of(r, outbox_relation(),
                              outbox_cells("{}", "{}", "order", "order-17", "created", std::string("a\0b", 3)));
  EXPECT_EQ(nul.reason, "bad_id");
  const auto latin1 = invalid_of(r, outbox_relation(), outbox_cells("{}", "{}", "order", "k\xe9y", "created"));
  EXPECT_EQ(latin1.reason, "not_utf8");
  EXPECT_EQ(latin1.column, "aggregate_id");
  const auto no_type = invalid_of(r, outbox_relation(), outbox_cells("{}", "{}", "order", "order-17", ""));
  EXPECT_EQ(no_type.reason, "empty_field");
}

TEST(router, any_text_type_may_hold_the_key_fields) {
  router r(make_config());
  relation rel = outbox_relation();
  rel.columns[1].type_oid = oid_custom_enum;  // aggregate_type as an enum
  rel.columns[2].type_oid = oid_custom_enum;  // aggregate_id as citext or a domain
  EXPECT_EQ(record_of(r, rel, outbox_cells("{}")).topic, "order");
}

TEST(router, custom_column_names) {
  const config::column_map names{"event_uuid", "kind", "stream_key", "what", "body", "meta"};
  router r(make_config("{aggregate_type}", {table("app", "events", names)}, std::nullopt));
  const relation rel{
      77,
      "app",
      "events",
      'd',
      {col("seq", 20), col("body", pg_types::bytea), col("what", pg_types::varchar), col("stream_key", pg_types::text),
       col("event_uuid", pg_types::uuid), col("meta", pg_types::json), col("kind", pg_types::text)}};
  const cells row{"1", "\\xdeadbeef", "order_created", "order-17", event_id, R"({"x": "y"})", "order"};
  EXPECT_EQ(record_of(r, rel, row), (kafka_record{"order", "order-17", std::string("\xde\xad\xbe\xef"),
                                                  expected_headers({{"x", "y"}}, "app.events")}));
}

TEST(router, two_tables_route_to_different_topics) {
  router r(make_config("{schema}.{table}.{aggregate_type}", {table("public", "outbox"), table("billing", "outbox")},
                       std::nullopt));
  relation billing = outbox_relation();
  billing.oid = 20000;
  billing.schema = "billing";
  EXPECT_EQ(record_of(r, outbox_relation(), outbox_cells("{}")).topic, "public.outbox.order");
  const auto b = record_of(r, billing, outbox_cells("{}", "{}", "invoice"));
  EXPECT_EQ(b.topic, "billing.outbox.invoice");
  EXPECT_EQ(b.headers.back(), (std::pair<std::string, std::string>{"outbox_table", "billing.outbox"}));
  EXPECT_EQ(r.table_index("billing", "outbox"), std::optional<std::size_t>(1));
}

TEST(router, template_placeholders_are_filled) {
  router r(make_config("events-{aggregate_type}_{event_type}.v1.{schema}.{table}.{aggregate_type}"));
  EXPECT_EQ(record_of(r, outbox_relation(), outbox_cells("{}")).topic,
            "events-order_order_created.v1.public.outbox.order");
  router fixed(make_config("all-events"));
  EXPECT_EQ(record_of(fixed, outbox_relation(), outbox_cells("{}")).topic, "all-events");
}

TEST(router, bad_templates_are_config_errors) {
  for (const std::string tmpl : {"", "{aggregate}", "topic/{table}", "{table", "x}"}) {
    try {
      router r(make_config(tmpl));
      ADD_FAILURE() << "accepted " << tmpl;
    } catch (const outbox_error& e) {
      EXPECT_EQ(e.value().category, "config");
      EXPECT_THAT(e.what(), HasSubstr("sink.topic_template")) << tmpl;
    }
  }
  EXPECT_THROW(router(make_config(std::string(250, 'a'))), outbox_error);
}

TEST(router, illegal_topic_names_are_invalid_records_naming_row_lsn_and_template) {
  router r(make_config("orders.{aggregate_type}"));
  const auto why = invalid_of(r, outbox_relation(), outbox_cells("{}", "{}", "bad topic!"));
  EXPECT_EQ(why.reason, "bad_topic");
  EXPECT_THAT(why.message,
              AllOf(HasSubstr(event_id), HasSubstr(format_lsn(tx.commit_lsn)), HasSubstr("orders.{aggregate_type}"),
                    HasSubstr("\"orders.bad topic!\""), HasSubstr("public.outbox")));
  router bare(make_config());
  for (const std::string& t : {std::string(), std::string(".."), std::string(250, 'a')}) {
    EXPECT_THAT(invalid_of(bare, outbox_relation(), outbox_cells("{}", "{}", t)).message,
                HasSubstr("not a legal Kafka topic name"));
  }
  EXPECT_EQ(record_of(bare, outbox_relation(), outbox_cells("{}", "{}", std::string(249, 'a'))).topic,
            std::string(249, 'a'));
}

TEST(router, allowed_topics_contain_what_rows_may_reach) {
  router r(make_config("{aggregate_type}", {table("public", "outbox")}, "outbox", {"order", "^pay\\..*"}));
  EXPECT_EQ(record_of(r, outbox_relation(), outbox_cells("{}")).topic, "order");
  EXPECT_EQ(record_of(r, outbox_relation(), outbox_cells("{}", "{}", "pay.eu")).topic, "pay.eu");
  const auto outside = invalid_of(r, outbox_relation(), outbox_cells("{}", "{}", "__consumer_offsets"));
  EXPECT_EQ(outside.reason, "topic_not_allowed");
  EXPECT_THAT(outside.message, AllOf(HasSubstr("\"__consumer_offsets\""), HasSubstr("sink.allowed_topics")));
  EXPECT_EQ(invalid_of(r, outbox_relation(), outbox_cells("{}", "{}", "payments")).reason, "topic_not_allowed")
      << "a pattern matches the whole name";
  EXPECT_TRUE(r.topic_allowed("pay.us"));
  EXPECT_FALSE(r.topic_allowed("xpay.us"));
}

TEST(router, null_key_fields_are_invalid_records) {
  router r(make_config());
  auto row = outbox_cells("{}");
  row[2].reset();
  const auto why = invalid_of(r, outbox_relation(), row);
  EXPECT_EQ(why.reason, "null_field");
  EXPECT_THAT(why.message, AllOf(HasSubstr("\"aggregate_id\""), HasSubstr("NULL"), HasSubstr("public.outbox"),
                                 HasSubstr(format_lsn(tx.commit_lsn)), HasSubstr(event_id)));
  row = outbox_cells("{}");
  row[0].reset();
  EXPECT_THAT(invalid_of(r, outbox_relation(), row).message, AllOf(HasSubstr("\"id\""), HasSubstr("NULL")));
}

TEST(router, a_relation_that_is_not_configured_stops_instead_of_dropping_its_rows) {
  router r(make_config());
  relation other = outbox_relation();
  other.oid = 99;
  other.name = "orders";
  EXPECT_FALSE(r.on_relation(other).has_value());
  const cells row = outbox_cells("{}");
  const auto values = values_of(row);
  const routed out = r.route_insert(other, values, tx);
  EXPECT_EQ(out.what, routed::outcome::stop);
  EXPECT_THAT(out.stop_reason, AllOf(HasSubstr("public.orders"), HasSubstr("not in source.tables"),
                                     HasSubstr("never drops a row"), HasSubstr("DROP TABLE public.orders")));
}

TEST(router, a_renamed_table_or_column_stops_the_stream) {
  router r(make_config());
  EXPECT_FALSE(r.on_relation(outbox_relation()).has_value());
  relation renamed = outbox_relation();
  renamed.name = "outbox_old";
  const auto stop = r.on_relation(renamed);
  ASSERT_TRUE(stop.has_value());
  EXPECT_THAT(*stop, AllOf(HasSubstr("public.outbox"), HasSubstr("public.outbox_old"), HasSubstr("--backfill-table")));

  router r2(make_config());
  EXPECT_FALSE(r2.on_relation(outbox_relation()).has_value());
  relation column_renamed = outbox_relation();
  column_renamed.columns[2].name = "account_id";
  const auto gone = r2.on_relation(column_renamed);
  ASSERT_TRUE(gone.has_value());
  EXPECT_THAT(*gone, AllOf(HasSubstr("no column \"aggregate_id\""),
                           HasSubstr("source.tables[public.outbox].columns.aggregate_id")));
}

// Found by fuzz_pgoutput_decoder (seed corpus/pgoutput_decoder/relation_changed): a Relation message without a
// mapped column, then an Insert of that shorter row, read a value past the row's end.
TEST(router, rows_of_a_relation_it_refused_stop_instead_of_being_read_with_old_columns) {
  router r(make_config());
  EXPECT_EQ(record_of(r, outbox_relation(), outbox_cells("{}")).key, "order-17");
  const relation shorter{
      16384, "public", "outbox", 'd', {col("id", pg_types::uuid), col("aggregate_type", pg_types::text)}};
  const auto gone = r.on_relation(shorter);
  ASSERT_TRUE(gone.has_value());
  const cells row = {event_id, "order"};
  const auto values = values_of(row);
  const routed out = r.route_insert(shorter, values, tx);
  EXPECT_EQ(out.what, routed::outcome::stop);
  EXPECT_EQ(out.stop_reason, *gone);
  EXPECT_THAT(out.stop_reason, HasSubstr("no column \"aggregate_id\""));

  // The full relation again: its rows are routed again.
  EXPECT_EQ(record_of(r, outbox_relation(), outbox_cells("{}")).key, "order-17");

  relation renamed = shorter;
  renamed.name = "outbox_old";
  const auto stop = r.on_relation(renamed);
  ASSERT_TRUE(stop.has_value());
  const routed after_rename = r.route_insert(renamed, values, tx);
  EXPECT_EQ(after_rename.what, routed::outcome::stop);
  EXPECT_THAT(after_rename.stop_reason, HasSubstr("is now called public.outbox_old"));
}

TEST(router, columns_that_move_are_picked_up_from_the_new_relation_message) {
  router r(make_config());
  EXPECT_EQ(record_of(r, outbox_relation(), outbox_cells("{}")).key, "order-17");
  relation rel = outbox_relation();
  std::swap(rel.columns[1], rel.columns[2]);
  auto row = outbox_cells("{}");
  std::swap(row[1], row[2]);
  const auto after = record_of(r, rel, row);
  EXPECT_EQ(after.topic, "order");
  EXPECT_EQ(after.key, "order-17");
  EXPECT_EQ(record_of(r, outbox_relation(pg_types::bytea), outbox_cells("\\x41")).value, "A");
}

TEST(router, duplicate_tables_are_a_config_error) {
  EXPECT_THROW(router(make_config("{table}", {table("", "outbox"), table("public", "outbox")})), outbox_error);
}

logical_message message(const std::string& content, const std::string& prefix = "outbox") {
  return logical_message{true, 0x2A0000BEEF, prefix, content};
}

const std::string envelope = R"({"id": "0b6f1c8e-7d1a-4b5e-9a51-6a3c2f9e8d10", "aggregate_type": "order",
  "aggregate_id": "order-17", "event_type": "order_created",
  "payload": {"total": 1250, "note": "ünï", "items": [1, 2]}, "headers": {"trace_id": "t-1", "attempt": 2}})";

kafka_record message_record(router& r, const std::string& content) {
  const routed out = r.route_message(message(content), tx);
  EXPECT_EQ(out.what, routed::outcome::record) << out.invalid.message;
  return out.what == routed::outcome::record ? kafka_record::of(*out.record) : kafka_record{};
}

invalid_record message_invalid(router& r, const std::string& content) {
  const routed out = r.route_message(message(content), tx);
  EXPECT_EQ(out.what, routed::outcome::invalid);
  return out.invalid;
}

TEST(router, logical_message_envelope_becomes_exact_record) {
  router r(make_config("{aggregate_type}{schema}.{table}"));
  EXPECT_EQ(message_record(r, envelope),
            (kafka_record{"order.outbox", "order-17", std::string(R"({"total": 1250, "note": "ünï", "items": [1, 2]})"),
                          expected_headers({{"trace_id", "t-1"}, {"attempt", "2"}}, "message:outbox")}));
}

TEST(router, logical_message_payloads_keep_their_exact_bytes) {
  router r(make_config());
  const std::string head =
      R"({"id": "0b6f1c8e-7d1a-4b5e-9a51-6a3c2f9e8d10", "aggregate_type": "order", "aggregate_id": "order-17", "event_type": "order_created")";
  const auto absent = message_record(r, head + "}");
  EXPECT_EQ(absent, (kafka_record{"order", "order-17", std::nullopt, expected_headers({}, "message:outbox")}));
  EXPECT_EQ(message_record(r, head + R"(, "payload": null, "headers": null})"), absent);
  EXPECT_EQ(message_record(r, head + R"(, "payload": "hi \"there\""})").value, R"("hi \"there\"")");
  EXPECT_EQ(message_record(r, head + R"(, "payload": 42})").value, "42");
  const std::string amounts =
      R"({"amount":12.50,"fx":1.2345678901234567891,"id":123456789012345678901234,  "e": 1E+2 })";
  EXPECT_EQ(message_record(r, head + R"(, "payload": )" + amounts + "}").value, amounts)
      << "numbers are never re-serialized";
}

class router_envelope_field : public ::testing::TestWithParam<const char*> {};

TEST_P(router_envelope_field, missing_or_not_a_string_is_an_invalid_record) {
  router r(make_config());
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
  const auto missing = message_invalid(r, without);
  EXPECT_EQ(missing.reason, "bad_envelope");
  EXPECT_EQ(missing.column, field);
  EXPECT_THAT(missing.message, AllOf(HasSubstr("no \"" + field + "\" field"), HasSubstr(lsn), HasSubstr("\"outbox\"")));
  EXPECT_THAT(message_invalid(r, wrong_type).message,
              AllOf(HasSubstr("\"" + field + "\" field is not a string"), HasSubstr(lsn)));
}

INSTANTIATE_TEST_SUITE_P(fields, router_envelope_field,
                         ::testing::Values("id", "aggregate_type", "aggregate_id", "event_type"));

TEST(router, bad_envelopes_are_invalid_records) {
  router r(make_config());
  const std::string lsn = format_lsn(0x2A0000BEEF);
  EXPECT_THAT(message_invalid(r, "{not json").message, AllOf(HasSubstr("not valid JSON"), HasSubstr(lsn)));
  EXPECT_THAT(message_invalid(r, "[1]").message, HasSubstr("not a JSON object"));
  EXPECT_THAT(message_invalid(r, "{\"id\": \"a\xff\"}").message, HasSubstr("not valid UTF-8"));
  EXPECT_THAT(message_invalid(r, R"({"amount": 1e400x})").message, HasSubstr("not valid JSON"));
  std::string bad_headers = envelope;
  bad_headers.replace(bad_headers.find(R"({"trace_id")"), std::string(R"({"trace_id": "t-1", "attempt": 2})").size(),
                      R"("x")");
  EXPECT_THAT(message_invalid(r, bad_headers).message,
              AllOf(HasSubstr("\"headers\" field is not an object"), HasSubstr(event_id)));
  std::string reserved = envelope;
  reserved.replace(reserved.find("trace_id"), 8, "outbox_xid");
  const auto collides = message_invalid(r, reserved);
  EXPECT_EQ(collides.reason, "reserved_header");
  EXPECT_THAT(collides.message, AllOf(HasSubstr("\"outbox_xid\""), HasSubstr("collides")));
  const auto twice = message_invalid(r, R"({"id": "a", "id": "b", "aggregate_type": "o", "aggregate_id": "k",
    "event_type": "e"})");
  EXPECT_THAT(twice.message, HasSubstr("\"id\" twice"));
  const auto empty_id =
      message_invalid(r, R"({"id": "", "aggregate_type": "o", "aggregate_id": "k", "event_type": "e"})");
  EXPECT_EQ(empty_id.reason, "empty_id");
}

TEST(router, other_prefixes_are_skipped) {
  router r(make_config());
  EXPECT_EQ(r.route_message(message("not even json", "outbox-heartbeat"), tx).what, routed::outcome::skip);
  EXPECT_EQ(r.route_message(message(envelope, "outboxx"), tx).what, routed::outcome::skip);
  router no_messages(make_config("{aggregate_type}", {table("public", "outbox")}, std::nullopt));
  EXPECT_EQ(no_messages.route_message(message(envelope), tx).what, routed::outcome::skip);
}

TEST(router, byte_size_counts_key_value_and_headers) {
  const kafka_record rec{"topic-not-counted", "key", std::string("value"), {{"h1", "v1"}, {"header", ""}}};
  EXPECT_EQ(rec.byte_size(), 3U + 5U + 4U + 6U);
  const kafka_record tombstone{"t", "k", std::nullopt, {}};
  EXPECT_EQ(tombstone.byte_size(), 1U);
}

}  // namespace
}  // namespace outbox::relay
