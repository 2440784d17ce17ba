// outbox-relay under faults: kill -9, a Kafka outage, a PostgreSQL restart, a huge transaction.
// The outbox table is the ground truth: every row in it must reach Kafka at least once.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;

/// Inserts `transactions` transactions of `per_tx` rows on its own thread; a failed transaction
/// (the server went away) is retried, so the table, not this writer, says what was committed.
class writer {
 public:
  writer(std::string table, std::string topic, int transactions, int per_tx, std::chrono::milliseconds pause)
      : m_thread([=, this] { run(table, topic, transactions, per_tx, pause); }) {}
  ~writer() { join(); }
  void join() {
    if (m_thread.joinable()) m_thread.join();
  }
  /// Ends an open-ended load after the transaction in progress.
  void stop() {
    m_stop = true;
    join();
  }
  [[nodiscard]] int committed() const { return m_committed.load(); }

 private:
  void run(const std::string& table, const std::string& topic, int transactions, int per_tx,
           std::chrono::milliseconds pause) {
    std::unique_ptr<pqxx::connection> c;
    for (int tx = 0; tx < transactions && !m_stop;) {
      try {
        if (!c || !c->is_open()) c = std::make_unique<pqxx::connection>(require_services().pg_dsn);
        pqxx::work w(*c);
        w.exec("INSERT INTO " + table + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
               "', 'agg-' || ((g + " + std::to_string(tx) + ") % 50), 'e', jsonb_build_object('seq', " +
               std::to_string(tx * per_tx) + " + g) FROM generate_series(0, " + std::to_string(per_tx - 1) + ") g");
        w.commit();
        ++tx;
        ++m_committed;
      } catch (const std::exception&) {
        c.reset();
        wait_until([] { return false; }, 200ms);  // the server is away: back off before retrying
      }
      if (pause.count() > 0) wait_until([] { return false; }, pause);
    }
  }

  std::atomic<int> m_committed{0};
  std::atomic<bool> m_stop{false};
  std::thread m_thread;
};

/// Consumes until every id of the table was seen; returns per-id counts and checks first
/// occurrences keep commit order per key.
std::unordered_map<std::string, int> consume_all_rows(const std::string& table, const std::string& topic,
                                                      std::chrono::milliseconds timeout) {
  const auto ids_vec = pg_column("SELECT id::text FROM " + table);
  const std::unordered_set<std::string> expected(ids_vec.begin(), ids_vec.end());
  std::unordered_map<std::string, int> seen;
  std::size_t processed = 0;
  std::size_t found = 0;
  std::map<std::string, long long> last_first_seq;
  const auto records = kafka_consume_until(
      topic,
      [&](const std::vector<consumed_record>& rs) {
        for (; processed < rs.size(); ++processed) {
          const auto& r = rs[processed];
          const auto id = r.header("event_id").value_or("");
          if (++seen[id] == 1) {
            found += expected.count(id);
            const auto seq = nlohmann::json::parse(r.value.value_or("{}")).value("seq", -1LL);
            auto [it, fresh] = last_first_seq.try_emplace(r.key.value_or(""), seq);
            if (!fresh) {
              EXPECT_LT(it->second, seq) << "key " << it->first << ": a new event arrived before an older one";
              it->second = seq;
            }
          }
        }
        return found == expected.size();
      },
      timeout);
  std::size_t missing = 0;
  for (const auto& id : expected) missing += seen.count(id) == 0 ? 1 : 0;
  EXPECT_EQ(missing, 0U) << "events committed to " << table << " but never published";
  EXPECT_EQ(seen.size(), expected.size()) << "records whose event_id is not a row of the table";
  return seen;
}

std::size_t duplicates(const std::unordered_map<std::string, int>& seen) {
  std::size_t d = 0;
  for (const auto& [id, n] : seen) d += static_cast<std::size_t>(n - 1);
  return d;
}

void services(const std::string& action, const std::string& which) {
  const char* script = std::getenv("OUTBOX_SERVICES_SCRIPT");
  ASSERT_NE(script, nullptr) << "OUTBOX_SERVICES_SCRIPT is not set: run through scripts/test.sh";
  const auto r = run_command({"/bin/bash", script, action, which}, 180s);
  ASSERT_EQ(r.exit_code, 0) << r.output;
}

class relay_faults : public relay_fixture {};

TEST_F(relay_faults, kill9_at_ten_seeded_moments_loses_nothing) {
  const auto topic = unique_name("kill");
  const auto t = create_table("ob_kill");
  start_relay(config(tables({t})));
  std::mt19937 rng(20261123);
  std::uniform_int_distribution<int> delay_ms(150, 1200);
  {
    writer w(t, topic, 400, 25, 10ms);
    for (int kill = 0; kill < 10; ++kill) {
      const auto moment = std::chrono::milliseconds(delay_ms(rng));
      wait_until([] { return false; }, moment);  // a seeded random moment into the stream
      ASSERT_EQ(m_relay->stop(SIGKILL, 10s), 128 + SIGKILL);
      restart_relay();
    }
    w.join();
    EXPECT_EQ(w.committed(), 400);
  }
  const auto seen = consume_all_rows(t, topic, 180s);
  const auto dups = duplicates(seen);
  std::cout << "[ report ] kill -9 x10: " << seen.size() << " events, " << dups << " published again\n";
  RecordProperty("duplicates", static_cast<int>(dups));
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
}

TEST_F(relay_faults, kafka_broker_down_for_20s_mid_stream_loses_nothing) {
  const auto topic = unique_name("kdown");
  const auto t = create_table("ob_kdown");
  kafka_create_topic(topic, 3);
  std::string yaml = config(tables({t}));
  yaml.replace(yaml.find("relay:\n"), 7, "relay:\n  stall_timeout: 3s\n");
  start_relay(yaml);
  httplib::Client metrics("127.0.0.1", metrics_port());
  auto stalled = [&] {
    auto res = metrics.Get("/metrics");
    return res && res->body.find("\noutbox_relay_stalled 1\n") != std::string::npos;
  };
  {
    writer w(t, topic, 300, 20, 50ms);
    ASSERT_TRUE(wait_until([&] { return w.committed() >= 60; }, 60s));
    EXPECT_FALSE(stalled());
    services("stop", "kafka");
    const auto outage_end = std::chrono::steady_clock::now() + 20s;
    // Nothing can be confirmed while Kafka is away: the relay reports itself stalled and not ready.
    EXPECT_TRUE(wait_until(stalled, 19s, 250ms)) << "outbox_relay_stalled never became 1 during the outage";
    auto ready = metrics.Get("/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 503) << ready->body;
    std::this_thread::sleep_until(outage_end);  // the outage itself: until the broker comes back
    EXPECT_TRUE(m_relay->running()) << "the relay must wait out a broker outage, not exit";
    services("start", "kafka");
    w.join();
  }
  EXPECT_TRUE(wait_until([&] { return !stalled(); }, 60s, 250ms)) << "still stalled after Kafka came back";
  const auto seen = consume_all_rows(t, topic, 180s);
  std::cout << "[ report ] broker outage: " << seen.size() << " events, " << duplicates(seen) << " published again\n";
  EXPECT_TRUE(m_relay->running());
  EXPECT_NE(m_relay->log().find("Kafka brokers unreachable"), std::string::npos);
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
}

TEST_F(relay_faults, postgres_restart_mid_stream_loses_nothing) {
  const auto topic = unique_name("pgrs");
  const auto t = create_table("ob_pgrs");
  start_relay(config(tables({t})));
  {
    writer w(t, topic, 300, 20, 20ms);
    ASSERT_TRUE(wait_until([&] { return w.committed() >= 80; }, 60s));
    services("stop", "postgres");
    services("start", "postgres");
    w.join();
  }
  ASSERT_TRUE(m_relay->wait_for_log("reconnecting", 60s)) << "the relay should have seen the restart";
  const auto seen = consume_all_rows(t, topic, 180s);
  std::cout << "[ report ] postgres restart: " << seen.size() << " events, " << duplicates(seen)
            << " published again\n";
  EXPECT_TRUE(m_relay->running());
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
}

TEST_F(relay_faults,
       in_exactly_once_mode_a_broker_restart_and_a_postgres_restart_duplicate_nothing_for_read_committed) {
  const auto topic = unique_name("eosrs");
  const auto t = create_table("ob_eosrs");
  kafka_create_topic(topic, 3);
  start_relay(config(tables({t}), "", "",
                     "  delivery: exactly_once\n  checkpoint_topic: " + unique_name("checkpoints") + "\n"));
  {
    // Open-ended: the load goes on through both restarts however long the broker takes to come back.
    writer w(t, topic, 1'000'000, 10, 20ms);
    ASSERT_TRUE(wait_until([&] { return w.committed() >= 60; }, 60s));
    // The broker goes away with a Kafka transaction open (the writer never pauses for long): it is aborted or
    // times out, and the relay goes on from the checkpoint once the broker is back.
    services("stop", "kafka");
    EXPECT_TRUE(wait_until([&] { return metric("outbox_relay_kafka_up") == 0.0; }, 60s, 250ms)) << m_relay->log();
    services("start", "kafka");
    const int before_pg = w.committed();
    ASSERT_TRUE(wait_until([&] { return w.committed() >= before_pg + 60; }, 120s));
    services("stop", "postgres");
    services("start", "postgres");
    const int after_pg = w.committed();
    ASSERT_TRUE(wait_until([&] { return w.committed() >= after_pg + 60; }, 120s));
    w.stop();
  }
  const auto seen = consume_all_rows(t, topic, 180s);
  // librdkafka's consumer reads read_committed by default: a copy here is a duplicate a consumer would see.
  EXPECT_EQ(duplicates(seen), 0U) << m_relay->log();
  std::cout << "[ report ] exactly_once, broker and postgres restarts: " << seen.size() << " events, "
            << duplicates(seen) << " duplicates for read_committed\n";
  EXPECT_TRUE(m_relay->running());
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
}

TEST_F(relay_faults, kill9_after_confirming_inside_an_uncommitted_transaction_loses_nothing) {
  // While a big transaction is still open the server reports positions inside it and the idle
  // relay confirms them. A relay killed then must still receive the whole transaction once it
  // commits: the slot skips only transactions that commit before its confirmed position.
  constexpr int k_rows = 200'000;
  const auto topic = unique_name("midtx");
  const auto t = create_table("ob_midtx");
  kafka_create_topic(topic, 3);
  start_relay(config(tables({t})));
  const std::string before = pg_scalar("SELECT pg_current_wal_insert_lsn()::text");
  pqxx::connection c(require_services().pg_dsn);
  pqxx::work open_tx(c);
  open_tx.exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
               "', 'agg-' || (g % 100), 'e', jsonb_build_object('seq', g) FROM generate_series(1, " +
               std::to_string(k_rows) + ") g");
  const std::string inside = pg_scalar("SELECT pg_current_wal_insert_lsn()::text");
  const auto confirmed_at_least = [&](const std::string& lsn) {
    return pg_scalar("SELECT confirmed_flush_lsn >= '" + lsn +
                     "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + m_slot + "'") == "t";
  };
  ASSERT_TRUE(wait_until([&] { return confirmed_at_least(inside); }, 60s, 100ms))
      << "the relay never confirmed a position inside the open transaction (" << before << ".." << inside << ")";
  ASSERT_EQ(m_relay->stop(SIGKILL, 10s), 128 + SIGKILL);
  open_tx.commit();
  const std::string committed = pg_scalar("SELECT pg_current_wal_insert_lsn()::text");
  restart_relay();
  ASSERT_TRUE(wait_until([&] { return confirmed_at_least(committed); }, 300s, 200ms))
      << "the restarted relay did not confirm the transaction";
  EXPECT_EQ(kafka_record_count(topic), k_rows) << "every row of the transaction, exactly once";
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
}

TEST_F(relay_faults, one_million_row_transaction_keeps_memory_flat) {
  constexpr long k_rss_bound_kib = 150 * 1024;
  constexpr long long k_rows = 1'000'000;
  const auto topic = unique_name("huge");
  const auto t = create_table("ob_huge");
  kafka_create_topic(topic, 3);
  start_relay(config(tables({t})));
  pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
          "', 'agg-' || (g % 1000), 'e', jsonb_build_object('seq', g, 'pad', repeat('p', 64)) "
          "FROM generate_series(1, " +
          std::to_string(k_rows) + ") g");
  const std::string committed_at = pg_scalar("SELECT pg_current_wal_insert_lsn()::text");
  long peak = 0;
  const bool confirmed = wait_until(
      [&] {
        peak = std::max(peak, m_relay->peak_rss_kib());
        return pg_scalar("SELECT confirmed_flush_lsn >= '" + committed_at +
                         "'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" + m_slot + "'") == "t";
      },
      600s, 500ms);
  ASSERT_TRUE(confirmed) << "the relay did not confirm the 1,000,000-row transaction";
  peak = std::max(peak, m_relay->peak_rss_kib());
  std::cout << "[ report ] 1,000,000-row transaction: relay peak RSS " << peak / 1024 << " MiB (bound "
            << k_rss_bound_kib / 1024 << " MiB)\n";
  RecordProperty("peak_rss_kib", static_cast<int>(peak));
  EXPECT_LT(peak, k_rss_bound_kib);
  EXPECT_EQ(kafka_record_count(topic), k_rows) << "every row exactly once (no crash happened)";
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
}

TEST_F(relay_faults, sigterm_inside_a_200000_row_transaction_finishes_it_and_a_restart_repeats_nothing) {
  constexpr int k_rows = 200'000;
  const auto topic = unique_name("termtx");
  const auto t = create_table("ob_termtx");
  kafka_create_topic(topic, 3);
  start_relay(config(tables({t})));
  pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
          "', 'agg-' || (g % 100), 'e', jsonb_build_object('seq', g) FROM generate_series(1, " +
          std::to_string(k_rows) + ") g");
  // SIGTERM while the relay is inside the transaction: some of its rows are in Kafka, not all.
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 20'000; }, 120s, 20ms));
  const long long at_signal = kafka_record_count(topic);
  ASSERT_LT(at_signal, k_rows) << "the transaction was already complete; the test needs a slower moment";
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0) << m_relay->log();
  EXPECT_EQ(kafka_record_count(topic), k_rows) << "the drain finished the transaction being read";
  restart_relay();
  pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) VALUES ('" + topic +
          "', 'agg-0', 'e', '{\"seq\": " + std::to_string(k_rows + 1) + "}')");
  const auto seen = consume_all_rows(t, topic, 180s);
  std::cout << "[ report ] SIGTERM at " << at_signal << " of " << k_rows << " rows: " << duplicates(seen)
            << " published again\n";
  EXPECT_EQ(duplicates(seen), 0U) << "a restart after a clean stop repeats nothing";
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
}

TEST_F(relay_faults, a_backfill_of_300000_rows_killed_halfway_resumes_on_the_same_cut_with_flat_memory) {
  // The rows would take ~360 MiB in librdkafka if the backfill read them all at once; the window is 20,000.
  constexpr int k_rows = 300'000;
  constexpr long k_rss_bound_kib = 100 * 1024;
  const auto topic = unique_name("bigfill");
  const auto t = create_table("ob_bigfill");
  kafka_create_topic(topic, 3);
  pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
          "', 'agg-' || (g % 1000), 'e', jsonb_build_object('seq', g, 'pad', repeat('p', 64)) "
          "FROM generate_series(1, " +
          std::to_string(k_rows) + ") g");
  std::string yaml = config(tables({t}));
  yaml.replace(yaml.find("relay:\n"), 7, "relay:\n  max_inflight_messages: 20000\n");
  launch_relay(yaml);
  long peak = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        peak = std::max(peak, m_relay->peak_rss_kib());
        return kafka_record_count(topic) >= 50'000;
      },
      120s, 50ms));
  ASSERT_EQ(m_relay->stop(SIGKILL, 10s), 128 + SIGKILL);
  ASSERT_LT(kafka_record_count(topic), k_rows) << "the backfill had already finished";
  EXPECT_EQ(pg_scalar("SELECT backfill FROM outbox_relay_state WHERE slot_name = '" + m_slot + "'"), "pending");
  // Rows written after the slot's cut come from the stream, not from the resumed backfill.
  pg_exec("INSERT INTO " + t + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
          "', 'agg-' || (g % 1000), 'e', jsonb_build_object('seq', " + std::to_string(k_rows) +
          " + g) FROM generate_series(1, 100) g");
  m_relay->start();
  const bool done = wait_until(
      [&] {
        peak = std::max(peak, m_relay->peak_rss_kib());
        return m_relay->log().find("backfill finished") != std::string::npos;
      },
      300s, 100ms);
  ASSERT_TRUE(done) << m_relay->log().substr(0, 5000);
  EXPECT_NE(m_relay->log().find("\"resumed\":\"yes\""), std::string::npos);
  const auto seen = consume_all_rows(t, topic, 300s);
  std::cout << "[ report ] backfill of " << k_rows << " rows killed at ~50,000: " << duplicates(seen)
            << " published again, peak RSS " << peak / 1024 << " MiB\n";
  EXPECT_LT(peak, k_rss_bound_kib);
  EXPECT_EQ(pg_scalar("SELECT backfill FROM outbox_relay_state WHERE slot_name = '" + m_slot + "'"), "done");
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
}

}  // namespace
}  // namespace outbox::test
