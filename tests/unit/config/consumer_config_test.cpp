#include "config_test_util.hpp"

#include "outbox/config/consumer_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

namespace outbox::config {
namespace {

using namespace std::chrono_literals;
using test_util::error_line;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

consumer_config parse(std::string_view text) { return parse_consumer_config(text, "ledger.yaml"); }

// SPEC §5, verbatim.
constexpr std::string_view k_spec_example = R"(consumer:
  brokers: 127.0.0.1:9092
  group_id: ledger
  topics: [payments]
  properties: {}                 # passed to librdkafka unchanged
dedupe:
  store: postgres                # memory | postgres | sqlite | redis
  dsn: ${LEDGER_PG_DSN}          # postgres; sqlite takes `path`, redis takes `url`
  retention: 7d
retry:
  schedule: exponential          # fixed | exponential | decorrelated | list | wechatpay
  initial: 200ms
  max: 30s
  attempts: 5                    # in-process, blocking
  topics: [10s, 1m, 10m]         # then non-blocking tiers, then the DLQ
  ordering: per_key              # or none
dlq:
  topic: "{topic}.{group}.dlq"
  max_ratio: 0.5
  window: 200
metrics:
  listen: 127.0.0.1:9188
)";

constexpr std::string_view k_minimal = "consumer:\n  group_id: g\n  topics: [t]\n";

std::string with(std::string_view extra) { return std::string(k_minimal) + std::string(extra); }

TEST(config_consumer, spec_example_parses_to_the_expected_struct) {
  ::setenv("LEDGER_PG_DSN", "postgresql://ledger:pw@127.0.0.1/ledger", 1);
  const auto c = parse(k_spec_example);
  EXPECT_EQ(c.consumer.brokers, "127.0.0.1:9092");
  EXPECT_EQ(c.consumer.group_id, "ledger");
  EXPECT_THAT(c.consumer.topics, ElementsAre("payments"));
  EXPECT_TRUE(c.consumer.properties.empty());
  EXPECT_EQ(c.dedupe.store, dedupe_store::postgres);
  EXPECT_EQ(c.dedupe.dsn, "postgresql://ledger:pw@127.0.0.1/ledger");
  EXPECT_EQ(c.dedupe.retention, 7 * 24h);
  EXPECT_EQ(c.retry.schedule, retry_schedule::exponential);
  EXPECT_EQ(c.retry.initial, 200ms);
  EXPECT_EQ(c.retry.max, 30s);
  EXPECT_EQ(c.retry.attempts, 5);
  EXPECT_TRUE(c.retry.delays.empty());
  EXPECT_THAT(c.retry.topics, ElementsAre(10s, 1min, 10min));
  EXPECT_EQ(c.retry.ordering, retry_ordering::per_key);
  EXPECT_EQ(c.dlq.topic, "{topic}.{group}.dlq");
  EXPECT_DOUBLE_EQ(c.dlq.max_ratio, 0.5);
  EXPECT_EQ(c.dlq.window, 200);
  EXPECT_EQ(c.dlq.replay_window, 24h);
  EXPECT_EQ(c.retry.max_elapsed, 0ms);
  EXPECT_EQ(c.metrics.listen, "127.0.0.1:9188");
  EXPECT_EQ(c.log.level, outbox::log::level::info);
}

// The input fuzz_consumer_config found (corpus/consumer_config/stray_comma_after_tag): it used to hang the loader.
TEST(config_consumer, a_stray_comma_after_a_tag_is_an_error_not_a_hang) {
  EXPECT_THAT(error_line([] { parse("!codcers:opsuc-1, "); }),
              HasSubstr("ledger.yaml:1:17: invalid YAML: unexpected character here (a `,` outside [ ] or { }?)"));
}

TEST(config_consumer, defaults) {
  const auto c = parse(k_minimal);
  EXPECT_EQ(c.consumer.brokers, "127.0.0.1:9092");
  EXPECT_EQ(c.dedupe.store, dedupe_store::memory);
  EXPECT_EQ(c.dedupe.retention, 7 * 24h);
  EXPECT_EQ(c.retry.schedule, retry_schedule::exponential);
  EXPECT_EQ(c.retry.initial, 200ms);
  EXPECT_EQ(c.retry.max, 30s);
  EXPECT_EQ(c.retry.attempts, 5);
  EXPECT_TRUE(c.retry.topics.empty());
  EXPECT_EQ(c.retry.ordering, retry_ordering::per_key);
  EXPECT_EQ(c.dlq.topic, "{topic}.{group}.dlq");
  EXPECT_DOUBLE_EQ(c.dlq.max_ratio, 0.5);
  EXPECT_EQ(c.dlq.window, 200);
  EXPECT_EQ(c.dlq.replay_window, 24h) << "1d";
  EXPECT_EQ(c.retry.max_elapsed, 0ms) << "no cap";
  EXPECT_EQ(c.metrics.listen, "127.0.0.1:9188");
  EXPECT_EQ(c.consumer.pattern_refresh, 30s);
  EXPECT_EQ(c.dedupe.lease, 5min) << "librdkafka's max.poll.interval.ms";
  EXPECT_EQ(c.dedupe.cleanup_interval, 1min);
  EXPECT_EQ(c.dedupe.cleanup_batch, 1000);
  EXPECT_EQ(c.dedupe.check, retention_check::refuse);
  EXPECT_EQ(c.retry.topic_replication_factor, -1) << "the cluster's default";
  EXPECT_EQ(c.retry.topic_retention, 7 * 24h);
  EXPECT_EQ(c.dlq.retention, 30 * 24h);
  EXPECT_EQ(c.dlq.probe_interval, 5min);
}

TEST(config_consumer, group_id_and_topics_are_required) {
  const auto lines = test_util::error_lines([] { parse("consumer:\n  brokers: k:9092\n"); });
  EXPECT_THAT(lines, ElementsAre("ledger.yaml:1:1: consumer.group_id: is required",
                                 "ledger.yaml:1:1: consumer.topics: is required"));
  EXPECT_THAT(error_line([] { parse("consumer:\n  group_id: g\n  topics: []\n"); }),
              HasSubstr("consumer.topics: is empty; list at least one topic"));
  EXPECT_THAT(error_line([] { parse("consumer:\n  group_id: g\n  topics: payments\n"); }),
              HasSubstr("consumer.topics: expected a list of strings, e.g. [a, b], got `payments`"));
}

TEST(config_consumer, each_store_requires_its_location) {
  EXPECT_EQ(error_line([] { parse(with("dedupe:\n  store: postgres\n")); }),
            "ledger.yaml:4:1: dedupe.dsn: is required when dedupe.store is postgres");
  EXPECT_THAT(error_line([] { parse(with("dedupe: {store: sqlite}\n")); }),
              HasSubstr("dedupe.path: is required when dedupe.store is sqlite"));
  EXPECT_THAT(error_line([] { parse(with("dedupe: {store: redis, dsn: x}\n")); }),
              HasSubstr("dedupe.url: is required when dedupe.store is redis"));
  const auto c = parse(with("dedupe: {store: sqlite, path: /var/lib/ledger/dedupe.db, retention: 30d}\n"));
  EXPECT_EQ(c.dedupe.store, dedupe_store::sqlite);
  EXPECT_EQ(c.dedupe.path, "/var/lib/ledger/dedupe.db");
  EXPECT_EQ(c.dedupe.retention, 30 * 24h);
}

TEST(config_consumer, retry_rules) {
  const auto c = parse(with("retry: {schedule: list, delays: [1s, 5s, 1m], ordering: none}\n"));
  EXPECT_EQ(c.retry.schedule, retry_schedule::list);
  EXPECT_THAT(c.retry.delays, ElementsAre(1s, 5s, 1min));
  EXPECT_EQ(c.retry.ordering, retry_ordering::none);
  EXPECT_THAT(error_line([] { parse(with("retry: {schedule: list}\n")); }),
              HasSubstr("retry.delays: is required when retry.schedule is list"));
  EXPECT_THAT(error_line([] { parse(with("retry: {initial: 1m, max: 10s}\n")); }),
              HasSubstr("retry.initial: is longer than retry.max"));
  EXPECT_THAT(error_line([] { parse(with("retry: {attempts: 0}\n")); }), HasSubstr("must be between 1 and 1000"));
  EXPECT_EQ(error_line([] { parse(with("retry:\n  topics: [10s, 1x]\n")); }),
            "ledger.yaml:5:17: retry.topics[1]: `1x` has an unknown unit `x`; write a whole number and a unit: 250ms, "
            "10s, 5m, 1h or 7d");
}

TEST(config_consumer, dlq_ratio_is_in_zero_one) {
  EXPECT_THAT(error_line([] { parse(with("dlq: {max_ratio: 0}\n")); }),
              HasSubstr("dlq.max_ratio: must be greater than 0"));
  EXPECT_THAT(error_line([] { parse(with("dlq: {max_ratio: 1.5}\n")); }), HasSubstr("at most 1"));
  EXPECT_THAT(error_line([] { parse(with("dlq: {max_ratio: half}\n")); }), HasSubstr("`half` is not a number"));
  EXPECT_THAT(error_line([] { parse(with("dlq: {topic: \"{topic}.{grp}\"}\n")); }),
              HasSubstr("unknown placeholder `{grp}`"));
  EXPECT_EQ(parse(with("dlq: {topic: \"dead.{group}.{topic}\"}\n")).dlq.topic, "dead.{group}.{topic}");
  EXPECT_THAT(error_line([] { parse(with("dlq: {topic: \"{topic}\"}\n")); }),
              HasSubstr("dlq.topic: is `{topic}`, the source topic itself"));
  EXPECT_DOUBLE_EQ(parse(with("dlq: {max_ratio: 1}\n")).dlq.max_ratio, 1.0);
}

TEST(config_consumer, an_app_can_add_its_own_section) {
  const std::vector<key_spec> ledger = {section("ledger", {string_key("dsn").required().describe("Ledger database"),
                                                           int_key("batch").defaults("10").between(1, 100)})
                                            .describe("payment-ledger")};
  ::setenv("OUTBOX_CFG_TEST_LEDGER_DSN", "host=ledger password=pw", 1);
  const auto c = parse_consumer_config(with("ledger:\n  dsn: ${OUTBOX_CFG_TEST_LEDGER_DSN}\n"), "ledger.yaml", ledger);
  EXPECT_EQ(c.tree.get<std::string>("ledger.dsn"), "host=ledger password=pw");
  EXPECT_EQ(c.tree.get<std::int64_t>("ledger.batch"), 10);
  EXPECT_THAT(dump_redacted(c), HasSubstr("ledger:\n  dsn: host=ledger password=*****\n  batch: 10\n"));

  EXPECT_EQ(error_line([] { parse(with("ledger:\n  dsn: x\n")); }),
            "ledger.yaml:4:1: ledger: unknown key; the keys here are `consumer`, `dedupe`, `inbox`, `retry`, `dlq`, "
            "`metrics`, `log`");
  EXPECT_THAT(test_util::error_lines([&] { parse_consumer_config(with("ledgr:\n  dsn: x\n"), "ledger.yaml", ledger); }),
              ElementsAre("ledger.yaml:1:1: ledger.dsn: is required",
                          "ledger.yaml:4:1: ledgr: unknown key; did you mean `ledger`?"));
  EXPECT_EQ(error_line([&] { parse_consumer_config(k_minimal, "ledger.yaml", ledger); }),
            "ledger.yaml:1:1: ledger.dsn: is required");
  EXPECT_THROW(consumer_schema(std::vector<key_spec>{section("dedupe", {})}), std::logic_error);
}

TEST(config_consumer, the_dedupe_key_header_and_inbox_create_table) {
  const auto defaults = parse(k_minimal);
  EXPECT_EQ(defaults.dedupe.key_header, "");
  EXPECT_TRUE(defaults.inbox.create_table);
  const auto c = parse(with("dedupe: {key_header: transaction_id}\ninbox: {create_table: false}\n"));
  EXPECT_EQ(c.dedupe.key_header, "transaction_id");
  EXPECT_FALSE(c.inbox.create_table);
  EXPECT_THAT(error_line([] { parse(with("inbox: {create_table: sometimes}\n")); }), HasSubstr("inbox.create_table: "));
  EXPECT_THAT(error_line([] { parse(with("inbox: {create_tables: false}\n")); }),
              HasSubstr("did you mean `create_table`?"));
}

TEST(config_consumer, max_elapsed_and_replay_window) {
  const auto c = parse(with("retry: {max_elapsed: 10m}\ndlq: {replay_window: 3d}\n"));
  EXPECT_EQ(c.retry.max_elapsed, 10min);
  EXPECT_EQ(c.dlq.replay_window, 3 * 24h);
  EXPECT_EQ(parse(with("retry: {max_elapsed: 0s}\n")).retry.max_elapsed, 0ms);
  EXPECT_THAT(error_line([] { parse(with("retry: {max_elapsed: -1s}\n")); }),
              HasSubstr("retry.max_elapsed: `-1s` is negative"));
  EXPECT_THAT(error_line([] { parse(with("dlq: {replay_window: 0s}\n")); }),
              HasSubstr("dlq.replay_window: must be longer than 0s"));
}

TEST(config_consumer, retention_must_cover_the_retry_schedule_and_the_replay_window) {
  // fixed 30s x 5 delays = 2m30s in process; tiers 10s + 1m + 10m = 11m10s; replay 1d.
  constexpr std::string_view schedule =
      "retry:\n  schedule: fixed\n  initial: 30s\n  attempts: 6\n  topics: [10s, 1m, 10m]\n";
  EXPECT_EQ(error_line([&] { parse(with("dedupe:\n  retention: 1h\n" + std::string(schedule))); }),
            "ledger.yaml:5:3: dedupe.retention: 1h is shorter than the retry schedule (in-process 2m30s + tiers "
            "11m10s) plus dlq.replay_window 1d; raise dedupe.retention to at least 1d 13m40s (e.g. 2d) or shorten "
            "the schedule");
  EXPECT_EQ(parse(with("dedupe:\n  retention: 87220s\n" + std::string(schedule))).dedupe.retention, 87220s)
      << "exactly enough is enough";
  EXPECT_THAT(error_line([&] { parse(with("dedupe:\n  retention: 87219s\n" + std::string(schedule))); }),
              HasSubstr("dedupe.retention: 1d 13m39s is shorter"));
  EXPECT_THAT(error_line([&] { parse(with(std::string(schedule) + "dlq: {replay_window: 7d}\n")); }),
              HasSubstr("ledger.yaml:1:1: dedupe.retention: 7d is shorter than the retry schedule (in-process 2m30s "
                        "+ tiers 11m10s) plus dlq.replay_window 7d; raise dedupe.retention to at least 7d 13m40s "
                        "(e.g. 8d)"))
      << "the default retention, reported at the top when the file has no dedupe section";
  EXPECT_NO_THROW(parse(with(std::string(schedule) + "dlq: {replay_window: 6d}\n")));
}

TEST(config_consumer, retention_check_uses_each_schedule_worst_case) {
  const auto in_process = [](std::string_view retry) {
    const std::string line = error_line([&] { parse(with("dedupe: {retention: 1s}\nretry: " + std::string(retry))); });
    const auto from = line.find("(in-process ");
    const auto to = line.find(" + tiers");
    return from == std::string::npos || to == std::string::npos ? line : line.substr(from + 12, to - from - 12);
  };
  EXPECT_EQ(in_process("{}"), "3s") << "exponential 200ms..30s, 5 attempts: 200 + 400 + 800 + 1600 ms";
  EXPECT_EQ(in_process("{attempts: 10}"), "1m21s") << "... + 3.2s + 6.4s + 12.8s + 25.6s + 30s";
  EXPECT_EQ(in_process("{attempts: 1}"), "0s");
  EXPECT_EQ(in_process("{schedule: decorrelated, initial: 1s, max: 1m, attempts: 4}"), "3m") << "3 x max";
  EXPECT_EQ(in_process("{schedule: fixed, initial: 250ms, attempts: 5}"), "1s");
  EXPECT_EQ(in_process("{schedule: list, delays: [1m, 2m, 3m], attempts: 3}"), "3m") << "the first two";
  EXPECT_EQ(in_process("{schedule: list, delays: [1m, 2m, 3m], attempts: 100}"), "6m") << "the whole list";
  EXPECT_EQ(in_process("{schedule: wechatpay, attempts: 16}"), "1d 4m");
  EXPECT_EQ(in_process("{schedule: wechatpay, attempts: 1000}"), "1d 4m");
  EXPECT_EQ(in_process("{schedule: wechatpay}"), "4m") << "5 attempts: 15s 15s 30s 3m";
  EXPECT_EQ(in_process("{schedule: wechatpay, attempts: 16, max_elapsed: 1h}"), "1h") << "capped by max_elapsed";
  EXPECT_EQ(in_process("{initial: 1d, max: 1d, attempts: 1000}"), "999d") << "no overflow";

  // The wechatpay preset in full, with the default replay window, needs more than 2d.
  EXPECT_THAT(error_line([] { parse(with("dedupe: {retention: 2d}\nretry: {schedule: wechatpay, attempts: 16}\n")); }),
              HasSubstr("raise dedupe.retention to at least 2d 4m (e.g. 3d)"));
  EXPECT_NO_THROW(parse(with("dedupe: {retention: 3d}\nretry: {schedule: wechatpay, attempts: 16}\n")));
}

TEST(config_consumer, retry_topics_take_repeated_delays_and_the_wechatpay_preset) {
  EXPECT_THAT(parse(with("retry: {topics: [15s, 15s, 30s]}\n")).retry.topics, ElementsAre(15s, 15s, 30s))
      << "a repeated delay is one attempt per entry";
  const auto c = parse(with("dedupe: {retention: 3d}\nretry: {topics: wechatpay}\n"));
  EXPECT_EQ(c.retry.topics, wechatpay_delays());
  ASSERT_EQ(c.retry.topics.size(), 15u);
  std::chrono::milliseconds total(0);
  for (const auto d : c.retry.topics) total += d;
  EXPECT_EQ(total, 24h + 4min) << "15 attempts over 24 h 04 m";
  EXPECT_THAT(
      error_line([] { parse(with("retry: {topics: alipay}\n")); }),
      HasSubstr("retry.topics: expected a list of durations, e.g. [10s, 1m] or one of `wechatpay`, got `alipay`"));
  EXPECT_THAT(error_line([] { parse(with("retry: {topics: [10s, 0s]}\n")); }),
              HasSubstr("retry.topics: entry 1 is 0s; every tier waits longer than 0s"));
  // The whole preset counts toward the retention the dedupe store needs.
  EXPECT_THAT(error_line([] { parse(with("dedupe: {retention: 1d}\nretry: {topics: wechatpay}\n")); }),
              HasSubstr("dedupe.retention: 1d is shorter than the retry schedule (in-process 3s + tiers 1d 4m)"));
}

TEST(config_consumer, the_group_names_topics_so_it_is_topic_safe) {
  EXPECT_EQ(parse("consumer: {group_id: pay-ledger_v2.eu, topics: [t]}\n").consumer.group_id, "pay-ledger_v2.eu");
  EXPECT_THAT(error_line([] { parse("consumer: {group_id: \"pay ledger\", topics: [t]}\n"); }),
              HasSubstr("consumer.group_id: `pay ledger` has ` `; use letters, digits, `.`, `_` and `-` only"));
}

TEST(config_consumer, lease_cleanup_retention_check_and_derived_topics) {
  const auto c =
      parse(with("dedupe: {lease: 90s, cleanup_interval: 10s, cleanup_batch: 5000, retention_check: warn}\n"
                 "retry: {topic_replication_factor: 3, topic_retention: 14d}\n"
                 "dlq: {retention: 90d, probe_interval: 1m}\n"));
  EXPECT_EQ(c.dedupe.lease, 90s);
  EXPECT_EQ(c.dedupe.cleanup_interval, 10s);
  EXPECT_EQ(c.dedupe.cleanup_batch, 5000);
  EXPECT_EQ(c.dedupe.check, retention_check::warn);
  EXPECT_EQ(c.retry.topic_replication_factor, 3);
  EXPECT_EQ(c.retry.topic_retention, 14 * 24h);
  EXPECT_EQ(c.dlq.retention, 90 * 24h);
  EXPECT_EQ(c.dlq.probe_interval, 1min);
  EXPECT_THAT(error_line([] { parse(with("dlq: {retention: 3d}\n")); }),
              HasSubstr("dlq.retention: is 3d; it must be at least 7d"));
  EXPECT_THAT(error_line([] { parse(with("dedupe: {retention: 60d}\ndlq: {retention: 8d, replay_window: 10d}\n")); }),
              HasSubstr("dlq.retention: 8d is shorter than dlq.replay_window 10d"));
  EXPECT_THAT(error_line([] { parse(with("dedupe: {retention_check: maybe}\n")); }), HasSubstr("`refuse`, `warn`"));
  EXPECT_THAT(error_line([] { parse(with("retry: {topic_replication_factor: 0}\n")); }), HasSubstr("-1"));
}

TEST(config_consumer, retention_check_stays_quiet_when_a_key_it_needs_is_invalid) {
  EXPECT_THAT(test_util::error_lines([] { parse(with("dedupe: {retention: 1s}\nretry: {initial: soon}\n")); }),
              ElementsAre(HasSubstr("retry.initial: `soon` is not a duration")));
}

TEST(config_consumer, shipped_ledger_configs_load) {
  const std::vector<key_spec> ledger = {section("ledger", {string_key("dsn").required()})};
  ::setenv("LEDGER_PG_DSN", "host=127.0.0.1 dbname=ledger", 1);
  ::setenv("LEDGER_PG_PASSWORD", "pw", 1);
  for (const char* file : {"/examples/payment-ledger/ledger.yaml", "/deploy/config/ledger.yaml"}) {
    const auto c = load_consumer_config(std::string(OUTBOX_SOURCE_DIR) + file, ledger);
    EXPECT_EQ(c.dedupe.retention, 15 * 24h) << file;
  }
}

}  // namespace
}  // namespace outbox::config
