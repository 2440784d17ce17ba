// Two outbox-relay processes on one slot (the HA pair): one leads, holding the leader lock on its replication
// connection; the other waits quietly as a standby and takes over when the leader's connection ends, with a higher
// leader epoch. A leader killed -9 is replaced within seconds; a leader paused (SIGSTOP) past
// source.wal_sender_timeout is replaced too, and when it wakes up it publishes and confirms nothing, and waits as
// the standby. Nothing is lost either way.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"
#include "outbox/test/stream_check.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <pqxx/pqxx>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

/// One relay process of the pair, with its own log (and so its own metrics port).
class instance {
 public:
  instance(const std::string& binary, const std::string& config, const std::string& log_path)
      : m_proc(std::vector<std::string>{binary, "--config", config}, log_path) {
    m_proc.start();
  }

  child_process& proc() { return m_proc; }
  [[nodiscard]] std::string log() const { return m_proc.log(); }

  [[nodiscard]] std::pair<int, std::string> get(const std::string& path) const {
    const std::string text = m_proc.log();
    const std::string marker = "\"listen\":\"127.0.0.1:";
    const auto at = text.rfind(marker);
    if (at == std::string::npos) return {0, {}};
    httplib::Client client("127.0.0.1", std::stoi(text.substr(at + marker.size())));
    client.set_connection_timeout(2);
    client.set_read_timeout(5);
    auto res = client.Get(path.c_str());
    if (!res) return {0, {}};
    return {res->status, res->body};
  }

  /// The sum of every series of `name` (labelled or not); nullopt when the endpoint does not answer.
  [[nodiscard]] std::optional<double> metric(const std::string& name) const {
    const auto [status, body] = get("/metrics");
    if (status != 200) return std::nullopt;
    double sum = 0;
    bool found = false;
    for (std::size_t at = 0; at < body.size();) {
      const std::size_t end = std::min(body.find('\n', at), body.size());
      const std::string line = body.substr(at, end - at);
      at = end + 1;
      if (!line.starts_with(name) || line.size() <= name.size()) continue;
      const char next = line[name.size()];
      if (next != ' ' && next != '{') continue;
      sum += std::stod(line.substr(line.rfind(' ') + 1));
      found = true;
    }
    return found ? std::optional<double>(sum) : std::nullopt;
  }

  [[nodiscard]] bool leads() const { return metric("outbox_relay_leader").value_or(0) == 1.0; }
  [[nodiscard]] bool streams() const { return log().find("\"msg\":\"streaming\"") != std::string::npos; }
  [[nodiscard]] bool waits() const { return log().find("standby: another relay leads slot") != std::string::npos; }

 private:
  child_process m_proc;
};

class relay_ha : public relay_fixture {
 protected:
  void TearDown() override {
    for (auto& i : m_pair) {
      if (i && i->proc().running()) i->proc().stop(SIGKILL, 10s);
    }
    if (HasFailure()) {
      for (std::size_t n = 0; n < m_logs.size(); ++n) std::cerr << "---- " << m_logs[n] << "\n";
      for (auto& i : m_pair) {
        if (i) std::cerr << "---- running relay log ----\n" << i->log().substr(0, 20000) << "\n";
      }
    }
    relay_fixture::TearDown();
  }

  std::unique_ptr<instance> launch(const std::string& name) {
    return std::make_unique<instance>(relay_binary(), m_config_path, m_dir + "/" + name + ".log");
  }

  /// Keeps the log of an instance about to go, for the failure report.
  void keep(const instance& i, const std::string& name) { m_logs.push_back(name + ":\n" + i.log().substr(0, 8000)); }

  /// Inserts one row into `table` for `topic` with key k<i % 10> and a unique id; returns the expected event.
  static expected_event insert_one(pqxx::connection& c, const std::string& table, const std::string& topic,
                                   const std::string& prefix, int i) {
    char id[40];
    std::snprintf(id, sizeof id, "%08x-0000-4000-8000-%012x", static_cast<unsigned>(std::hash<std::string>{}(prefix)),
                  static_cast<unsigned>(i));
    const std::string key = "k" + std::to_string(i % 10);
    pqxx::work w(c);
    w.exec("INSERT INTO " + table + " (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('" + id + "', '" +
           topic + "', '" + key + "', 'e', '{}')");
    w.commit();
    return {key, id};
  }

  /// Reads `topic` until every expected event is there (copies included) or `timeout` passes.
  static std::vector<consumed_record> consume_all(const std::string& topic, const std::vector<expected_event>& expected,
                                                  std::chrono::milliseconds timeout) {
    return consume_until_complete(topic, expected, timeout);
  }

  /// One row every `every` into `table` from a thread of its own (a steady rate, not a wait), until stop().
  class trickle {
   public:
    trickle(std::string table, std::string topic, std::string prefix, std::chrono::milliseconds every)
        : m_thread([this, table = std::move(table), topic = std::move(topic), prefix = std::move(prefix), every] {
            pqxx::connection c(require_services().pg_dsn);
            auto next = std::chrono::steady_clock::now();
            for (int i = 0; !m_done; ++i) {
              auto e = insert_one(c, table, topic, prefix, i);
              {
                const std::lock_guard lock(m_mutex);
                m_events.push_back(std::move(e));
              }
              next += every;
              std::this_thread::sleep_until(next);
            }
          }) {}
    trickle(const trickle&) = delete;
    trickle& operator=(const trickle&) = delete;
    ~trickle() { static_cast<void>(stop()); }

    /// Stops writing; every event written, in commit order.
    std::vector<expected_event> stop() {
      m_done = true;
      if (m_thread.joinable()) m_thread.join();
      const std::lock_guard lock(m_mutex);
      return m_events;
    }

   private:
    std::atomic<bool> m_done{false};
    std::mutex m_mutex;
    std::vector<expected_event> m_events;
    std::thread m_thread;
  };

  /// Waits until `leader` has published `n` more events than it had (it streams, the trickle flows).
  static bool publishes(const instance& leader, double n) {
    const double before = leader.metric("outbox_relay_events_published_total").value_or(0);
    return wait_until([&] { return leader.metric("outbox_relay_events_published_total").value_or(0) >= before + n; },
                      30s, 50ms);
  }

  std::unique_ptr<instance> m_pair[2];
  std::vector<std::string> m_logs;
};

TEST_F(relay_ha, a_standby_waits_quietly_and_takes_over_each_kill_9_of_the_leader_losing_nothing) {
  const auto topic = unique_name("ha");
  const auto t = create_table("ob_ha");
  write_config(config(tables({t})));
  m_pair[0] = launch("a0");
  ASSERT_TRUE(wait_until([&] { return m_pair[0]->streams(); }, 60s)) << m_pair[0]->log();
  m_pair[1] = launch("b0");
  ASSERT_TRUE(wait_until([&] { return m_pair[1]->waits(); }, 30s)) << m_pair[1]->log();

  // The standby is healthy and says so; it does not retry START_REPLICATION in a loop.
  ASSERT_TRUE(wait_until([&] { return m_pair[1]->get("/readyz").first == 200; }, 10s));
  EXPECT_THAT(m_pair[1]->get("/readyz").second, HasSubstr("standby: another relay leads slot " + m_slot));
  EXPECT_EQ(m_pair[1]->metric("outbox_relay_leader"), 0.0);
  EXPECT_EQ(m_pair[0]->metric("outbox_relay_leader"), 1.0);
  const double first_epoch = m_pair[0]->metric("outbox_relay_leader_epoch").value_or(0);
  EXPECT_GE(first_epoch, 1.0);
  // Three seconds in which a retry or a START_REPLICATION attempt of the standby would show in its log.
  EXPECT_FALSE(wait_until(
      [&] {
        const std::string log = m_pair[1]->log();
        return log.find("retrying") != std::string::npos || log.find("START_REPLICATION") != std::string::npos;
      },
      3s, 100ms))
      << "the standby waits on the lock quietly\n"
      << m_pair[1]->log();

  // A steady trickle (40 rows/s) while the leader is killed five times.
  trickle writer(t, topic, "trickle", 25ms);

  std::chrono::milliseconds worst{0};
  double epoch = first_epoch;
  int leader = 0;
  for (int kill = 0; kill < 5; ++kill) {
    ASSERT_TRUE(publishes(*m_pair[leader], 20)) << m_pair[leader]->log();
    const int standby = 1 - leader;
    ASSERT_TRUE(m_pair[leader]->leads()) << "instance " << leader << " should lead";
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(m_pair[leader]->proc().stop(SIGKILL, 10s), 128 + SIGKILL);
    ASSERT_TRUE(wait_until([&] { return m_pair[standby]->streams() && m_pair[standby]->leads(); }, 60s, 20ms))
        << "the standby did not take over\n"
        << m_pair[standby]->log();
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    worst = std::max(worst, took);
    std::cout << "[ takeover ] kill " << kill + 1 << ": " << took.count() << " ms\n";
    const double next = m_pair[standby]->metric("outbox_relay_leader_epoch").value_or(0);
    EXPECT_GT(next, epoch) << "every takeover raises the leader epoch";
    epoch = next;
    EXPECT_THAT(m_pair[standby]->log(), HasSubstr("took the lead of the slot"));
    keep(*m_pair[leader], "killed leader " + std::to_string(kill));
    m_pair[leader] = launch((leader == 0 ? "a" : "b") + std::to_string(kill + 1));
    ASSERT_TRUE(wait_until([&] { return m_pair[leader]->waits(); }, 30s)) << m_pair[leader]->log();
    leader = standby;
  }
  const auto expected = writer.stop();
  std::cout << "[ takeover ] worst of 5 kill -9 takeovers: " << worst.count() << " ms\n";
  EXPECT_LT(worst, 15s) << "the standby must take over within seconds";

  const auto records = consume_all(topic, expected, 90s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok(true)) << v.detail;
  std::cout << "[ takeover ] " << expected.size() << " events, " << v.duplicated << " extra copies\n";
}

TEST_F(relay_ha, in_exactly_once_mode_takeovers_after_kill_9_duplicate_nothing_for_read_committed_consumers) {
  const auto topic = unique_name("haeos");
  const auto t = create_table("ob_haeos");
  write_config(config(tables({t}), "", "",
                      "  delivery: exactly_once\n  checkpoint_topic: " + unique_name("checkpoints") + "\n"));
  m_pair[0] = launch("a0");
  ASSERT_TRUE(wait_until([&] { return m_pair[0]->streams(); }, 60s)) << m_pair[0]->log();
  m_pair[1] = launch("b0");
  ASSERT_TRUE(wait_until([&] { return m_pair[1]->waits(); }, 30s)) << m_pair[1]->log();

  trickle writer(t, topic, "eos-trickle", 10ms);  // 100 rows/s
  int leader = 0;
  for (int kill = 0; kill < 3; ++kill) {
    ASSERT_TRUE(publishes(*m_pair[leader], 50)) << m_pair[leader]->log();
    const int standby = 1 - leader;
    ASSERT_TRUE(m_pair[leader]->leads());
    EXPECT_EQ(m_pair[leader]->proc().stop(SIGKILL, 10s), 128 + SIGKILL);
    ASSERT_TRUE(wait_until([&] { return m_pair[standby]->streams() && m_pair[standby]->leads(); }, 60s, 20ms))
        << m_pair[standby]->log();
    keep(*m_pair[leader], "killed leader " + std::to_string(kill));
    m_pair[leader] = launch((leader == 0 ? "a" : "b") + std::to_string(kill + 1));
    ASSERT_TRUE(wait_until([&] { return m_pair[leader]->waits(); }, 30s)) << m_pair[leader]->log();
    leader = standby;
  }
  const auto expected = writer.stop();
  // librdkafka's consumer reads read_committed by default: the aborted transactions of the killed leaders are
  // invisible to it.
  const auto records = consume_all(topic, expected, 90s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail;
  EXPECT_EQ(v.duplicated, 0U);
  std::cout << "[ takeover ] exactly_once: " << expected.size() << " events, " << v.duplicated
            << " duplicates after 3 takeovers\n";
}

TEST_F(relay_ha, a_paused_leader_is_replaced_and_publishes_and_confirms_nothing_when_it_wakes) {
  const auto topic = unique_name("hapause");
  const auto t = create_table("ob_hapause");
  write_config(config(tables({t}), "  wal_sender_timeout: 3s\n"));
  m_pair[0] = launch("a");
  ASSERT_TRUE(wait_until([&] { return m_pair[0]->streams(); }, 60s)) << m_pair[0]->log();
  m_pair[1] = launch("b");
  ASSERT_TRUE(wait_until([&] { return m_pair[1]->waits(); }, 30s)) << m_pair[1]->log();

  pqxx::connection c(require_services().pg_dsn);
  std::vector<expected_event> expected;
  for (int i = 0; i < 10; ++i) expected.push_back(insert_one(c, t, topic, "before", i));
  const std::string written = pg_scalar("SELECT pg_current_wal_insert_lsn()::text");
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 10; }, 60s));
  ASSERT_TRUE(wait_until([&] { return m_pair[0]->metric("outbox_relay_inflight_messages") == 0.0; }, 30s));
  // Everything before the pause is confirmed: the last status update reached the server.
  ASSERT_TRUE(wait_until(
      [&] {
        return pg_scalar("SELECT confirmed_flush_lsn >= '" + written +
                         "'::pg_lsn FROM pg_replication_slots WHERE "
                         "slot_name = '" +
                         m_slot + "'") == "t";
      },
      30s, 100ms));
  const double published_before = m_pair[0]->metric("outbox_relay_events_published_total").value_or(-1);
  const double old_epoch = m_pair[0]->metric("outbox_relay_leader_epoch").value_or(0);
  const auto confirmed = [&] {
    return pg_scalar("SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = '" +
                     m_slot + "'");
  };
  const std::string confirmed_before = confirmed();

  // A long stall of the leader: the server drops its connection after wal_sender_timeout and the lock with it.
  ASSERT_EQ(::kill(m_pair[0]->proc().pid(), SIGSTOP), 0);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return m_pair[1]->streams(); }, 60s, 50ms)) << m_pair[1]->log();
  std::cout << "[ takeover ] paused leader replaced after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms (wal_sender_timeout 3 s)\n";
  EXPECT_GT(m_pair[1]->metric("outbox_relay_leader_epoch").value_or(0), old_epoch);
  for (int i = 0; i < 20; ++i) expected.push_back(insert_one(c, t, topic, "after", i));
  ASSERT_TRUE(wait_until([&] { return kafka_record_count(topic) >= 30; }, 60s));

  // The old leader wakes up: its stream is gone, it publishes and confirms nothing, and waits as the standby.
  ASSERT_EQ(::kill(m_pair[0]->proc().pid(), SIGCONT), 0);
  const std::size_t waits_before = [&] {
    const std::string text = m_pair[0]->log();
    std::size_t n = 0;
    for (auto at = text.find("standby: another relay leads"); at != std::string::npos;
         at = text.find("standby: another relay leads", at + 1))
      ++n;
    return n;
  }();
  EXPECT_EQ(waits_before, 0U);
  ASSERT_TRUE(wait_until([&] { return m_pair[0]->waits(); }, 60s)) << m_pair[0]->log();
  EXPECT_EQ(m_pair[0]->metric("outbox_relay_events_published_total"), published_before)
      << "the woken leader published something";
  EXPECT_EQ(m_pair[0]->metric("outbox_relay_leader"), 0.0);
  EXPECT_THAT(m_pair[0]->get("/readyz").second, HasSubstr("standby"));
  EXPECT_GE(std::stoll(confirmed()), std::stoll(confirmed_before)) << "the slot never goes back";

  const auto records = consume_all(topic, expected, 60s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok(true)) << v.detail;
  std::cout << "[ takeover ] " << v.duplicated << " extra copies\n";
  EXPECT_EQ(m_pair[1]->proc().stop(SIGTERM, 30s), 0);
  EXPECT_EQ(m_pair[0]->proc().stop(SIGTERM, 30s), 0);
}

TEST_F(relay_ha, in_exactly_once_mode_a_paused_leader_is_fenced_and_nothing_it_had_open_becomes_visible) {
  const auto topic = unique_name("haeospause");
  const auto t = create_table("ob_haeospause");
  write_config(config(tables({t}), "  wal_sender_timeout: 3s\n", "",
                      "  delivery: exactly_once\n  checkpoint_topic: " + unique_name("checkpoints") + "\n"));
  m_pair[0] = launch("a");
  ASSERT_TRUE(wait_until([&] { return m_pair[0]->streams(); }, 60s)) << m_pair[0]->log();
  m_pair[1] = launch("b");
  ASSERT_TRUE(wait_until([&] { return m_pair[1]->waits(); }, 30s)) << m_pair[1]->log();

  trickle writer(t, topic, "eos-pause", 10ms);  // 100 rows/s: the leader nearly always has a transaction open
  ASSERT_TRUE(publishes(*m_pair[0], 100)) << m_pair[0]->log();

  // The leader stalls with a Kafka transaction open; the standby takes over (a higher epoch on PostgreSQL) and
  // its init_transactions() fences the old producer on Kafka, whose open transaction the coordinator aborts.
  ASSERT_EQ(::kill(m_pair[0]->proc().pid(), SIGSTOP), 0);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(wait_until([&] { return m_pair[1]->streams() && m_pair[1]->leads(); }, 60s, 50ms)) << m_pair[1]->log();
  std::cout << "[ takeover ] exactly_once: paused leader replaced after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms (wal_sender_timeout 3 s)\n";
  ASSERT_TRUE(publishes(*m_pair[1], 100)) << m_pair[1]->log();

  // Awake, the old leader commits nothing more: its producer is fenced and its stream gone, and the leader lock
  // is the new leader's, so it waits as the standby.
  ASSERT_EQ(::kill(m_pair[0]->proc().pid(), SIGCONT), 0);
  ASSERT_TRUE(wait_until([&] { return m_pair[0]->waits(); }, 60s)) << m_pair[0]->log();
  EXPECT_TRUE(m_pair[0]->proc().running());
  EXPECT_EQ(m_pair[0]->metric("outbox_relay_leader"), 0.0);
  ASSERT_TRUE(publishes(*m_pair[1], 100)) << m_pair[1]->log();

  const auto expected = writer.stop();
  const auto records = consume_all(topic, expected, 90s);
  const auto v = check_stream(records, expected);
  EXPECT_TRUE(v.ok()) << v.detail;
  EXPECT_EQ(v.duplicated, 0U) << "a read_committed consumer saw an event twice";
  std::cout << "[ takeover ] exactly_once, paused leader: " << expected.size() << " events, " << v.duplicated
            << " duplicates; the woken leader "
            << "waits as the standby\n";
  EXPECT_EQ(m_pair[1]->proc().stop(SIGTERM, 30s), 0);
}

}  // namespace
}  // namespace outbox::test
