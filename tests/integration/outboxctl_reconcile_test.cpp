// outboxctl reconcile against real PostgreSQL and Kafka: the relay publishes a day's outbox, the SDK consumes it
// with the PostgreSQL inbox (applying, dead-lettering, applying a replay, dead-lettering a replay again), then one
// event never reaches the consumer and one inbox row has no outbox event; each is found in its bucket, from the
// outbox tables and from Kafka, and the exit codes.
#include "outbox/consumer/consumer.hpp"
#include "outbox/ctl/reconcile.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <csignal>
#include <map>
#include <set>
#include <thread>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class outboxctl_reconcile : public relay_fixture {
 protected:
  void SetUp() override {
    relay_fixture::SetUp();
    m_group = unique_name("recg");
    m_inbox = unique_name("rec_inbox");
    m_dead = unique_name("rec_dead");
  }
  void TearDown() override {
    pg_exec("DROP TABLE IF EXISTS " + m_inbox + "_parked");
    pg_exec("DROP TABLE IF EXISTS " + m_inbox);
    pg_exec("DROP TABLE IF EXISTS " + m_dead);
    relay_fixture::TearDown();
  }

  static command_result ctl(std::vector<std::string> args) {
    args.insert(args.begin(), OUTBOX_OUTBOXCTL_BIN);
    return run_command(args, 120s);
  }

  /// The inbox side and a window of the last hour up to now.
  std::vector<std::string> inbox_args() const {
    return {"reconcile",
            "--group",
            m_group,
            "--inbox-dsn",
            require_services().pg_dsn,
            "--inbox-table",
            m_inbox,
            "--dead-letter-table",
            m_dead,
            "--since",
            "1h",
            "--until",
            "0s",
            "--grace",
            "0s"};
  }
  std::vector<std::string> tables_args(const std::string& table) const {
    auto a = inbox_args();
    for (const std::string& s :
         {std::string("--outbox-dsn"), require_services().pg_dsn, std::string("--table"), "public." + table}) {
      a.push_back(s);
    }
    return a;
  }
  std::vector<std::string> kafka_args(const std::string& topic) const {
    auto a = inbox_args();
    for (const std::string& s : {std::string("--from-kafka"), std::string("--brokers"),
                                 require_services().kafka_brokers, std::string("--topic"), topic}) {
      a.push_back(s);
    }
    return a;
  }

  /// The id of the row whose payload kind is `kind`.
  static std::string id_of(const std::string& table, const std::string& kind) {
    return pg_scalar("SELECT id::text FROM " + table + " WHERE payload->>'kind' = '" + kind + "'");
  }
  long count(const std::string& table, const std::string& where = "true") const {
    return std::stol(pg_scalar("SELECT count(*) FROM " + table + " WHERE " + where));
  }

  std::string m_group;
  std::string m_inbox;
  std::string m_dead;
};

/// The buckets a JSON report puts each listed id in.
std::map<std::string, std::string> listed(const nlohmann::json& j) {
  std::map<std::string, std::string> out;
  for (const auto& e : j["missing_ids"]) out[e["id"].get<std::string>()] = "missing";
  for (const auto& e : j["dead_lettered_ids"]) out[e["id"].get<std::string>()] = "dead_lettered";
  for (const auto& e : j["foreign_ids"]) out[e["id"].get<std::string>()] = "foreign";
  return out;
}

TEST_F(outboxctl_reconcile, a_day_with_a_dropped_a_dead_lettered_a_replayed_and_a_foreign_event_exits_3) {
  const auto topic = unique_name("rec");
  const auto t = create_table("ob_rec");
  kafka_create_topic(topic, 2);
  start_relay(config(tables({t})));
  auto insert = [&](const std::string& kind, int n = 1) {
    pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
            "', 'k' || g, 'e', jsonb_build_object('kind', '" + kind + "', 'n', g) FROM generate_series(1, " +
            std::to_string(n) + ") g");
  };
  insert("ok", 3);
  insert("poison");  // fatal: dead-lettered, never replayed
  insert("flaky");   // fatal until replayed, then applied
  insert("broken");  // fatal, replayed, fatal again
  ASSERT_EQ(kafka_consume(topic, 6, 60s).size(), 6U);

  consumer::consumer_options o;
  o.brokers = require_services().kafka_brokers;
  o.group_id = m_group;
  o.topics = {topic};
  o.commit_interval = 200ms;
  o.stop_timeout = 20s;
  o.properties = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}};
  o.retry.max_attempts = 1;
  o.check_retention = consumer::retention_check::off;
  o.inbox = consumer::inbox_options{require_services().pg_dsn, m_inbox, 240h, 72h, m_dead};
  consumer::consumer c(std::move(o), consumer::transactional_handler([](const consumer::record& r, pqxx::work&) {
                         const std::string value = r.value.value_or("");
                         const bool replayed = r.header("dlq_replay_count").has_value();
                         if (value.find("poison") != std::string::npos)
                           return consumer::outcome::fatal("amount_cents < 0");
                         if (value.find("broken") != std::string::npos) return consumer::outcome::fatal("still broken");
                         if (value.find("flaky") != std::string::npos && !replayed) {
                           return consumer::outcome::fatal("account unknown");
                         }
                         return consumer::outcome::done();
                       }));
  std::string run_error;
  std::thread runner([&] {
    try {
      c.run();
    } catch (const std::exception& e) {
      run_error = e.what();
    }
  });
  const std::string applied_sql = "consumer_group = '" + m_group + "'";
  ASSERT_TRUE(wait_until([&] { return count(m_inbox) == 3 && count(m_dead) == 3; }, 60s))
      << count(m_inbox) << " applied, " << count(m_dead) << " dead letters; " << run_error;
  const std::string poison = id_of(t, "poison");
  const std::string flaky = id_of(t, "flaky");
  const std::string broken = id_of(t, "broken");
  EXPECT_EQ(pg_scalar("SELECT topic || ' ' || error_class || ' ' || error_message || ' ' || (replayed_at IS NULL) "
                      "FROM " +
                      m_dead + " WHERE event_id = '" + poison + "' AND " + applied_sql),
            topic + " fatal amount_cents < 0 true");

  // Replay two of them through the group's replay topic: one applies now, one fails again.
  const std::string dlq_topic = topic + "." + m_group + ".dlq";
  for (const auto& id : {flaky, broken}) {
    const auto r =
        ctl({"dlq", "replay", "--brokers", require_services().kafka_brokers, "--topic", dlq_topic, "--event-id", id});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  ASSERT_TRUE(wait_until(
      [&] {
        return count(m_inbox, "event_id = '" + flaky + "'") == 1 &&
               count(m_dead, "event_id = '" + broken + "' AND replayed_at IS NOT NULL") == 1;
      },
      60s))
      << run_error;
  EXPECT_EQ(count(m_dead, "event_id = '" + flaky + "' AND replayed_at IS NOT NULL"), 1)
      << "the applied replay is noted in the inbox transaction";
  c.stop();
  runner.join();
  EXPECT_EQ(run_error, "");

  // One more event the consumer never sees, and an inbox row the outbox never had.
  insert("dropped");
  const std::string dropped = id_of(t, "dropped");
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 7; }, 60s));
  ASSERT_EQ(m_relay->stop(SIGTERM, 30s), 0);
  pg_exec("INSERT INTO " + m_inbox + " (consumer_group, event_id) VALUES ('" + m_group + "', 'foreign-1')");

  const std::map<std::string, std::string> expected{
      {dropped, "missing"}, {poison, "dead_lettered"}, {broken, "dead_lettered"}, {"foreign-1", "foreign"}};
  for (const bool from_kafka : {false, true}) {
    SCOPED_TRACE(from_kafka ? "from Kafka" : "from the outbox table");
    auto args = from_kafka ? kafka_args(topic) : tables_args(t);
    args.emplace_back("--json");
    const auto r = ctl(args);
    ASSERT_EQ(r.exit_code, 3) << r.output;
    const auto j = nlohmann::json::parse(r.output);
    EXPECT_EQ(j["source"], from_kafka ? "kafka" : "outbox");
    EXPECT_EQ(j["group"], m_group);
    EXPECT_EQ(j["tz"], "UTC");
    EXPECT_EQ(j["events"], 7);
    EXPECT_EQ(j["applied"], 4) << "3 ok and the replayed one: applied wins over its dead letter";
    EXPECT_EQ(j["dead_lettered"], 2);
    EXPECT_EQ(j["missing"], 1);
    EXPECT_EQ(j["foreign"], 1);
    EXPECT_EQ(j["replayed_applied"], 1);
    EXPECT_EQ(j["complete"], false);
    EXPECT_EQ(listed(j), expected);
    for (const auto& e : j["dead_lettered_ids"]) {
      EXPECT_EQ(e["topic"], topic);
      EXPECT_EQ(e["error_class"], "fatal");
      EXPECT_EQ(e["replayed"], e["id"] == broken) << e.dump();
    }
    EXPECT_EQ(j["missing_ids"][0]["topic"], topic);
    std::uint64_t per_topic = 0;
    for (const auto& tp : j["topics"])
      per_topic += tp["events"].get<std::uint64_t>() + tp["foreign"].get<std::uint64_t>();
    std::uint64_t per_hour = 0;
    for (const auto& h : j["hours"]) per_hour += h["events"].get<std::uint64_t>() + h["foreign"].get<std::uint64_t>();
    EXPECT_EQ(per_topic, 8U);
    EXPECT_EQ(per_hour, 8U);
  }

  const auto text = ctl(tables_args(t));
  EXPECT_EQ(text.exit_code, 3);
  EXPECT_THAT(text.output, HasSubstr("7 events, 4 applied, 2 dead-lettered, 1 missing, 1 foreign"));
  EXPECT_THAT(text.output, HasSubstr("missing " + topic + " " + dropped));
  EXPECT_THAT(text.output, HasSubstr("dead-lettered " + topic + " " + broken + " fatal (replayed "));
  EXPECT_THAT(text.output, HasSubstr("foreign foreign-1 applied "));
  EXPECT_THAT(text.output, HasSubstr("reconcile: GAP"));

  // The same answer through the library with a budget that forces sorted runs onto disk.
  ctl::reconcile_options lo;
  lo.outbox.dsn = require_services().pg_dsn;
  ctl::verify_table vt;
  vt.source.schema = "public";
  vt.source.table = t;
  vt.source.columns = config::column_map{"id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers"};
  lo.outbox.tables.push_back(vt);
  lo.inbox_dsn = require_services().pg_dsn;
  lo.inbox_table = m_inbox;
  lo.dead_letter_table = m_dead;
  lo.group = m_group;
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  lo.since_ms = now_ms - 3'600'000;
  lo.until_ms = now_ms + 1000;
  lo.memory_budget = 300;
  const auto spilled = ctl::reconcile(lo);
  EXPECT_GT(spilled.spilled_runs, 1);
  EXPECT_EQ(spilled.total.events, 7U);
  EXPECT_EQ(spilled.total.applied, 4U);
  EXPECT_EQ(spilled.total.dead_lettered, 2U);
  EXPECT_EQ(spilled.total.missing, 1U);
  EXPECT_EQ(spilled.total.foreign, 1U);

  // Once the dropped event is applied, everything is accounted for.
  pg_exec("INSERT INTO " + m_inbox + " (consumer_group, event_id) VALUES ('" + m_group + "', '" + dropped + "')");
  const auto ok = ctl(tables_args(t));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("reconcile: complete"));
}

TEST_F(outboxctl_reconcile, bad_flags_exit_2_and_unreachable_or_missing_tables_exit_1_naming_the_problem) {
  const auto t = create_table("ob_recbad");
  struct bad_case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::string dsn = require_services().pg_dsn;
  const std::vector<bad_case> cases{
      {{"reconcile", "--inbox-dsn", dsn, "--outbox-dsn", dsn}, "--group is required"},
      {{"reconcile", "--group", "g", "--inbox-dsn", dsn, "--outbox-dsn", dsn, "--tz", "Mars/Olympus"},
       "--tz 'Mars/Olympus' is neither an IANA zone name"},
      {{"reconcile", "--group", "g", "--inbox-dsn", dsn, "--outbox-dsn", dsn, "--date", "2026-11-30", "--since", "2h"},
       "--date gives the whole day"},
      {{"reconcile", "--group", "g", "--inbox-dsn", dsn, "--from-kafka", "--brokers", "127.0.0.1:1"},
       "--from-kafka needs at least one --topic"},
      {{"reconcile", "--group", "g", "--inbox-dsn", dsn, "--outbox-dsn", dsn, "--frobnicate", "1"},
       "unknown argument '--frobnicate'"},
      {{"reconcile", "--group", "g", "--inbox-dsn", dsn, "--outbox-dsn", dsn, "--since", "yesterday"},
       "--since 'yesterday' is neither an RFC 3339 time"},
  };
  for (const auto& c : cases) {
    const auto r = ctl(c.args);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.message));
  }

  const auto down = ctl({"reconcile", "--group", "g", "--outbox-dsn", dsn, "--table", t, "--inbox-dsn",
                         "host=127.0.0.1 port=1 dbname=outbox connect_timeout=2", "--since", "1h", "--until", "0s"});
  EXPECT_EQ(down.exit_code, 1) << down.output;
  EXPECT_THAT(down.output, HasSubstr("outboxctl reconcile: "));
  EXPECT_THAT(down.output, HasSubstr("port=1"));

  const auto no_inbox = ctl({"reconcile", "--group", "g", "--outbox-dsn", dsn, "--table", t, "--inbox-dsn", dsn,
                             "--inbox-table", "no_such_inbox", "--since", "1h", "--until", "0s"});
  EXPECT_EQ(no_inbox.exit_code, 1) << no_inbox.output;
  EXPECT_THAT(no_inbox.output, HasSubstr("reading the inbox table no_such_inbox"));
}

}  // namespace
}  // namespace outbox::test
