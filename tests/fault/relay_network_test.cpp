// outbox-relay when the network or a lock stops answering instead of failing: PostgreSQL and Kafka blackholed
// through a TCP proxy, a row lock held against delete_after_publish, and readiness following both sides. The relay
// must never freeze: SIGTERM is answered within relay.shutdown_timeout, /readyz tells the truth within seconds,
// and nothing is lost once the network heals.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"
#include "outbox/test/stream_check.hpp"
#include "outbox/test/tcp_proxy.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class relay_network : public relay_fixture {
 protected:
  static int env_port(const char* name) {
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') {
      ADD_FAILURE() << name << " is not set: run through scripts/test.sh (scripts/services.sh start exports it)";
      return 0;
    }
    return std::atoi(v);
  }

  /// `n` rows for `topic` in transactions of `per_tx`, keys k0..k9, ids <prefix>-<i>; returns them in commit order.
  static std::vector<expected_event> insert(const std::string& table, const std::string& topic,
                                            const std::string& prefix, int n, int per_tx = 5) {
    std::vector<expected_event> out;
    for (int i = 0; i < n; i += per_tx) {
      std::string sql = "INSERT INTO " + table + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ";
      for (int j = i; j < std::min(n, i + per_tx); ++j) {
        char id[40];
        std::snprintf(id, sizeof id, "%08x-0000-4000-8000-%012x",
                      static_cast<unsigned>(std::hash<std::string>{}(prefix)), static_cast<unsigned>(j));
        const std::string key = "k" + std::to_string(j % 10);
        sql += (j > i ? ", ('" : "('") + std::string(id) + "', '" + topic + "', '" + key + "', 'e', '{}')";
        out.push_back({key, id});
      }
      pg_exec(sql);
    }
    return out;
  }

  /// How long SIGTERM takes to stop the relay; -1 on timeout. `exit_code` gets the code.
  std::chrono::milliseconds time_sigterm(int& exit_code) {
    const auto t0 = std::chrono::steady_clock::now();
    exit_code = m_relay->stop(SIGTERM, 60s);
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  }

  bool ready() const { return http_get("/readyz").first == 200; }
};

TEST_F(relay_network, postgresql_blackholed_for_30s_never_freezes_the_relay_and_loses_nothing) {
  const auto topic = unique_name("pghole");
  const auto t = create_table("ob_pghole");
  tcp_proxy proxy(env_port("OUTBOX_PG_PORT"));
  std::string yaml = config(tables({t}), "  stream_timeout: 6s\n  connect_timeout: 2s\n  tcp_user_timeout: 5s\n");
  yaml.replace(yaml.find("${OUTBOX_PG_DSN}"), 16,
               "\"host=127.0.0.1 port=" + std::to_string(proxy.port()) +
                   " user=postgres password=" + std::getenv("OUTBOX_PG_PASSWORD") + " dbname=outbox\"");
  yaml.replace(yaml.find("  shutdown_timeout: 20s\n"), 24, "  shutdown_timeout: 5s\n");
  start_relay(yaml);
  auto expected = insert(t, topic, "before", 50);
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 50; }, 60s));
  ASSERT_TRUE(wait_until([&] { return ready(); }, 15s));

  proxy.blackhole();
  const auto cut = std::chrono::steady_clock::now();
  // Rows committed during the cut reach the server (the test connects directly), not the relay.
  const auto during = insert(t, topic, "during", 50);
  expected.insert(expected.end(), during.begin(), during.end());
  EXPECT_TRUE(wait_until([&] { return !ready(); }, 20s, 250ms)) << "readiness stayed 200 with PostgreSQL blackholed";
  const auto noticed = std::chrono::steady_clock::now() - cut;
  EXPECT_EQ(http_get("/healthz").first, 200) << "the loop answers the endpoint during the cut";
  EXPECT_TRUE(m_relay->wait_for_log("no message from PostgreSQL", 30s)) << "the liveness check reconnects";
  std::this_thread::sleep_until(cut + 30s);  // the cut itself
  proxy.heal();

  const auto records = consume_until_complete(topic, expected, 120s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok(true)) << v.detail << m_relay->log().substr(0, 4000);
  EXPECT_TRUE(wait_until([&] { return ready(); }, 30s)) << "readiness did not come back after the cut";
  std::cout << "[ report ] PostgreSQL blackholed 30 s: readiness 503 after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(noticed).count() << " ms, " << v.duplicated
            << " published again\n";

  // SIGTERM during a second cut is still answered within shutdown_timeout.
  proxy.blackhole();
  EXPECT_TRUE(wait_until([&] { return !ready(); }, 20s, 250ms));
  int code = -1;
  const auto took = time_sigterm(code);
  EXPECT_EQ(code, 0) << m_relay->log();
  EXPECT_LT(took, 10s) << "SIGTERM took " << took.count() << " ms with PostgreSQL blackholed";
  proxy.heal();
}

TEST_F(relay_network, kafka_blackholed_for_30s_never_freezes_the_relay_and_loses_nothing) {
  const auto topic = unique_name("kafkahole");
  const auto t = create_table("ob_kafkahole");
  kafka_create_topic(topic, 3);
  // The broker's PROXIED listener advertises OUTBOX_KAFKA_PROXY_PORT, where this proxy listens: every connection
  // the relay's producer makes goes through it.
  tcp_proxy proxy(env_port("OUTBOX_KAFKA_PROXIED_PORT"), env_port("OUTBOX_KAFKA_PROXY_PORT"));
  std::string yaml = config(tables({t}));
  yaml.replace(yaml.find("${OUTBOX_KAFKA_BROKERS}"), 23, "127.0.0.1:" + std::to_string(proxy.port()));
  yaml.replace(yaml.find("  shutdown_timeout: 20s\n"), 24, "  shutdown_timeout: 5s\n");
  start_relay(yaml);
  auto expected = insert(t, topic, "before", 50);
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 50; }, 60s));
  ASSERT_TRUE(wait_until([&] { return ready(); }, 15s));

  proxy.blackhole();
  const auto cut = std::chrono::steady_clock::now();
  const auto during = insert(t, topic, "during", 50);
  expected.insert(expected.end(), during.begin(), during.end());
  EXPECT_TRUE(wait_until([&] { return !ready(); }, 25s, 250ms)) << "readiness stayed 200 with Kafka blackholed";
  const auto noticed = std::chrono::steady_clock::now() - cut;
  EXPECT_THAT(http_get("/readyz").second, HasSubstr("Kafka"));
  EXPECT_EQ(metric("outbox_relay_kafka_up"), 0.0);
  std::this_thread::sleep_until(cut + 30s);
  EXPECT_TRUE(m_relay->running());
  proxy.heal();

  const auto records = consume_until_complete(topic, expected, 120s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok(true)) << v.detail;
  EXPECT_TRUE(wait_until([&] { return ready(); }, 30s)) << "readiness did not come back after the cut";
  std::cout << "[ report ] Kafka blackholed 30 s: readiness 503 after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(noticed).count() << " ms, " << v.duplicated
            << " published again\n";

  // SIGTERM with records stuck in a blackholed producer: answered within shutdown_timeout (5s), and the records
  // whose acknowledgement never came are published again by the next start. The consumer above can see the last
  // records before the relay has their acknowledgements: wait for those first, so that what is in flight below
  // is the stuck records.
  ASSERT_TRUE(wait_until([&] { return metric("outbox_relay_inflight_messages").value_or(1) == 0; }, 20s));
  proxy.blackhole();
  const auto stuck = insert(t, topic, "stuck", 10);
  expected.insert(expected.end(), stuck.begin(), stuck.end());
  ASSERT_TRUE(wait_until([&] { return metric("outbox_relay_inflight_messages").value_or(0) > 0; }, 20s));
  int code = -1;
  const auto took = time_sigterm(code);
  EXPECT_EQ(code, 0) << m_relay->log();
  EXPECT_LT(took, 12s) << "SIGTERM took " << took.count() << " ms with Kafka blackholed";
  EXPECT_THAT(m_relay->log(), HasSubstr("shutdown timeout"));
  proxy.heal();
  restart_relay();
  const auto after = consume_until_complete(topic, expected, 120s);
  EXPECT_TRUE(check_stream(after, expected).ok(true)) << check_stream(after, expected).detail;
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_network, a_row_lock_against_delete_after_publish_never_freezes_the_stream) {
  const auto topic = unique_name("locked");
  const auto t = create_table("ob_locked");
  start_relay(config("    - name: public." + t + "\n      delete_after_publish: true\n", "  lock_timeout: 1s\n"));
  auto expected = insert(t, topic, "first", 20);
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 20; }, 60s));
  ASSERT_TRUE(wait_until([&] { return pg_scalar("SELECT count(*) FROM " + t) == "0"; }, 30s));

  // A maintenance job holds row locks on rows the relay must delete.
  pqxx::connection locker(require_services().pg_dsn);
  pqxx::work hold(locker);
  const auto second = insert(t, topic, "second", 20);
  hold.exec("SELECT 1 FROM " + t + " FOR UPDATE");
  expected.insert(expected.end(), second.begin(), second.end());
  // The stream goes on while the deletes wait and fail on lock_timeout.
  const auto third = insert(t, topic, "third", 20);
  expected.insert(expected.end(), third.begin(), third.end());
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 60; }, 60s)) << "the stream froze behind the lock";
  EXPECT_TRUE(wait_until([&] { return metric("outbox_relay_delete_errors_total").value_or(0) > 0; }, 30s));
  EXPECT_GT(metric("outbox_relay_delete_backlog_rows").value_or(0), 0);
  EXPECT_THAT(m_relay->log(), HasSubstr("deleting published rows failed; will retry"));
  EXPECT_TRUE(ready()) << "a failing delete does not make the relay unready";
  hold.abort();

  EXPECT_TRUE(wait_until([&] { return pg_scalar("SELECT count(*) FROM " + t) == "0"; }, 60s))
      << "the deletes caught up once the lock was gone";
  const auto records = kafka_consume(topic, expected.size(), 60s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail;
  int code = -1;
  const auto took = time_sigterm(code);
  EXPECT_EQ(code, 0);
  EXPECT_LT(took, 5s);
}

TEST_F(relay_network, readiness_follows_a_broker_restart_with_no_new_events) {
  const auto t = create_table("ob_ready");
  start_relay(config(tables({t})));
  ASSERT_TRUE(wait_until([&] { return ready(); }, 15s));
  const char* script = std::getenv("OUTBOX_SERVICES_SCRIPT");
  ASSERT_NE(script, nullptr);
  ASSERT_EQ(run_command({"/bin/bash", script, "stop", "kafka"}, 120s).exit_code, 0);
  EXPECT_TRUE(wait_until([&] { return !ready(); }, 30s, 250ms)) << "readiness stayed 200 with Kafka stopped";
  EXPECT_EQ(metric("outbox_relay_kafka_up"), 0.0);
  EXPECT_GT(metric("outbox_relay_publish_errors_total{reason=\"all_brokers_down\"}").value_or(0) +
                metric("outbox_relay_publish_errors_total{reason=\"transport\"}").value_or(0),
            0)
      << "transient Kafka errors are counted";
  ASSERT_EQ(run_command({"/bin/bash", script, "start", "kafka"}, 180s).exit_code, 0);
  // No event is written: readiness must come back from the probe alone.
  EXPECT_TRUE(wait_until([&] { return ready(); }, 60s, 250ms)) << http_get("/readyz").second;
  EXPECT_EQ(metric("outbox_relay_kafka_up"), 1.0);
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

}  // namespace
}  // namespace outbox::test
