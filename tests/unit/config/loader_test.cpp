#include "config_test_util.hpp"

#include "outbox/config/relay_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace outbox::config {
namespace {

using test_util::error_line;
using test_util::error_lines;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr std::string_view k_minimal =
    "source:\n"
    "  dsn: host=db\n"
    "  tables:\n"
    "    - name: public.outbox\n";

relay_config parse(std::string_view text) { return parse_relay_config(text, "relay.yaml"); }

std::string with(std::string_view extra) { return std::string(k_minimal) + std::string(extra); }

TEST(config_interpolation, replaces_variables_from_the_environment) {
  ::setenv("OUTBOX_CFG_TEST_DSN", "host=pg user=app", 1);
  const auto c = parse("source:\n  dsn: ${OUTBOX_CFG_TEST_DSN}\n  logical_messages: {}\n");
  EXPECT_EQ(c.source.dsn, "host=pg user=app");
}

TEST(config_interpolation, uses_the_default_when_unset_or_empty) {
  ::unsetenv("OUTBOX_CFG_TEST_UNSET");
  ::setenv("OUTBOX_CFG_TEST_EMPTY", "", 1);
  const auto c =
      parse(with("  slot: ${OUTBOX_CFG_TEST_UNSET:-my_slot}\n"
                 "  publication: ${OUTBOX_CFG_TEST_EMPTY:-my_pub}\n"
                 "relay:\n  max_inflight_bytes: ${OUTBOX_CFG_TEST_UNSET:-32MiB}\n"
                 "sink:\n  brokers: \"kafka-${OUTBOX_CFG_TEST_UNSET:-}1:9092\"\n"));
  EXPECT_EQ(c.source.slot, "my_slot");
  EXPECT_EQ(c.source.publication, "my_pub");
  EXPECT_EQ(c.relay.max_inflight_bytes, 32ULL << 20);
  EXPECT_EQ(c.sink.brokers, "kafka-1:9092");
}

TEST(config_interpolation, missing_variable_is_an_error_naming_it_and_the_position) {
  ::unsetenv("OUTBOX_CFG_TEST_MISSING");
  const std::string line =
      error_line([] { parse("source:\n  dsn: ${OUTBOX_CFG_TEST_MISSING}\n  logical_messages: {}\n"); });
  EXPECT_THAT(line, StartsWith("relay.yaml:2:8: source.dsn: environment variable OUTBOX_CFG_TEST_MISSING is not set"));
}

TEST(config_interpolation, double_dollar_is_a_literal_dollar) {
  const auto c = parse(with("sink:\n  properties: {sasl.password: \"pa$$word\", x.y: \"$${NOT_A_VAR}\", z: a$b}\n"));
  EXPECT_EQ(c.sink.properties.at("sasl.password"), "pa$word");
  EXPECT_EQ(c.sink.properties.at("x.y"), "${NOT_A_VAR}");
  EXPECT_EQ(c.sink.properties.at("z"), "a$b");
}

TEST(config_interpolation, value_is_not_read_as_yaml) {
  ::setenv("OUTBOX_CFG_TEST_YAMLISH", "host=db options='-c a=b' # not: a comment", 1);
  const auto c = parse("source:\n  dsn: ${OUTBOX_CFG_TEST_YAMLISH}\n  logical_messages: {}\n");
  EXPECT_EQ(c.source.dsn, "host=db options='-c a=b' # not: a comment");
}

TEST(config_interpolation, malformed_references_are_errors) {
  EXPECT_THAT(error_line([] { parse(with("  slot: ${UNCLOSED\n")); }), HasSubstr("has no closing `}`"));
  EXPECT_THAT(error_line([] { parse(with("  slot: ${1BAD}\n")); }), HasSubstr("is not a variable reference"));
}

TEST(config_interpolation, empty_required_value_says_where_it_came_from) {
  ::setenv("OUTBOX_CFG_TEST_EMPTY_DSN", "", 1);
  EXPECT_EQ(error_line([] { parse("source:\n  dsn: ${OUTBOX_CFG_TEST_EMPTY_DSN}\n  logical_messages: {}\n"); }),
            "relay.yaml:2:8: source.dsn: must not be empty (it comes from an empty environment variable)");
}

TEST(config_errors, wrong_types_name_what_was_expected) {
  EXPECT_EQ(error_line([] { parse(with("relay:\n  max_inflight_messages: [1]\n")); }),
            "relay.yaml:6:26: relay.max_inflight_messages: expected a whole number, got a list");
  EXPECT_EQ(error_line([] { parse(with("      delete_after_publish: yes\n")); }),
            "relay.yaml:5:29: source.tables[0].delete_after_publish: expected true or false, got `yes`");
  EXPECT_EQ(error_line([] { parse(with("sink: kafka\n")); }),
            "relay.yaml:5:7: sink: expected a mapping of keys, got `kafka`");
  EXPECT_EQ(error_line([] { parse(with("sink:\n  properties: [a]\n")); }),
            "relay.yaml:6:15: sink.properties: expected a mapping of `key: value` pairs, got a list");
  EXPECT_EQ(error_line([] { parse(with("sink:\n  properties: {ssl: {ca: x}}\n")); }),
            "relay.yaml:6:21: sink.properties.ssl: expected a plain value, got a mapping; these are flat `key: value` "
            "pairs");
  EXPECT_EQ(error_line([] { parse("source:\n  dsn: x\n  tables: public.outbox\n"); }),
            "relay.yaml:3:11: source.tables: expected a list of mappings (each item starts with `- `), got "
            "`public.outbox`");
}

TEST(config_errors, integers_are_range_checked) {
  EXPECT_THAT(error_line([] { parse(with("relay:\n  max_inflight_messages: 99999999999999999999\n")); }),
              HasSubstr("relay.max_inflight_messages: `99999999999999999999` is out of range; must be at least 1"));
  EXPECT_THAT(error_line([] { parse(with("relay:\n  max_inflight_messages: 0\n")); }),
              HasSubstr("`0` must be at least 1"));
  EXPECT_THAT(error_line([] { parse(with("relay:\n  max_inflight_messages: 1.5\n")); }),
              HasSubstr("`1.5` is not a whole number"));
  EXPECT_THAT(error_line([] { parse(with("relay:\n  max_inflight_messages: 1e6\n")); }),
              HasSubstr("`1e6` is not a whole number"));
}

TEST(config_errors, durations_and_sizes_report_the_key) {
  EXPECT_EQ(error_line([] { parse(with("  heartbeat_interval: 10\n")); }),
            "relay.yaml:5:23: source.heartbeat_interval: `10` has no unit; write a whole number and a unit: 250ms, "
            "10s, 5m, 1h or 7d");
  EXPECT_THAT(error_line([] { parse(with("relay:\n  status_interval: -1s\n")); }), HasSubstr("is negative"));
  EXPECT_THAT(error_line([] { parse(with("relay:\n  status_interval: 0s\n")); }),
              HasSubstr("relay.status_interval: must be longer than 0s"));
  EXPECT_THAT(error_line([] { parse(with("relay:\n  max_inflight_bytes: 64MB/s\n")); }), HasSubstr("unknown unit"));
  EXPECT_THAT(error_line([] { parse(with("relay:\n  max_inflight_bytes: 0\n")); }),
              HasSubstr("relay.max_inflight_bytes: must be larger than 0"));
}

TEST(config_errors, malformed_yaml_reports_the_parser_position) {
  const std::string line = error_line([] { parse("source:\n  dsn: x\n  tables: [a, b\nsink: {}\n"); });
  EXPECT_THAT(line, StartsWith("relay.yaml:4:5: invalid YAML: end of sequence flow not found"));
  EXPECT_THAT(error_line([] { parse("source:\n\tdsn: x\n"); }), StartsWith("relay.yaml:2:"));
}

// Found by fuzz_consumer_config (corpus/consumer_config/stray_comma_after_tag): yaml-cpp's LoadAll never
// returned on a `,` outside [ ] or { }, reading one empty document after another while its memory grew.
TEST(config_errors, a_stray_comma_is_an_error_at_its_position_not_a_hang) {
  EXPECT_EQ(error_line([] { parse(","); }),
            "relay.yaml:1:1: invalid YAML: unexpected character here (a `,` outside [ ] or { }?); remove it, or quote "
            "the value it belongs to");
  EXPECT_THAT(error_line([] { parse("!codcers:opsuc-1, "); }), StartsWith("relay.yaml:1:17: invalid YAML: unexpected"));
  EXPECT_THAT(error_line([] { parse(with("---\n,")); }), StartsWith("relay.yaml:6:1: invalid YAML: unexpected"));
}

TEST(config_errors, duplicate_keys_are_errors) {
  EXPECT_EQ(error_line([] { parse("source:\n  dsn: a\n  slot: s1\n  slot: s2\n  logical_messages: {}\n"); }),
            "relay.yaml:4:3: source.slot: duplicate key; the first is at line 3 (remove one)");
  EXPECT_EQ(error_line([] { parse(with("log: {level: info}\nlog: {level: warn}\n")); }),
            "relay.yaml:6:1: log: duplicate key; the first is at line 5 (remove one)");
  EXPECT_EQ(error_line([] { parse(with("sink:\n  properties:\n    linger.ms: 5\n    linger.ms: 10\n")); }),
            "relay.yaml:8:5: sink.properties.linger.ms: duplicate key; the first is at line 7 (remove one)");
}

TEST(config_errors, empty_file_is_an_error) {
  EXPECT_THAT(error_line([] { parse(""); }), StartsWith("relay.yaml:1:1: the config file is empty"));
  EXPECT_THAT(error_line([] { parse("# nothing yet\n\n"); }), HasSubstr("is empty"));
  EXPECT_THAT(error_line([] { parse("---\n"); }), HasSubstr("is empty"));
}

TEST(config_errors, top_level_must_be_a_mapping) {
  EXPECT_THAT(error_line([] { parse("- source\n- sink\n"); }),
              HasSubstr("relay.yaml:1:1: the top level must be a mapping of sections such as `source:`, not a list"));
  EXPECT_THAT(error_line([] { parse("just text\n"); }), HasSubstr("the top level must be a mapping"));
}

TEST(config_errors, more_than_one_document_is_an_error) {
  EXPECT_THAT(error_line([] { parse(with("---\nsink: {}\n")); }), HasSubstr("more than one YAML document"));
}

TEST(config_errors, unknown_keys_suggest_the_closest) {
  EXPECT_EQ(error_line([] { parse(with("sikn:\n  brokers: k:9092\n")); }),
            "relay.yaml:5:1: sikn: unknown key; did you mean `sink`?");
  EXPECT_EQ(error_line([] { parse(with("  heartbeat_intervall: 5s\n")); }),
            "relay.yaml:5:3: source.heartbeat_intervall: unknown key; did you mean `heartbeat_interval`?");
  EXPECT_EQ(error_line([] { parse(with("      colums: {id: event_id}\n")); }),
            "relay.yaml:5:7: source.tables[0].colums: unknown key; did you mean `columns`?");
  EXPECT_EQ(error_line([] { parse(with("      columns: {id: event_id, kind: k}\n")); }),
            "relay.yaml:5:31: source.tables[0].columns.kind: unknown key; the keys here are `id`, `aggregate_type`, "
            "`aggregate_id`, `event_type`, `payload`, `headers`");
}

TEST(config_errors, key_in_the_wrong_section_names_the_right_one) {
  EXPECT_EQ(error_line([] { parse(with("sink:\n  slot: s\n")); }),
            "relay.yaml:6:3: sink.slot: unknown key here; did you mean `source.slot`?");
}

TEST(config_errors, enum_values_suggest_the_closest) {
  EXPECT_EQ(error_line([] { parse(with("log:\n  level: warning\n")); }),
            "relay.yaml:6:10: log.level: `warning` is not one of `trace`, `debug`, `info`, `warn`, `error`; did you "
            "mean `warn`?");
}

TEST(config_errors, unquoted_brace_gets_a_hint) {
  EXPECT_THAT(error_line([] { parse(with("sink:\n  topic_template: {aggregate_type}\n")); }),
              HasSubstr("expected a string, got a mapping; put text that starts with `{` in quotes"));
}

TEST(config_errors, required_keys_are_reported_at_their_section) {
  EXPECT_EQ(error_line([] { parse("source:\n  slot: s\n  logical_messages: {}\n"); }),
            "relay.yaml:1:1: source.dsn: is required");
  EXPECT_EQ(error_line([] { parse("sink: {}\n\nsource:\n  dsn:\n  logical_messages: {}\n"); }),
            "relay.yaml:4:3: source.dsn: is required");
  EXPECT_EQ(error_line([] { parse("source:\n  dsn: x\n  tables:\n    - columns: {id: i}\n"); }),
            "relay.yaml:4:7: source.tables[0].name: is required");
}

TEST(config_errors, every_error_of_a_file_is_reported_together) {
  const auto lines = error_lines([] {
    parse(
        "source:\n"
        "  dsn: host=db\n"
        "  slott: x\n"
        "  tables:\n"
        "    - name: public.outbox\n"
        "      delete_after_publish: maybe\n"
        "relay:\n"
        "  status_interval: 10\n");
  });
  EXPECT_THAT(lines, ElementsAre(StartsWith("relay.yaml:3:3: source.slott: unknown key; did you mean `slot`?"),
                                 StartsWith("relay.yaml:6:29: source.tables[0].delete_after_publish: expected true"),
                                 StartsWith("relay.yaml:8:20: relay.status_interval: `10` has no unit")));
}

TEST(config_errors, config_error_is_an_outbox_error_in_category_config) {
  try {
    parse("");
    FAIL() << "expected config_error";
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().category, "config");
    EXPECT_EQ(e.value().retry, retry_class::fatal);
    EXPECT_THAT(std::string(e.what()), HasSubstr("relay.yaml:1:1: the config file is empty"));
  }
}

TEST(config_load, reads_a_file_and_names_it_in_errors) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto path = dir / ("outbox_config_load_" + std::to_string(::getpid()) + ".yaml");
  {
    std::ofstream out(path);
    out << k_minimal << "log:\n  level: loud\n";
  }
  EXPECT_THAT(error_line([&] { load_relay_config(path.string()); }), StartsWith(path.string() + ":6:10: log.level:"));
  {
    std::ofstream out(path);
    out << k_minimal;
  }
  EXPECT_EQ(load_relay_config(path.string()).source.dsn, "host=db");
  std::filesystem::remove(path);
  EXPECT_THAT(error_line([&] { load_relay_config(path.string()); }),
              HasSubstr("cannot open the config file: No such file or directory"));
}

}  // namespace
}  // namespace outbox::config
