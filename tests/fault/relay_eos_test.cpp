// sink.delivery: exactly_once under faults: Kafka transactions cut on PostgreSQL commit boundaries, with the
// checkpoint in the same transaction. The relay is killed -9 at seeded moments while transactions of 1-30 rows flow
// over 100 keys; a read_committed consumer (librdkafka's, and kcat as a second witness) sees every event exactly
// once and in commit order per key. A PostgreSQL transaction far larger than a Kafka transaction is split, and a
// kill in its middle resumes exactly after the last committed part.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"
#include "outbox/test/stream_check.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

std::string event_id(std::uint64_t n) {
  char id[40];
  std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012llx", static_cast<unsigned long long>(n));
  return id;
}

class relay_eos : public relay_fixture {
 protected:
  std::string eos_config(const std::string& table, const std::string& extra_sink = "") {
    m_checkpoints = unique_name("checkpoints");
    return config(tables({table}), "", "",
                  "  delivery: exactly_once\n  checkpoint_topic: " + m_checkpoints + "\n" + extra_sink);
  }

  /// Every record of `topic` as kcat reads it with isolation.level=read_committed: the event_id headers.
  static std::vector<std::string> kcat_event_ids(const std::string& topic) {
    const auto r = run_command({"/usr/bin/kcat", "-C", "-b", require_services().kafka_brokers, "-t", topic, "-o", "beginning",
                                "-e", "-q", "-X", "isolation.level=read_committed", "-f", "%h\\n"},
                               120s);
    std::vector<std::string> ids;
    std::istringstream in(r.output);
    for (std::string line; std::getline(in, line);) {
      const auto at = line.find("event_id=");
      if (at == std::string::npos) continue;
      ids.push_back(line.substr(at + 9, 36));
    }
    return ids;
  }

  std::string m_checkpoints;
};

TEST_F(relay_eos, kill_9_at_six_seeded_moments_and_read_committed_consumers_see_each_event_once_in_order) {
  std::mt19937_64 rng(run_seed() ^ 0xe05ULL);
  const auto topic = unique_name("eos");
  const auto t = create_table("ob_eos");
  start_relay(eos_config(t));

  constexpr int k_events = 20'000;
  constexpr int k_keys = 100;
  std::vector<expected_event> expected;
  expected.reserve(k_events);
  std::mutex mutex;
  std::atomic<bool> done{false};
  std::thread writer([&, seed = rng()] {
    std::mt19937_64 wr(seed);
    pqxx::connection c(require_services().pg_dsn);
    int n = 0;
    while (n < k_events) {
      const int rows = std::min<int>(k_events - n, 1 + static_cast<int>(wr() % 30));
      std::string sql = "INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ";
      std::vector<expected_event> batch;
      for (int j = 0; j < rows; ++j, ++n) {
        const std::string key = "acct-" + std::to_string(wr() % k_keys);
        const std::string id = event_id(static_cast<std::uint64_t>(n));
        sql += (j > 0 ? ", ('" : "('") + id + "', '" + topic + "', '" + key + "', 'e', '{\"n\": " + std::to_string(n) +
               "}')";
        batch.push_back({key, id});
      }
      pqxx::work w(c);
      w.exec(sql);
      w.commit();
      {
        const std::lock_guard lock(mutex);
        expected.insert(expected.end(), batch.begin(), batch.end());
      }
      if (n % 600 == 0) std::this_thread::sleep_for(20ms);  // about 2 s of load in all
    }
    done = true;
  });

  // Six kills at seeded moments while the load runs; the relay is started again at once each time.
  for (int kill = 0; kill < 6; ++kill) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 600));
    EXPECT_EQ(m_relay->stop(SIGKILL, 10s), 128 + SIGKILL);
    restart_relay();
    ASSERT_FALSE(HasFatalFailure());
  }
  writer.join();
  ASSERT_TRUE(done.load());

  const auto records = kafka_consume_until(
      topic,
      [&](const std::vector<consumed_record>& seen) {
        return seen.size() >= expected.size() && check_stream(seen, expected).missing == 0;
      },
      180s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail << "\n" << m_relay->log().substr(0, 4000);
  EXPECT_EQ(v.duplicated, 0U) << "a read_committed consumer saw an event twice";
  std::cout << "[ eos      ] " << expected.size() << " events, " << records.size() << " records read committed, "
            << v.duplicated << " duplicates, " << v.missing << " missing\n";

  // kcat, a client no one here wrote, reads the same: each event id once.
  const auto ids = kcat_event_ids(topic);
  std::set<std::string> unique(ids.begin(), ids.end());
  EXPECT_EQ(ids.size(), expected.size()) << "kcat read_committed saw " << ids.size() << " records";
  EXPECT_EQ(unique.size(), expected.size());
  // Kills aborted transactions whose records are in the log; a read_uncommitted reader would see them.
  std::cout << "[ eos      ] records in the topic's log (aborted ones and markers included): "
            << kafka_record_count(topic) << "\n";
  EXPECT_GT(metric("outbox_relay_kafka_transactions_total{outcome=\"committed\"}").value_or(0), 0);
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

TEST_F(relay_eos, a_large_postgresql_transaction_spans_kafka_transactions_and_a_kill_resumes_after_the_last_part) {
  const auto topic = unique_name("eosbig");
  const auto t = create_table("ob_eosbig");
  start_relay(eos_config(t, "  transaction_max_records: 20000\n"));
  constexpr int k_rows = 300'000;
  pg_exec("INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type, payload) SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, '" +
          topic + "', 'k' || (g % 50), 'e', jsonb_build_object('n', g) FROM generate_series(0, " +
          std::to_string(k_rows - 1) + ") g");
  // Kill once part of the transaction is committed in Kafka (a read_committed reader sees it), then let the
  // restart finish it.
  const auto committed_part = kafka_consume_until(
      topic, [](const std::vector<consumed_record>& seen) { return seen.size() >= 40'000; }, 120s);
  ASSERT_GE(committed_part.size(), 40'000U) << m_relay->log();
  long peak = m_relay->peak_rss_kib();
  EXPECT_EQ(m_relay->stop(SIGKILL, 10s), 128 + SIGKILL);
  restart_relay();
  {
    const std::string log = m_relay->log();
    const auto at = log.rfind("exactly_once: going on from the checkpoint");
    ASSERT_NE(at, std::string::npos);
    const std::string line = log.substr(at, log.find('\n', at) - at);
    EXPECT_THAT(line, ::testing::Not(HasSubstr("\"partial\":\"no\""))) << "the restart resumes inside the split "
                                                                          "transaction: "
                                                                       << line;
  }

  std::vector<expected_event> expected;
  expected.reserve(k_rows);
  for (int g = 0; g < k_rows; ++g) expected.push_back({"k" + std::to_string(g % 50), event_id(static_cast<std::uint64_t>(g))});
  const auto records = kafka_consume_until(
      topic,
      [&](const std::vector<consumed_record>& seen) {
        peak = std::max(peak, m_relay->peak_rss_kib());
        return seen.size() >= expected.size();
      },
      240s);
  peak = std::max(peak, m_relay->peak_rss_kib());
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail;
  EXPECT_EQ(records.size(), expected.size());
  std::cout << "[ eos      ] " << k_rows << "-row transaction: " << records.size() << " records read committed, "
            << v.duplicated << " duplicates; relay peak RSS " << peak / 1024 << " MiB\n";
  EXPECT_LT(peak, 150L * 1024) << "the bound of fault.relay_faults.one_million_row_transaction_keeps_memory_flat";
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
}

TEST_F(relay_eos, a_checkpoint_that_does_not_fit_the_slot_or_the_server_stops_the_start_with_the_way_out) {
  const auto topic = unique_name("eosfit");
  const auto t = create_table("ob_eosfit");
  const std::string eos_yaml = eos_config(t);
  start_relay(eos_yaml);
  auto insert = [&](int from, int n) {
    for (int i = from; i < from + n; ++i) {
      pg_exec("INSERT INTO " + t + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('" +
              event_id(static_cast<std::uint64_t>(i)) + "', '" + topic + "', 'k', 'e', '{}')");
    }
  };
  insert(0, 10);
  ASSERT_TRUE(wait_until([&] { return kafka_consume(topic, 10, 30s).size() == 10; }, 60s));
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);

  // An at_least_once run on the same slot confirms past the checkpoint.
  std::string alo_yaml = eos_yaml;
  const std::string eos_line = "  delivery: exactly_once\n";
  alo_yaml.replace(alo_yaml.find(eos_line), eos_line.size(), "");
  start_relay(alo_yaml);
  insert(10, 5);
  ASSERT_TRUE(wait_until([&] { return kafka_consume(topic, 15, 30s).size() == 15; }, 60s));
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);

  launch_relay(eos_yaml);
  EXPECT_EQ(m_relay->wait(60s), 1) << m_relay->log();
  EXPECT_THAT(m_relay->log(), HasSubstr("past the checkpoint in " + m_checkpoints));
  EXPECT_THAT(m_relay->log(), HasSubstr("write a tombstone for key " + m_slot));

  // The way out the message names: a tombstone for the slot's checkpoint; the relay then goes on from the slot.
  const auto tomb = run_command({"/bin/sh", "-c",
                                 "printf '%s:' '" + m_slot + "' | /usr/bin/kcat -P -b " +
                                     require_services().kafka_brokers + " -t " + m_checkpoints + " -Z -K:"},
                                30s);
  ASSERT_EQ(tomb.exit_code, 0) << tomb.output;
  start_relay(eos_yaml);
  insert(15, 5);
  ASSERT_TRUE(wait_until([&] { return kafka_consume(topic, 20, 30s).size() == 20; }, 60s)) << m_relay->log();
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);

  // A checkpoint past the server's WAL (written by a server that got further, e.g. before a failover to a
  // standby that lagged) stops the start too.
  const std::string ahead = R"({"slot":")" + m_slot +
                            R"(","system_identifier":")" + pg_scalar("SELECT system_identifier::text FROM pg_control_system()") +
                            R"(","timeline":1,"end_lsn":"FFF/0"})";
  const auto put = run_command({"/bin/sh", "-c",
                                "printf '%s\\t%s\\n' '" + m_slot + "' '" + ahead + "' | /usr/bin/kcat -P -b " +
                                    require_services().kafka_brokers + " -t " + m_checkpoints + " -K '\t'"},
                               30s);
  ASSERT_EQ(put.exit_code, 0) << put.output;
  launch_relay(eos_yaml);
  EXPECT_EQ(m_relay->wait(60s), 1) << m_relay->log();
  EXPECT_THAT(m_relay->log(), HasSubstr("past this server's WAL"));
}

}  // namespace
}  // namespace outbox::test
