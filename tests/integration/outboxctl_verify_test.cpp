// outboxctl verify against real PostgreSQL and Kafka: complete, then a gap made with Kafka's DeleteRecords, a
// delete_after_publish backlog, the relay's own config, several passes, and the exit codes.
#include "outbox/ctl/verify.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <set>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class outboxctl_verify : public relay_fixture {
 protected:
  static command_result ctl(std::vector<std::string> args) {
    args.insert(args.begin(), OUTBOX_OUTBOXCTL_BIN);
    return run_command(args, 120s);
  }

  std::vector<std::string> base_args(const std::string& table) const {
    return {"verify",
            "--dsn",
            require_services().pg_dsn,
            "--brokers",
            require_services().kafka_brokers,
            "--table",
            "public." + table,
            "--since",
            "1h",
            "--grace",
            "0s"};
  }

  /// `n` rows for `topic`, keys k0..k4, in transactions of 10.
  static void insert(const std::string& table, const std::string& topic, int n) {
    for (int i = 0; i < n; i += 10) {
      pg_exec("INSERT INTO " + table + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
              "', 'k' || (g % 5), 'e', '{}' FROM generate_series(1, " + std::to_string(std::min(10, n - i)) + ") g");
    }
  }
};

TEST_F(outboxctl_verify, complete_then_a_gap_after_delete_records_exits_3_naming_the_missing_events) {
  const auto topic = unique_name("verify");
  const auto t = create_table("ob_verify");
  kafka_create_topic(topic, 2);
  start_relay(config(tables({t})));
  insert(t, topic, 60);
  ASSERT_EQ(kafka_consume(topic, 60, 60s).size(), 60U);

  const auto ok = ctl(base_args(t));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("60 rows, 0 missing, 0 duplicated"));
  EXPECT_THAT(ok.output, HasSubstr("verify: complete"));

  // Kafka loses partition 0's records (DeleteRecords up to its end).
  const auto records = kafka_consume(topic, 60, 30s);
  std::set<std::string> lost;
  long long end0 = 0;
  for (const auto& r : records) {
    if (r.partition == 0) {
      lost.insert(r.header("event_id").value_or(""));
      end0 = std::max(end0, r.offset + 1);
    }
  }
  ASSERT_FALSE(lost.empty());
  kafka_delete_records(topic, 0, end0);

  auto args = base_args(t);
  args.emplace_back("--json");
  const auto gap = ctl(args);
  EXPECT_EQ(gap.exit_code, 3) << gap.output;
  const auto j = nlohmann::json::parse(gap.output);
  EXPECT_EQ(j["rows"], 60);
  EXPECT_EQ(j["missing"], lost.size());
  EXPECT_EQ(j["complete"], false);
  ASSERT_EQ(j["topics"].size(), 1U);
  EXPECT_EQ(j["topics"][0]["topic"], topic);
  std::set<std::string> listed;
  for (const auto& id : j["topics"][0]["missing_ids"]) listed.insert(id.get<std::string>());
  EXPECT_EQ(listed, lost);
  const auto text = ctl(base_args(t));
  EXPECT_EQ(text.exit_code, 3);
  EXPECT_THAT(text.output, HasSubstr("missing " + topic + " " + *lost.begin()));
  EXPECT_THAT(text.output, HasSubstr("verify: GAP"));
}

TEST_F(outboxctl_verify, duplicates_are_counted_and_several_passes_give_the_same_answer) {
  const auto topic = unique_name("verifydup");
  const auto t = create_table("ob_verifydup");
  start_relay(config(tables({t})));
  insert(t, topic, 40);
  ASSERT_EQ(kafka_consume(topic, 40, 60s).size(), 40U);
  // The relay publishes the same events again after losing its slot position: --recreate-slot backfills them.
  ASSERT_EQ(m_relay->stop(SIGTERM, 30s), 0);
  restart_relay(std::vector<std::string>{"--recreate-slot"});
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 80; }, 60s));

  ctl::verify_options o;
  o.dsn = require_services().pg_dsn;
  o.brokers = require_services().kafka_brokers;
  ctl::verify_table vt;
  vt.source.schema = "public";
  vt.source.table = t;
  vt.source.columns = config::column_map{"id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers"};
  o.tables.push_back(vt);
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  o.since_ms = now_ms - 3'600'000;
  o.until_ms = now_ms + 1000;
  const auto one = ctl::verify(o);
  EXPECT_EQ(one.passes, 1);
  EXPECT_EQ(one.rows, 40U);
  EXPECT_EQ(one.missing, 0U);
  EXPECT_EQ(one.duplicated, 40U);
  EXPECT_TRUE(one.complete()) << "duplicates are not a gap";
  o.memory_budget = 16 * 30;  // forces passes
  const auto many = ctl::verify(o);
  EXPECT_GT(many.passes, 1);
  EXPECT_EQ(many.rows, one.rows);
  EXPECT_EQ(many.missing, one.missing);
  EXPECT_EQ(many.duplicated, one.duplicated);
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(outboxctl_verify, with_delete_after_publish_rows_still_in_the_table_are_a_backlog_not_a_gap) {
  const auto topic = unique_name("verifywait");
  const auto t = create_table("ob_verifywait");
  const std::string yaml = config("    - name: public." + t + "\n      delete_after_publish: true\n");
  start_relay(yaml);
  insert(t, topic, 20);
  ASSERT_TRUE(wait_until([&] { return pg_scalar("SELECT count(*) FROM " + t) == "0"; }, 60s));
  ASSERT_EQ(m_relay->stop(SIGTERM, 30s), 0);
  insert(t, topic, 7);  // written while the relay is stopped: waiting

  auto args = base_args(t);
  args.emplace_back("--json");
  // verify --config reads delete_after_publish from the relay's config.
  const auto r = ctl({"verify", "--config", m_config_path, "--since", "1h", "--grace", "0s", "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["waiting"], 7);
  EXPECT_EQ(j["missing"], 0);
  ASSERT_EQ(j["topics"].size(), 1U);
  EXPECT_FALSE(j["topics"][0]["oldest_waiting"].is_null());
  EXPECT_EQ(j["topics"][0]["waiting_ids"].size(), 7U);
}

TEST_F(outboxctl_verify, bad_flags_exit_2_and_an_unreachable_kafka_exits_1) {
  const auto t = create_table("ob_verifyerr");
  EXPECT_EQ(ctl({"verify", "--frobnicate"}).exit_code, 2);
  EXPECT_EQ(ctl({"verify", "--dsn", "x"}).exit_code, 2) << "no --brokers";
  auto bad_since = base_args(t);
  bad_since[8] = "yesterday-ish";
  const auto since = ctl(bad_since);
  EXPECT_EQ(since.exit_code, 2);
  EXPECT_THAT(since.output, HasSubstr("--since"));
  insert(t, "some_topic", 3);
  auto unreachable = base_args(t);
  unreachable[4] = "127.0.0.1:1";
  const auto r = ctl(unreachable);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("127.0.0.1:1"));
  EXPECT_EQ(r.output.find(std::getenv("OUTBOX_PG_PASSWORD")), std::string::npos) << "password leaked";
}

}  // namespace
}  // namespace outbox::test
