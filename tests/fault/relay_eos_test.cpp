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
#include <librdkafka/rdkafka.h>
#include <pqxx/pqxx>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
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

/// Runs one of Kafka's own Java command-line clients (kafka-tools, from scripts/kafka-tools/pom.xml).
command_result kafka_tool(const std::string& main_class, std::vector<std::string> args,
                          std::chrono::milliseconds timeout) {
  const char* libs = std::getenv("OUTBOX_KAFKA_TOOLS_LIBS");
  if (libs == nullptr || *libs == '\0') {
    ADD_FAILURE() << "OUTBOX_KAFKA_TOOLS_LIBS is not set: source .run/services.env of scripts/services.sh start";
    return {};
  }
  std::vector<std::string> argv{"/usr/bin/java",          "-cp",
                                std::string(libs) + "/*", main_class,
                                "--bootstrap-server",     require_services().kafka_brokers};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_command(argv, timeout);
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
    const auto r = run_command({"/usr/bin/kcat", "-C", "-b", require_services().kafka_brokers, "-t", topic, "-o",
                                "beginning", "-e", "-q", "-X", "isolation.level=read_committed", "-f", "%h\\n"},
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

  /// The same through Kafka's own Java console consumer with --isolation-level read_committed: it reads from the
  /// beginning until nothing came for 10 s.
  static std::vector<std::string> java_console_event_ids(const std::string& topic) {
    const auto r =
        kafka_tool("org.apache.kafka.tools.consumer.ConsoleConsumer",
                   {"--topic", topic, "--from-beginning", "--isolation-level", "read_committed", "--timeout-ms",
                    "10000", "--property", "print.headers=true", "--property", "print.value=false"},
                   180s);
    std::vector<std::string> ids;
    std::istringstream in(r.output);
    for (std::string line; std::getline(in, line);) {
      const auto at = line.find("event_id:");
      if (at == std::string::npos || line.size() < at + 9 + 36) continue;
      ids.push_back(line.substr(at + 9, 36));
    }
    if (ids.empty()) ADD_FAILURE() << "the Java console consumer read nothing:\n" << r.output.substr(0, 4000);
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

  const auto records = consume_until_complete(topic, expected, 180s);
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
  // And so does Kafka's own Java console consumer with --isolation-level read_committed (a Java consumer's
  // default is read_uncommitted, which would show the aborted transactions' records).
  const auto java_ids = java_console_event_ids(topic);
  const std::set<std::string> java_unique(java_ids.begin(), java_ids.end());
  EXPECT_EQ(java_ids.size(), expected.size()) << "the Java console consumer saw " << java_ids.size() << " records";
  EXPECT_EQ(java_unique, unique);
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
  constexpr int k_rows = 1'000'000;
  pg_exec("INSERT INTO " + t +
          " (id, aggregate_type, aggregate_id, event_type, payload) SELECT ('00000000-0000-4000-8000-' || "
          "lpad(to_hex(g), 12, '0'))::uuid, '" +
          topic + "', 'k' || (g % 50), 'e', jsonb_build_object('n', g) FROM generate_series(0, " +
          std::to_string(k_rows - 1) + ") g");
  // Kill halfway: once half of the rows are in the topic's log (so at least 24 of the Kafka transactions of
  // 20,000 records are committed), then let the restart finish it.
  long peak = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        peak = std::max(peak, m_relay->peak_rss_kib());
        return kafka_record_count(topic) >= k_rows / 2;
      },
      240s, 50ms))
      << m_relay->log();
  peak = std::max(peak, m_relay->peak_rss_kib());
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
  for (int g = 0; g < k_rows; ++g)
    expected.push_back({"k" + std::to_string(g % 50), event_id(static_cast<std::uint64_t>(g))});
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

/// Inserts rows [from, from + n) into `table` for `topic`, one transaction of 5 rows at a time, over 10 keys.
static std::vector<expected_event> insert_rows(const std::string& table, const std::string& topic, int from, int n) {
  pqxx::connection c(require_services().pg_dsn);
  std::vector<expected_event> out;
  for (int i = from; i < from + n; i += 5) {
    pqxx::work w(c);
    for (int j = i; j < std::min(i + 5, from + n); ++j) {
      const std::string key = "k" + std::to_string(j % 10);
      w.exec("INSERT INTO " + table + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('" +
             event_id(static_cast<std::uint64_t>(j)) + "', '" + topic + "', '" + key + "', 'e', '{}')");
      out.push_back({key, event_id(static_cast<std::uint64_t>(j))});
    }
    w.commit();
  }
  return out;
}

/// A producer of our own with `tid` that calls init_transactions(): what a second relay started with the same
/// transactional id does. The coordinator bumps the epoch and fences every older producer with that id.
struct usurper {
  explicit usurper(const std::string& tid) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    rd_kafka_conf_set(conf, "bootstrap.servers", require_services().kafka_brokers.c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "transactional.id", tid.c_str(), err, sizeof err);
    producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (producer == nullptr) throw std::runtime_error(err);
    rd_kafka_error_t* e = rd_kafka_init_transactions(producer, 60'000);
    if (e != nullptr) {
      const std::string what = rd_kafka_error_string(e);
      rd_kafka_error_destroy(e);
      rd_kafka_destroy(producer);
      throw std::runtime_error("init_transactions: " + what);
    }
  }
  ~usurper() { rd_kafka_destroy(producer); }
  usurper(const usurper&) = delete;
  usurper& operator=(const usurper&) = delete;
  rd_kafka_t* producer = nullptr;
};

TEST_F(
    relay_eos,
    a_producer_that_takes_the_transactional_id_fences_the_relay_which_goes_on_with_a_new_producer_duplicating_nothing) {
  const auto topic = unique_name("eosfence");
  const auto t = create_table("ob_eosfence");
  const std::string tid = unique_name("tid");
  const std::string yaml = eos_config(t, "  transactional_id: " + tid + "\n");
  start_relay(yaml);
  auto expected = insert_rows(t, topic, 0, 100);
  ASSERT_TRUE(wait_until([&] { return kafka_consume(topic, 100, 20s).size() >= 100; }, 60s)) << m_relay->log();

  // With the leader lock (the default) the relay still leads on PostgreSQL, so nobody else can be publishing
  // the slot: it makes a new producer, whose init_transactions() fences the other one in turn, and goes on from
  // the checkpoint. What it had open was aborted by the coordinator: a read_committed consumer never sees it.
  {
    const usurper other(tid);
    auto more = insert_rows(t, topic, 100, 100);
    expected.insert(expected.end(), more.begin(), more.end());
    ASSERT_TRUE(m_relay->wait_for_log("the Kafka producer was fenced", 60s)) << m_relay->log();
    ASSERT_TRUE(wait_until([&] { return kafka_consume(topic, 200, 20s).size() >= 200; }, 60s)) << m_relay->log();
    EXPECT_TRUE(m_relay->running());
  }

  // Stopped and started again it goes on from the checkpoint, as after any restart.
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
  start_relay(yaml);
  const auto last = insert_rows(t, topic, 200, 100);
  expected.insert(expected.end(), last.begin(), last.end());
  const auto records = consume_until_complete(topic, expected, 90s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail << "\n" << m_relay->log();
  EXPECT_EQ(v.duplicated, 0U);
  std::cout << "[ eos      ] fenced and restarted: " << expected.size() << " events, " << v.duplicated
            << " duplicates, " << v.missing << " missing\n";
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
}

/// The state of `tid` at its transaction coordinator (Ongoing, CompleteCommit, CompleteAbort, ...), as Kafka's
/// TransactionsCommand describes it; empty when it cannot tell.
static std::string coordinator_state(const std::string& tid) {
  const auto r = kafka_tool("org.apache.kafka.tools.TransactionsCommand", {"describe", "--transactional-id", tid}, 60s);
  // A table: TransactionalId, Coordinator, ProducerId, ProducerEpoch, TransactionState, ... separated by tabs.
  const std::set<std::string> states{"Empty",          "Ongoing",       "PrepareCommit",     "PrepareAbort",
                                     "CompleteCommit", "CompleteAbort", "PrepareEpochFence", "Dead"};
  std::istringstream in(r.output);
  for (std::string word; in >> word;) {
    if (states.count(word) != 0) return word;
  }
  return {};
}

TEST_F(relay_eos,
       a_transaction_the_coordinator_aborted_during_a_stall_is_retried_from_the_checkpoint_in_the_same_process) {
  const auto topic = unique_name("eosstall");
  const auto t = create_table("ob_eosstall");
  const std::string tid = unique_name("tid");
  // A short transaction timeout, so that a stall of the relay outlives its open transaction.
  start_relay(
      eos_config(t, "  transactional_id: " + tid + "\n  transaction_timeout: 4s\n  transaction_max_time: 1s\n"));
  std::vector<expected_event> expected;
  std::mutex mutex;
  std::atomic<bool> stop{false};
  // A steady trickle (100 rows/s) keeps a Kafka transaction open nearly all the time.
  std::thread writer([&] {
    for (int i = 0; !stop; i += 5) {
      auto rows = insert_rows(t, topic, i, 5);
      {
        const std::lock_guard lock(mutex);
        expected.insert(expected.end(), rows.begin(), rows.end());
      }
      std::this_thread::sleep_for(50ms);
    }
  });
  const std::unique_ptr<void, std::function<void(void*)>> join_writer(&writer, [&](void*) {
    stop = true;
    if (writer.joinable()) writer.join();
  });
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 100; }, 60s)) << m_relay->log();

  // Stop the relay (SIGSTOP, like a long pause of the process) until its coordinator has aborted the open
  // transaction for its timeout. Each pause comes just after a commit, once ten more events were acknowledged: they
  // opened the next transaction, which stays open for transaction_max_time (1 s, about a hundred rows). The relay's
  // own metrics time it (polled every 10 ms); a pause timed by the topic's record count tends to fall on a commit,
  // because the overdue transaction commits as soon as the rows that piled up during the previous pause are in. A
  // pause that still finds nothing open goes on and pauses again.
  const std::string committed = "outbox_relay_kafka_transactions_total{outcome=\"committed\"}";
  const std::string published =
      "outbox_relay_events_published_total{table=\"public." + t + "\",topic=\"" + topic + "\"}";
  bool aborted = false;
  for (int attempt = 0; attempt < 12 && !aborted; ++attempt) {
    const double commits = metric(committed).value_or(0);
    ASSERT_TRUE(wait_until([&] { return metric(committed).value_or(0) > commits; }, 30s, 10ms)) << m_relay->log();
    const double acked = metric(published).value_or(0);
    ASSERT_TRUE(wait_until([&] { return metric(published).value_or(0) >= acked + 10; }, 30s, 10ms)) << m_relay->log();
    ASSERT_EQ(::kill(m_relay->pid(), SIGSTOP), 0);
    const std::string at_pause = coordinator_state(tid);
    if (at_pause == "Ongoing") {
      aborted = wait_until([&] { return coordinator_state(tid) == "CompleteAbort"; }, 30s, 500ms);
    }
    ASSERT_EQ(::kill(m_relay->pid(), SIGCONT), 0);
    std::cout << "[ eos      ] pause " << attempt << ": the coordinator had the transaction " << at_pause
              << (aborted ? ", then aborted it" : "") << "\n";
  }
  ASSERT_TRUE(aborted) << "no pause caught an open transaction";

  // Awake, the relay learns its transaction is gone at the next produce or commit, and goes on from the
  // checkpoint with a new producer: the rows of the aborted transaction come again, once.
  const long long at_wake = kafka_record_count(topic);
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= at_wake + 300; }, 60s)) << m_relay->log();
  stop = true;
  writer.join();
  const auto records = consume_until_complete(topic, expected, 120s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail << "\n" << m_relay->log();
  EXPECT_EQ(v.duplicated, 0U);
  EXPECT_TRUE(m_relay->running()) << "a stall is no reason to exit:\n" << m_relay->log();
  EXPECT_THAT(m_relay->log(), HasSubstr("restarting the Kafka producer and the stream")) << m_relay->log();
  EXPECT_GT(metric("outbox_relay_kafka_transactions_total{outcome=\"failed\"}").value_or(0), 0) << m_relay->log();
  std::cout << "[ eos      ] stalled past the transaction timeout: " << expected.size() << " events, " << v.duplicated
            << " duplicates, " << v.missing << " missing\n";
  EXPECT_EQ(m_relay->stop(SIGTERM, 30s), 0);
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

  // Writes a checkpoint for the slot and starts the relay on it, which has to refuse the start.
  auto start_refused_on = [&](const std::string& system_identifier, const std::string& end_lsn) {
    const std::string cp = R"({"slot":")" + m_slot + R"(","system_identifier":")" + system_identifier +
                           R"(","timeline":1,"end_lsn":")" + end_lsn + R"("})";
    const auto put = run_command({"/bin/sh", "-c",
                                  "printf '%s\\t%s\\n' '" + m_slot + "' '" + cp + "' | /usr/bin/kcat -P -b " +
                                      require_services().kafka_brokers + " -t " + m_checkpoints + " -K '\t'"},
                                 30s);
    ASSERT_EQ(put.exit_code, 0) << put.output;
    launch_relay(eos_yaml);
    EXPECT_EQ(m_relay->wait(60s), 1) << m_relay->log();
  };

  // A checkpoint past the server's WAL (written by a server that got further, e.g. before a failover to a
  // standby that lagged) stops the start too.
  ASSERT_NO_FATAL_FAILURE(
      start_refused_on(pg_scalar("SELECT system_identifier::text FROM pg_control_system()"), "FFF/0"));
  EXPECT_THAT(m_relay->log(), HasSubstr("past this server's WAL"));

  // A checkpoint from another PostgreSQL system (a restore into another cluster, a DSN pointing elsewhere) too.
  ASSERT_NO_FATAL_FAILURE(start_refused_on("1", "0/1"));
  EXPECT_THAT(m_relay->log(), HasSubstr("comes from PostgreSQL system 1, but this server is system"));
  EXPECT_THAT(m_relay->log(), HasSubstr("would publish a fork"));
}

}  // namespace
}  // namespace outbox::test
