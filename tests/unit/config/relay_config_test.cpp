#include "config_test_util.hpp"

#include "outbox/config/relay_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

namespace outbox::config {
namespace {

using namespace std::chrono_literals;
using test_util::error_line;
using ::testing::HasSubstr;

relay_config parse(std::string_view text) { return parse_relay_config(text, "relay.yaml"); }

// SPEC §4, verbatim.
constexpr std::string_view k_spec_example = R"(source:
  dsn: ${OUTBOX_PG_DSN}          # libpq keyword/value string or URI; the relay adds replication=database itself
  slot: outbox_relay             # created with pgoutput if missing
  publication: outbox_pub        # created FOR TABLE <tables> WITH (publish='insert') if missing
  tables:
    - name: public.outbox
      columns: {id: id, aggregate_type: aggregate_type, aggregate_id: aggregate_id,
                event_type: event_type, payload: payload, headers: headers}   # defaults
      delete_after_publish: false
  logical_messages: {prefix: outbox}   # optional second source
  heartbeat_interval: 10s              # keeps the slot moving on an idle database
sink:
  brokers: 127.0.0.1:9092
  topic_template: "{aggregate_type}"
  delivery: at_least_once          # or exactly_once (Kafka transactions + checkpoint topic)
  checkpoint_topic: __outbox_relay_checkpoints
  properties: {}                   # passed to librdkafka unchanged: ssl.*, sasl.*, linger.ms …
relay:
  max_inflight_messages: 100000
  max_inflight_bytes: 64MiB
  status_interval: 1s
  shutdown_timeout: 30s
metrics:
  listen: 127.0.0.1:9187           # GET /metrics, /healthz, /readyz
log:
  level: info                      # trace|debug|info|warn|error
  format: json                     # or text
)";

void expect_default_columns(const column_map& c) {
  EXPECT_EQ(c.id, "id");
  EXPECT_EQ(c.aggregate_type, "aggregate_type");
  EXPECT_EQ(c.aggregate_id, "aggregate_id");
  EXPECT_EQ(c.event_type, "event_type");
  EXPECT_EQ(c.payload, "payload");
  EXPECT_EQ(c.headers, "headers");
}

TEST(config_relay, spec_example_parses_to_the_expected_struct) {
  ::setenv("OUTBOX_PG_DSN", "host=127.0.0.1 user=app password=s3cret dbname=shop", 1);
  const auto c = parse(k_spec_example);
  EXPECT_EQ(c.source.dsn, "host=127.0.0.1 user=app password=s3cret dbname=shop");
  EXPECT_EQ(c.source.slot, "outbox_relay");
  EXPECT_EQ(c.source.publication, "outbox_pub");
  ASSERT_EQ(c.source.tables.size(), 1U);
  EXPECT_EQ(c.source.tables[0].schema, "public");
  EXPECT_EQ(c.source.tables[0].table, "outbox");
  EXPECT_EQ(c.source.tables[0].qualified_name(), "public.outbox");
  expect_default_columns(c.source.tables[0].columns);
  EXPECT_FALSE(c.source.tables[0].delete_after_publish);
  ASSERT_TRUE(c.source.logical_messages.has_value());
  EXPECT_EQ(c.source.logical_messages->prefix, "outbox");
  EXPECT_EQ(c.source.heartbeat_interval, 10s);
  EXPECT_EQ(c.sink.brokers, "127.0.0.1:9092");
  EXPECT_EQ(c.sink.topic_template, "{aggregate_type}");
  EXPECT_EQ(c.sink.delivery, delivery_mode::at_least_once);
  EXPECT_EQ(c.sink.checkpoint_topic, "__outbox_relay_checkpoints");
  EXPECT_TRUE(c.sink.properties.empty());
  EXPECT_EQ(c.relay.max_inflight_messages, 100000);
  EXPECT_EQ(c.relay.max_inflight_bytes, 64ULL * 1024 * 1024);
  EXPECT_EQ(c.relay.status_interval, 1s);
  EXPECT_EQ(c.relay.shutdown_timeout, 30s);
  EXPECT_EQ(c.metrics.listen, "127.0.0.1:9187");
  EXPECT_EQ(c.log.level, outbox::log::level::info);
  EXPECT_EQ(c.log.format, outbox::log::format::json);
}

TEST(config_relay, defaults_fill_everything_but_the_dsn_and_a_source) {
  const auto c = parse("source:\n  dsn: host=db\n  tables:\n    - name: outbox\n");
  ASSERT_EQ(c.source.tables.size(), 1U);
  EXPECT_EQ(c.source.tables[0].schema, "public");
  EXPECT_EQ(c.source.tables[0].table, "outbox");
  expect_default_columns(c.source.tables[0].columns);
  EXPECT_FALSE(c.source.logical_messages.has_value());
  EXPECT_EQ(c.source.slot, "outbox_relay");
  EXPECT_EQ(c.source.heartbeat_interval, 10s);
  EXPECT_EQ(c.sink.brokers, "127.0.0.1:9092");
  EXPECT_EQ(c.sink.topic_template, "{aggregate_type}");
  EXPECT_EQ(c.relay.max_inflight_bytes, 1ULL << 20);
  EXPECT_EQ(c.metrics.listen, "127.0.0.1:9187");
  EXPECT_EQ(c.log.format, outbox::log::format::json);
}

TEST(config_relay, tables_map_columns_and_reject_unknown_ones) {
  const auto c = parse(
      "source:\n  dsn: x\n  tables:\n"
      "    - name: billing.events\n      columns: {id: event_id, payload: body}\n      delete_after_publish: true\n"
      "    - name: public.outbox\n"
      "  heartbeat_interval: 0s\n"
      "log: {level: debug, format: text}\n");
  ASSERT_EQ(c.source.tables.size(), 2U);
  EXPECT_EQ(c.source.tables[0].schema, "billing");
  EXPECT_EQ(c.source.tables[0].table, "events");
  EXPECT_EQ(c.source.tables[0].columns.id, "event_id");
  EXPECT_EQ(c.source.tables[0].columns.payload, "body");
  EXPECT_EQ(c.source.tables[0].columns.aggregate_id, "aggregate_id");
  EXPECT_TRUE(c.source.tables[0].delete_after_publish);
  EXPECT_EQ(c.source.heartbeat_interval, 0ms);
  EXPECT_EQ(c.log.level, outbox::log::level::debug);
  EXPECT_EQ(c.log.format, outbox::log::format::text);
  EXPECT_THAT(error_line([] { parse("source:\n  dsn: x\n  tables:\n    - {name: o, columns: {key: k}}\n"); }),
              HasSubstr("source.tables[0].columns.key: unknown key"));
}

TEST(config_relay, logical_messages_alone_is_a_source) {
  const auto c = parse("source:\n  dsn: x\n  logical_messages:\n");
  ASSERT_TRUE(c.source.logical_messages.has_value());
  EXPECT_EQ(c.source.logical_messages->prefix, "outbox");
  EXPECT_TRUE(c.source.tables.empty());
}

TEST(config_relay, needs_at_least_one_source) {
  EXPECT_EQ(error_line([] { parse("source:\n  dsn: x\n"); }),
            "relay.yaml:1:1: source: nothing to relay; list outbox tables under `source.tables` or enable "
            "`source.logical_messages`");
  EXPECT_THAT(error_line([] { parse("source:\n  dsn: x\n  tables: []\n"); }), HasSubstr("nothing to relay"));
}

TEST(config_relay, duplicate_tables_are_rejected) {
  EXPECT_EQ(error_line([] { parse("source:\n  dsn: x\n  tables:\n    - name: public.outbox\n    - name: outbox\n"); }),
            "relay.yaml:5:7: source.tables[1].name: table public.outbox is listed twice; keep one entry");
}

TEST(config_relay, table_names_are_checked) {
  EXPECT_THAT(error_line([] { parse("source:\n  dsn: x\n  tables:\n    - name: a.b.c\n"); }),
              HasSubstr("source.tables[0].name: `a.b.c` has more than one `.`"));
  EXPECT_THAT(error_line([] { parse("source:\n  dsn: x\n  tables:\n    - name: .outbox\n"); }),
              HasSubstr("the schema is empty"));
  EXPECT_EQ(error_line([] { parse("source:\n  dsn: x\n  tables:\n    - public.outbox\n"); }),
            "relay.yaml:4:7: source.tables[0]: expected a mapping of keys, got `public.outbox`; write "
            "`- name: public.outbox`");
}

TEST(config_relay, exactly_once_and_its_transaction_bounds) {
  const auto c = parse("source: {dsn: x, logical_messages: {}}\nsink:\n  delivery: exactly_once\n");
  EXPECT_EQ(c.sink.delivery, delivery_mode::exactly_once);
  EXPECT_EQ(c.sink.checkpoint_topic, "__outbox_relay_checkpoints");
  EXPECT_EQ(c.sink.transactional_id, "");
  EXPECT_EQ(c.sink.transaction_max_records, 50000);
  EXPECT_EQ(c.sink.transaction_max_bytes, 32U << 20);
  EXPECT_EQ(c.sink.transaction_max_time, std::chrono::milliseconds(250));
  EXPECT_EQ(c.sink.transaction_timeout, std::chrono::milliseconds(60000));
  EXPECT_THAT(error_line([] {
                parse("source: {dsn: x, logical_messages: {}}\nsink: {delivery: exactly_once, transaction_max_time: "
                      "20s}\n");
              }),
              HasSubstr("sink.transaction_max_time: a transaction open this long may run into sink.transaction_timeout"));
  EXPECT_THAT(error_line([] { parse("source: {dsn: x, logical_messages: {}}\nsink: {delivery: at_most_once}\n"); }),
              HasSubstr("is not one of `at_least_once`, `exactly_once`"));
}

TEST(config_relay, topic_template_allows_only_known_placeholders) {
  const auto c =
      parse("source: {dsn: x, logical_messages: {}}\nsink: {topic_template: \"{schema}.{table}-{event_type}\"}\n");
  EXPECT_EQ(c.sink.topic_template, "{schema}.{table}-{event_type}");
  EXPECT_THAT(
      error_line([] { parse("source: {dsn: x, logical_messages: {}}\nsink: {topic_template: \"{aggregate}\"}\n"); }),
      HasSubstr("sink.topic_template: has an unknown placeholder `{aggregate}`"));
  EXPECT_THAT(error_line([] { parse("source: {dsn: x, logical_messages: {}}\nsink: {topic_template: \"{table\"}\n"); }),
              HasSubstr("has a `{` without its `}`"));
  EXPECT_THAT(
      error_line([] { parse("source: {dsn: x, logical_messages: {}}\nsink: {topic_template: \"a/{table}\"}\n"); }),
      HasSubstr("has `/`; Kafka topic names allow only"));
}

TEST(config_relay, slot_and_listen_address_are_checked) {
  EXPECT_THAT(error_line([] { parse("source: {dsn: x, slot: Outbox-Slot, logical_messages: {}}\n"); }),
              HasSubstr("source.slot: `Outbox-Slot` is not a valid slot name"));
  EXPECT_THAT(error_line([] { parse("source: {dsn: x, logical_messages: {}}\nmetrics: {listen: 9187}\n"); }),
              HasSubstr("metrics.listen: `9187` has no port"));
  EXPECT_THAT(error_line([] { parse("source: {dsn: x, logical_messages: {}}\nmetrics: {listen: \"h:99999\"}\n"); }),
              HasSubstr("has no valid port"));
  const auto c = parse("source: {dsn: x, logical_messages: {}}\nmetrics: {listen: \"[::1]:0\"}\n");
  EXPECT_EQ(c.metrics.listen, "[::1]:0");
}

TEST(config_relay, properties_keep_scalar_text) {
  const auto c = parse(
      "source: {dsn: x, logical_messages: {}}\n"
      "sink:\n  properties:\n    linger.ms: 5\n    enable.idempotence: true\n    acks: all\n    compression.type: "
      "\"lz4\"\n");
  EXPECT_EQ(c.sink.properties,
            (std::map<std::string, std::string>{
                {"linger.ms", "5"}, {"enable.idempotence", "true"}, {"acks", "all"}, {"compression.type", "lz4"}}));
}

TEST(config_relay, properties_that_weaken_the_guarantees_are_refused_naming_key_and_line) {
  const std::vector<std::pair<std::string, std::string>> unsafe = {
      {"enable.idempotence", "false"},      {"acks", "1"},
      {"request.required.acks", "0"},       {"message.timeout.ms", "30000"},
      {"delivery.timeout.ms", "120000"},    {"enable.gapless.guarantee", "false"},
      {"partitioner", "consistent_random"}, {"max.in.flight.requests.per.connection", "10"},
      {"transactional.id", "mine"},
  };
  for (const auto& [key, value] : unsafe) {
    const std::string text =
        "source: {dsn: x, logical_messages: {}}\nsink:\n  properties:\n    " + key + ": \"" + value + "\"\n";
    const std::string line = error_line([&] { parse(text); });
    EXPECT_THAT(line, HasSubstr("relay.yaml:4:")) << line;
    EXPECT_THAT(line, HasSubstr("sink.properties." + key)) << line;
    EXPECT_THAT(line, HasSubstr("sink.allow_unsafe_properties: true")) << line;
    const auto allowed = parse(text + "  allow_unsafe_properties: true\n");
    EXPECT_TRUE(allowed.sink.allow_unsafe_properties);
    EXPECT_EQ(allowed.sink.properties.at(key), value);
  }
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"acks", "all"},
                                                        {"acks", "-1"},
                                                        {"enable.idempotence", "true"},
                                                        {"message.timeout.ms", "0"},
                                                        {"enable.gapless.guarantee", "true"},
                                                        {"partitioner", "murmur2_random"},
                                                        {"max.in.flight.requests.per.connection", "5"},
                                                        {"linger.ms", "20"}}) {
    EXPECT_NO_THROW(
        parse("source: {dsn: x, logical_messages: {}}\nsink: {properties: {" + key + ": \"" + value + "\"}}\n"))
        << key << "=" << value;
  }
}

TEST(config_relay, new_source_and_sink_keys_have_safe_defaults) {
  const auto c = parse("source: {dsn: x, logical_messages: {}}\n");
  EXPECT_EQ(c.source.initial_backfill, backfill_mode::all);
  EXPECT_EQ(c.source.state_table_name(), "public.outbox_relay_state");
  EXPECT_EQ(c.source.connect_timeout, 10s);
  EXPECT_EQ(c.source.tcp_user_timeout, 30s);
  EXPECT_EQ(c.source.statement_timeout, 30s);
  EXPECT_EQ(c.source.lock_timeout, 5s);
  EXPECT_EQ(c.source.stream_timeout, 0s);
  EXPECT_FALSE(c.sink.allow_unsafe_properties);
  EXPECT_TRUE(c.sink.allowed_topics.empty());
  EXPECT_EQ(c.sink.on_invalid_record, invalid_record_policy::halt);
  EXPECT_EQ(c.sink.dead_letter_topic, "__outbox_relay_dlq");
  EXPECT_EQ(c.relay.max_delete_backlog, 100000);

  const auto d = parse(
      "source: {dsn: x, logical_messages: {}, initial_backfill: none, state_table: ops.relay_state}\n"
      "sink: {on_invalid_record: dead_letter, dead_letter_topic: bad.events, allowed_topics: [orders, "
      "\"^pay\\\\..*\"]}\n");
  EXPECT_EQ(d.source.initial_backfill, backfill_mode::none);
  EXPECT_EQ(d.source.state_table_name(), "ops.relay_state");
  EXPECT_EQ(d.sink.on_invalid_record, invalid_record_policy::dead_letter);
  EXPECT_EQ(d.sink.dead_letter_topic, "bad.events");
  EXPECT_EQ(d.sink.allowed_topics, (std::vector<std::string>{"orders", "^pay\\..*"}));
}

TEST(config_relay, allowed_topics_are_topic_names_or_valid_patterns) {
  EXPECT_THAT(error_line([] { parse("source: {dsn: x, logical_messages: {}}\nsink: {allowed_topics: [\"a b\"]}\n"); }),
              HasSubstr("sink.allowed_topics: topic `a b`"));
  EXPECT_THAT(error_line([] { parse("source: {dsn: x, logical_messages: {}}\nsink: {allowed_topics: [\"^(\"]}\n"); }),
              HasSubstr("is not a valid regular expression"));
}

}  // namespace
}  // namespace outbox::config
