// The consumer against librdkafka's mock cluster: outcomes, commits, order, dedupe, stop, stop signals and rebalance,
// deterministic and without services.
#include "outbox/consumer/consumer.hpp"
#include "outbox/consumer/stop_signals.hpp"
#include "outbox/dedupe/store.hpp"
#include "running_consumer.hpp"
#include "test_producer.hpp"
#include "worker_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <future>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace outbox::consumer {
namespace {

using namespace std::chrono_literals;
using consumer_test::outgoing;
using consumer_test::test_producer;

bool wait_for(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);  // poll interval, bounded by the deadline
  }
  return true;
}

/// Every handler call, in call order.
struct call_log {
  std::mutex mutex;
  std::vector<std::pair<std::int32_t, std::int64_t>> calls;  // partition, offset
  std::multiset<std::string> event_ids;

  void add(const record& r) {
    std::lock_guard lock(mutex);
    calls.emplace_back(r.partition, r.offset);
    event_ids.emplace(r.event_id());
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return calls.size();
  }
  std::size_t distinct() {
    std::lock_guard lock(mutex);
    return std::set<std::string>(event_ids.begin(), event_ids.end()).size();
  }
};

using consumer_test::running_consumer;

class mock_consumer : public ::testing::Test {
 protected:
  void SetUp() override {
    m_producer = std::make_unique<test_producer>("", 1);
    m_brokers = m_producer->mock_bootstraps();
  }

  void create_topic(const std::string& topic, int partitions) {
    ASSERT_EQ(rd_kafka_mock_topic_create(m_producer->mock(), topic.c_str(), partitions, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  /// `per_partition` records on each partition, event ids `e-<partition>-<i>`, each sent `copies` times.
  void fill(const std::string& topic, int partitions, int per_partition, int copies = 1) {
    for (int i = 0; i < per_partition; ++i) {
      for (int p = 0; p < partitions; ++p) {
        for (int c = 0; c < copies; ++c) {
          const std::string id = "e-" + std::to_string(p) + "-" + std::to_string(i);
          m_producer->send(outgoing{topic,
                                    p,
                                    "k" + std::to_string(p),
                                    R"({"n":)" + std::to_string(i) + "}",
                                    {{"event_id", id}, {"event_type", "test"}}});
        }
      }
    }
    m_producer->flush();
  }

  consumer_options options(const std::string& topic, const std::string& group) const {
    consumer_options o;
    o.brokers = m_brokers;
    o.group_id = group;
    o.topics = {topic};
    o.retry.initial = 10ms;
    o.retry.max = 40ms;
    o.commit_interval = 100ms;
    o.stop_timeout = 10s;
    o.properties = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}};
    o.prepare_topics = false;  // the mock cluster has no admin API: the tests create what they need
    o.check_retention = retention_check::off;
    return o;
  }

  std::unique_ptr<test_producer> m_producer;
  std::string m_brokers;
};

TEST_F(mock_consumer, commits_after_each_outcome_and_keeps_partition_order) {
  create_topic("payments", 3);
  fill("payments", 3, 50);
  call_log log;
  std::map<std::pair<std::int32_t, std::int64_t>, int> attempts;
  std::mutex attempts_mutex;
  auto h = [&](const record& r) -> outcome {
    log.add(r);
    int n = 0;
    {
      std::lock_guard lock(attempts_mutex);
      n = ++attempts[{r.partition, r.offset}];
    }
    if (r.partition == 0 && r.offset == 10 && n <= 2) throw std::runtime_error("database busy");
    if (r.partition == 1 && r.offset == 5 && n == 1) return outcome::retry("account not yet created");
    if (r.partition == 2 && r.offset == 7) throw fatal_error("amount is negative");
    return outcome::done();
  };
  running_consumer c(options("payments", "g1"), h);
  ASSERT_TRUE(wait_for(
      [&] {
        const auto s = c.get().stats();
        return s.processed + s.fatal == 150;
      },
      30s));
  c.stop();

  const auto s = c.get().stats();
  EXPECT_EQ(s.processed, 149u);
  EXPECT_EQ(s.fatal, 1u);
  EXPECT_EQ(s.retried, 3u);
  EXPECT_EQ(s.duplicate, 0u);
  EXPECT_EQ(log.size(), 153u) << "150 records plus three retried attempts";
  std::map<std::int32_t, std::int64_t> last;
  for (const auto& [p, o] : log.calls) {
    if (last.contains(p)) {
      EXPECT_GE(o, last[p]) << "partition " << p << ": a later record ran before a retried one finished";
    }
    last[p] = o;
  }
  EXPECT_EQ(consumer_test::committed_offsets(m_brokers, "g1", "payments", 3), (std::vector<std::int64_t>{50, 50, 50}));
}

TEST_F(mock_consumer, memory_dedupe_runs_each_event_once) {
  create_topic("callbacks", 2);
  fill("callbacks", 2, 40, 2);
  call_log log;
  auto o = options("callbacks", "g2");
  o.dedupe = dedupe::make_memory_store({});
  running_consumer c(std::move(o), [&](const record& r) {
    log.add(r);
    return outcome::done();
  });
  ASSERT_TRUE(wait_for(
      [&] {
        const auto s = c.get().stats();
        return s.processed + s.duplicate == 160;
      },
      30s));
  c.stop();
  EXPECT_EQ(c.get().stats().processed, 80u);
  EXPECT_EQ(c.get().stats().duplicate, 80u);
  EXPECT_EQ(log.event_ids.size(), 80u);
  EXPECT_EQ(std::set<std::string>(log.event_ids.begin(), log.event_ids.end()).size(), 80u) << "an event ran twice";
  EXPECT_EQ(consumer_test::committed_offsets(m_brokers, "g2", "callbacks", 2), (std::vector<std::int64_t>{80, 80}));
}

TEST_F(mock_consumer, a_record_without_event_id_is_fatal_when_deduping) {
  create_topic("noid", 1);
  m_producer->send(outgoing{"noid", 0, "k", "{}", {}});
  m_producer->send(outgoing{"noid", 0, "k", "{}", {{"event_id", "x1"}}});
  m_producer->flush();
  auto o = options("noid", "g3");
  o.dedupe = dedupe::make_memory_store({});
  call_log log;
  running_consumer c(std::move(o), [&](const record& r) {
    log.add(r);
    return outcome::done();
  });
  ASSERT_TRUE(wait_for([&] { return c.get().stats().processed + c.get().stats().fatal == 2; }, 30s));
  c.stop();
  EXPECT_EQ(c.get().stats().fatal, 1u);
  EXPECT_EQ(log.size(), 1u) << "the handler never sees the record it cannot dedupe";
  EXPECT_EQ(consumer_test::committed_offsets(m_brokers, "g3", "noid", 1), (std::vector<std::int64_t>{2}));
}

TEST_F(mock_consumer, stop_during_a_retry_commits_only_what_came_before) {
  create_topic("stuck", 1);
  fill("stuck", 1, 10);
  auto o = options("stuck", "g4");
  o.retry.initial = 5ms;
  o.retry.max = 5ms;
  o.retry.max_attempts = 0;  // retry in process until stopped
  running_consumer c(std::move(o), [&](const record& r) {
    return r.offset == 5 ? outcome::retry("account unknown") : outcome::done();
  });
  ASSERT_TRUE(wait_for([&] { return c.get().stats().retried >= 3; }, 30s));
  const auto took = c.stop();
  EXPECT_LT(took, 10s) << "stop is bounded by stop_timeout";
  EXPECT_EQ(c.get().stats().processed, 5u) << "records after the retried one wait behind it";
  EXPECT_EQ(consumer_test::committed_offsets(m_brokers, "g4", "stuck", 1), (std::vector<std::int64_t>{5}));
}

TEST_F(mock_consumer, a_stop_signal_during_start_up_stops_the_consumer_as_soon_as_it_is_attached) {
  create_topic("sig_early", 1);
  fill("sig_early", 1, 5);
  stop_signals signals;
  ASSERT_EQ(std::raise(SIGTERM), 0);  // the handler runs before raise() returns: the process is still here
  EXPECT_TRUE(signals.requested());
  std::atomic<int> handled{0};
  consumer c(options("sig_early", "g_sig_early"), [&](const record&) {
    ++handled;
    return outcome::done();
  });
  const auto attached = signals.attach(c);
  auto ran = std::async(std::launch::async, [&] { c.run(); });
  ASSERT_EQ(ran.wait_for(30s), std::future_status::ready) << "run() did not return after the early SIGTERM";
  ran.get();
  EXPECT_EQ(handled.load(), 0) << "a consumer stopped before it ran handles nothing";
}

TEST_F(mock_consumer, sigint_stops_a_running_consumer_which_commits_what_it_finished) {
  create_topic("sig_run", 1);
  fill("sig_run", 1, 10);
  stop_signals signals;
  EXPECT_FALSE(signals.requested());
  std::atomic<int> handled{0};
  consumer c(options("sig_run", "g_sig_run"), [&](const record&) {
    ++handled;
    return outcome::done();
  });
  const auto attached = signals.attach(c);
  auto ran = std::async(std::launch::async, [&] { c.run(); });
  ASSERT_TRUE(wait_for([&] { return handled.load() == 10; }, 30s));
  ASSERT_EQ(std::raise(SIGINT), 0);
  ASSERT_EQ(ran.wait_for(30s), std::future_status::ready) << "run() did not return after SIGINT";
  ran.get();
  EXPECT_TRUE(signals.requested());
  EXPECT_EQ(consumer_test::committed_offsets(m_brokers, "g_sig_run", "sig_run", 1), (std::vector<std::int64_t>{10}));
}

TEST(stop_signals, is_one_per_process_and_gives_the_previous_handlers_back) {
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  struct sigaction before_term {};
  struct sigaction before_int {};
  ASSERT_EQ(::sigaction(SIGTERM, &ignore, &before_term), 0);
  ASSERT_EQ(::sigaction(SIGINT, &ignore, &before_int), 0);
  {
    stop_signals signals;
    struct sigaction now {};
    ASSERT_EQ(::sigaction(SIGTERM, nullptr, &now), 0);
    EXPECT_NE(now.sa_handler, SIG_IGN);
    EXPECT_THROW(stop_signals second, outbox_error);
  }
  struct sigaction after {};
  ASSERT_EQ(::sigaction(SIGTERM, nullptr, &after), 0);
  EXPECT_EQ(after.sa_handler, SIG_IGN);
  ASSERT_EQ(::sigaction(SIGINT, nullptr, &after), 0);
  EXPECT_EQ(after.sa_handler, SIG_IGN);
  {
    const stop_signals again;  // the first one's end frees the place
    EXPECT_FALSE(again.requested());
  }
  ::sigaction(SIGTERM, &before_term, nullptr);
  ::sigaction(SIGINT, &before_int, nullptr);
}

using consumer_test::shared_store;

// The mock coordinator refuses every commit while a rebalance runs (a real broker accepts the revoking
// member's commit; tests/integration/consumer checks that no record runs twice there), so records
// finished just before the revoke come again on the new owner: the shared store must skip them.
TEST_F(mock_consumer, rebalance_moves_partitions_and_the_shared_store_skips_redeliveries) {
  create_topic("moving", 4);
  fill("moving", 4, 150);
  call_log log;
  auto slow = [&](const record& r) {
    log.add(r);
    std::this_thread::sleep_for(2ms);  // simulated work, so the second member joins mid-stream
    return outcome::done();
  };
  const std::shared_ptr<dedupe::store> store = dedupe::make_memory_store({});
  auto with_store = [&](const std::string& group) {
    auto o = options("moving", group);
    // The eager assignor: the mock coordinator of this librdkafka treats a cooperative member that joins as a
    // lost assignment for a whole session timeout (real Kafka, cooperative: tests/fault/consumer).
    o.properties.emplace_back("partition.assignment.strategy", "range,roundrobin");
    o.dedupe = std::make_unique<shared_store>(store);
    return o;
  };
  running_consumer a(with_store("g5"), slow);
  ASSERT_TRUE(wait_for([&] { return a.get().stats().processed >= 50; }, 30s));
  running_consumer b(with_store("g5"), slow);
  ASSERT_TRUE(wait_for([&] { return log.distinct() == 600; }, 60s)) << "distinct=" << log.distinct();
  ASSERT_TRUE(wait_for(
      [&] {
        return consumer_test::committed_offsets(m_brokers, "g5", "moving", 4) ==
               std::vector<std::int64_t>{150, 150, 150, 150};
      },
      30s));
  b.stop();
  a.stop();
  EXPECT_GT(b.get().stats().processed, 0u) << "the second member got partitions";
  EXPECT_EQ(log.size(), 600u) << "an effect ran twice";
  EXPECT_EQ(a.get().stats().processed + b.get().stats().processed, 600u);
}

}  // namespace
}  // namespace outbox::consumer

namespace outbox::consumer {
namespace {

TEST_F(mock_consumer, a_complete_that_fails_waits_and_the_offset_moves_only_once_it_is_recorded) {
  create_topic("completes", 1);
  fill("completes", 1, 5);
  const auto inner = std::make_shared<shared_store>(dedupe::make_memory_store({}));
  auto* store = inner.get();
  store->fail_complete = 3;  // Redis unreachable for three tries right after the first handler
  call_log log;
  auto o = options("completes", "g6");
  o.dedupe = std::make_unique<shared_store>(std::shared_ptr<dedupe::store>(inner, inner.get()));
  running_consumer c(std::move(o), [&](const record& r) {
    log.add(r);
    return outcome::done();
  });
  ASSERT_TRUE(wait_for([&] { return c.get().stats().processed == 5; }, 30s));
  ASSERT_TRUE(wait_for(
      [&] { return consumer_test::committed_offsets(m_brokers, "g6", "completes", 1) == std::vector<std::int64_t>{5}; },
      30s));
  c.stop();
  EXPECT_EQ(log.size(), 5u) << "the handler ran once per record: only complete was tried again";
  EXPECT_EQ(c.get().stats().dependency_errors, 3u);
  EXPECT_EQ(store->fail_complete.load(), 0);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(store->claim("g6", "e-0-" + std::to_string(i), "another"), dedupe::claim_result::duplicate) << i;
  }
}

TEST_F(mock_consumer, a_handler_slower_than_the_lease_keeps_a_second_worker_out) {
  create_topic("slow", 2);
  const std::shared_ptr<dedupe::store> store = dedupe::make_memory_store({.lease = 1s});
  std::atomic<int> effects{0};
  std::atomic<int> running{0};
  std::atomic<int> overlaps{0};
  auto slow = [&](const record&) {
    if (running.fetch_add(1) > 0) ++overlaps;
    std::this_thread::sleep_for(3s);  // the handler's work: three leases long
    ++effects;
    running.fetch_sub(1);
    return outcome::done();
  };
  auto member = [&] {
    auto o = options("slow", "g7");
    o.properties.emplace_back("partition.assignment.strategy", "range,roundrobin");
    o.dedupe = std::make_unique<shared_store>(store);
    return o;
  };
  running_consumer a(member(), slow);
  ASSERT_TRUE(wait_for([&] { return a.get().assigned(); }, 30s));
  running_consumer b(member(), slow);
  ASSERT_TRUE(wait_for([&] { return a.get().assigned() && b.get().assigned(); }, 30s)) << "one partition each";
  // The same event on both partitions (a relay that published it twice, keyed differently): both members
  // get it at the same moment.
  m_producer->send(outgoing{"slow", 0, "k0", "{}", {{"event_id", "charge-1"}}});
  m_producer->send(outgoing{"slow", 1, "k1", "{}", {{"event_id", "charge-1"}}});
  m_producer->flush();
  ASSERT_TRUE(wait_for(
      [&] {
        const auto sa = a.get().stats();
        const auto sb = b.get().stats();
        return sa.processed + sa.duplicate + sb.processed + sb.duplicate == 2;
      },
      60s));
  b.stop();
  a.stop();
  EXPECT_EQ(effects.load(), 1) << "a second worker ran the event while the first one held it";
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(a.get().stats().processed + a.get().stats().duplicate, 1u) << "each member settled one copy";
  EXPECT_EQ(b.get().stats().processed + b.get().stats().duplicate, 1u);
  EXPECT_EQ(a.get().stats().duplicate + b.get().stats().duplicate, 1u);
  EXPECT_GE(a.get().stats().dependency_errors + b.get().stats().dependency_errors, 1u)
      << "the second copy waited for the claim";
}

TEST_F(mock_consumer, kafka_refusing_a_retry_copy_dead_letters_the_record_with_the_reason) {
  create_topic("refused", 1);
  create_topic("refused.g8.retry.1s", 1);
  create_topic("refused.g8.dlq", 1);
  create_topic("refused.g8.replay", 1);
  m_producer->send(outgoing{"refused", 0, "k", "{}", {{"event_id", "r1"}}});
  m_producer->flush();
  // The next produce request (the retry copy) is refused for good.
  rd_kafka_mock_push_request_errors(m_producer->mock(), 0 /* Produce */, 1,
                                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  auto o = options("refused", "g8");
  o.retry.max_attempts = 1;
  o.retry_topics = {1s};
  running_consumer c(std::move(o), [](const record&) { return outcome::retry("unknown account"); });
  ASSERT_TRUE(wait_for([&] { return c.get().stats().dead_lettered == 1; }, 30s));
  c.stop();
  EXPECT_EQ(c.get().stats().parked, 0u);
  EXPECT_FALSE(c.get().halted());
}

TEST_F(mock_consumer, kafka_refusing_a_dead_letter_halts_until_a_probe_gets_it_through) {
  create_topic("poisoned", 1);
  create_topic("poisoned.g9.dlq", 1);
  create_topic("poisoned.g9.replay", 1);
  m_producer->send(outgoing{"poisoned", 0, "k", "not json", {{"event_id", "p1"}}});
  m_producer->send(outgoing{"poisoned", 0, "k", "{}", {{"event_id", "p2"}}});
  m_producer->flush();
  for (int i = 0; i < 2; ++i) {
    rd_kafka_mock_push_request_errors(m_producer->mock(), 0 /* Produce */, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  }
  auto o = options("poisoned", "g9");
  o.probe_interval = 300ms;
  call_log log;
  running_consumer c(std::move(o), [&](const record& r) {
    log.add(r);
    return r.event_id() == "p1" ? outcome::fatal("not JSON", "deserialization") : outcome::done();
  });
  ASSERT_TRUE(wait_for([&] { return c.get().halted(); }, 30s));
  EXPECT_NE(c.get().halt_reason().find("Kafka refuses the dead letter for poisoned.g9.dlq"), std::string::npos)
      << c.get().halt_reason();
  EXPECT_EQ(c.get().stats().processed, 0u) << "nothing after the held record runs while halted";
  ASSERT_TRUE(wait_for([&] { return !c.get().halted() && c.get().stats().processed == 1; }, 30s))
      << "the probe gets the dead letter through once Kafka takes it";
  c.stop();
  EXPECT_EQ(c.get().stats().dead_lettered, 1u);
  EXPECT_EQ(consumer_test::committed_offsets(m_brokers, "g9", "poisoned", 1), (std::vector<std::int64_t>{2}));
}

}  // namespace
}  // namespace outbox::consumer

// consumer.workers: handlers for different keys side by side, each key in order, offsets below the oldest
// unfinished record.
namespace outbox::consumer {
namespace {

/// Handler calls per key, in call order, and how many ran at once at most.
struct key_log {
  std::mutex mutex;
  std::map<std::string, std::vector<std::int64_t>> offsets;  // key -> offsets in call order
  std::atomic<int> running{0};
  std::atomic<int> most{0};

  void enter(const record& r) {
    const int now = running.fetch_add(1) + 1;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    std::lock_guard lock(mutex);
    offsets[r.key.value_or("")].push_back(r.offset);
  }
  void leave() { running.fetch_sub(1); }
  std::size_t calls() {
    std::lock_guard lock(mutex);
    std::size_t n = 0;
    for (const auto& [k, v] : offsets) n += v.size();
    return n;
  }
};

/// Keys that fall into lanes other than `of`'s among `lanes`.
std::vector<std::string> keys_beside(const std::string& of, std::size_t lanes, std::size_t n) {
  const topic_partition tp{"t", 0};
  const std::size_t taken = detail::lane_of(of, tp, lanes);
  std::vector<std::string> out;
  for (int i = 0; out.size() < n; ++i) {
    std::string k = "merchant-" + std::to_string(i);
    if (detail::lane_of(k, tp, lanes) != taken) out.push_back(std::move(k));
  }
  return out;
}

TEST_F(mock_consumer, workers_run_different_keys_side_by_side_and_each_key_in_order) {
  create_topic("orders", 1);
  for (int i = 0; i < 160; ++i) {
    m_producer->send(
        outgoing{"orders", 0, "key-" + std::to_string(i % 8), "{}", {{"event_id", "o-" + std::to_string(i)}}});
  }
  m_producer->flush();
  auto o = options("orders", "gw1");
  o.workers = 8;
  o.dedupe = dedupe::make_memory_store({});
  key_log log;
  running_consumer c(std::move(o), [&](const record& r) {
    log.enter(r);
    std::this_thread::sleep_for(5ms);  // the handler's work: an HTTP call
    log.leave();
    return outcome::done();
  });
  ASSERT_TRUE(wait_for([&] { return c.get().stats().processed == 160; }, 30s));
  ASSERT_TRUE(wait_for(
      [&] { return consumer_test::committed_offsets(m_brokers, "gw1", "orders", 1) == std::vector<std::int64_t>{160}; },
      30s));
  c.stop();
  EXPECT_EQ(log.calls(), 160u) << "each record ran once";
  EXPECT_GT(log.most.load(), 1) << "no two handlers ever ran at once";
  for (const auto& [key, offsets] : log.offsets) {
    EXPECT_EQ(offsets.size(), 20u) << key;
    EXPECT_TRUE(std::is_sorted(offsets.begin(), offsets.end())) << key << " ran out of order";
  }
}

TEST_F(mock_consumer, with_workers_a_slow_key_holds_only_its_lane_and_offsets_stay_below_it) {
  create_topic("notify", 1);
  const auto others = keys_beside("slow-merchant", 4, 5);
  m_producer->send(outgoing{"notify", 0, "slow-merchant", "{}", {{"event_id", "n-0"}}});
  for (int i = 1; i <= 50; ++i) {
    m_producer->send(outgoing{"notify",
                              0,
                              others[static_cast<std::size_t>(i) % others.size()],
                              "{}",
                              {{"event_id", "n-" + std::to_string(i)}}});
  }
  m_producer->flush();
  std::mutex mutex;
  std::condition_variable cv;
  bool release = false;
  auto o = options("notify", "gw2");
  o.workers = 4;
  running_consumer c(std::move(o), [&](const record& r) {
    if (r.key == "slow-merchant") {
      std::unique_lock lock(mutex);
      cv.wait(lock, [&] { return release; });  // a merchant that does not answer
    }
    return outcome::done();
  });
  ASSERT_TRUE(wait_for([&] { return c.get().stats().processed == 50; }, 30s))
      << "the other keys' records ran while the first one was still running";
  // Two commit intervals: nothing past the unfinished record at offset 0 is committed.
  std::this_thread::sleep_for(250ms);  // commit_interval is 100ms: let commits go out if any would
  EXPECT_LT(consumer_test::committed_offsets(m_brokers, "gw2", "notify", 1).front(), 1);
  {
    std::lock_guard lock(mutex);
    release = true;
  }
  cv.notify_all();
  ASSERT_TRUE(wait_for(
      [&] { return consumer_test::committed_offsets(m_brokers, "gw2", "notify", 1) == std::vector<std::int64_t>{51}; },
      30s));
  c.stop();
  EXPECT_EQ(c.get().stats().processed, 51u);
}

TEST_F(mock_consumer, stop_with_workers_during_a_retry_commits_only_below_it_and_the_rest_ran) {
  create_topic("stuck-w", 1);
  const auto others = keys_beside("k-stuck", 4, 3);
  for (int i = 0; i < 10; ++i) {
    m_producer->send(outgoing{"stuck-w",
                              0,
                              i == 5 ? std::string("k-stuck") : others[static_cast<std::size_t>(i) % 3],
                              "{}",
                              {{"event_id", "s-" + std::to_string(i)}}});
  }
  m_producer->flush();
  auto o = options("stuck-w", "gw3");
  o.workers = 4;
  o.retry.initial = 5ms;
  o.retry.max = 5ms;
  o.retry.max_attempts = 0;  // retry in process until stopped
  running_consumer c(std::move(o), [&](const record& r) {
    return r.offset == 5 ? outcome::retry("account unknown") : outcome::done();
  });
  ASSERT_TRUE(wait_for([&] { return c.get().stats().retried >= 3 && c.get().stats().processed == 9; }, 30s))
      << "the records after the retried one ran in the other lanes";
  const auto took = c.stop();
  EXPECT_LT(took, 10s) << "stop is bounded by stop_timeout";
  EXPECT_EQ(consumer_test::committed_offsets(m_brokers, "gw3", "stuck-w", 1), (std::vector<std::int64_t>{5}));
}

TEST_F(mock_consumer, with_workers_a_key_parked_in_a_tier_keeps_its_order_and_the_others_flow) {
  create_topic("tiered", 1);
  create_topic("tiered.gw4.retry.300ms", 1);
  create_topic("tiered.gw4.dlq", 1);
  create_topic("tiered.gw4.replay", 1);
  const auto others = keys_beside("k-late", 4, 3);
  for (int i = 0; i < 30; ++i) {
    const bool late = i == 2 || i == 12 || i == 22;
    m_producer->send(outgoing{"tiered",
                              0,
                              late ? std::string("k-late") : others[static_cast<std::size_t>(i) % 3],
                              "{}",
                              {{"event_id", "t-" + std::to_string(i)}}});
  }
  m_producer->flush();
  auto o = options("tiered", "gw4");
  o.workers = 4;
  o.retry.max_attempts = 1;
  o.retry_topics = {300ms};
  key_log log;
  std::atomic<bool> failed_once{false};
  running_consumer c(std::move(o), [&](const record& r) {
    log.enter(r);
    log.leave();
    // The first record of k-late fails once: it goes to the tier, and the key's later records wait behind it.
    if (r.offset == 2 && !failed_once.exchange(true)) return outcome::retry("account not yet created");
    return outcome::done();
  });
  ASSERT_TRUE(wait_for([&] { return c.get().stats().processed == 30; }, 30s));
  ASSERT_TRUE(wait_for(
      [&] { return consumer_test::committed_offsets(m_brokers, "gw4", "tiered", 1) == std::vector<std::int64_t>{30}; },
      30s));
  c.stop();
  const auto s = c.get().stats();
  EXPECT_EQ(s.parked, 3u) << "the failed record and the two held behind it";
  EXPECT_EQ(s.held, 2u);
  std::lock_guard lock(log.mutex);
  EXPECT_EQ(log.offsets["k-late"], (std::vector<std::int64_t>{2, 2, 12, 22})) << "k-late ran out of order";
  for (const auto& k : others) EXPECT_EQ(log.offsets[k].size(), 9u) << k;
}

TEST_F(mock_consumer, with_workers_kafka_refusing_a_dead_letter_halts_until_a_probe_gets_it_through) {
  create_topic("poisoned-w", 1);
  create_topic("poisoned-w.gw5.dlq", 1);
  create_topic("poisoned-w.gw5.replay", 1);
  m_producer->send(outgoing{"poisoned-w", 0, "k", "not json", {{"event_id", "p1"}}});
  m_producer->send(outgoing{"poisoned-w", 0, "k2", "{}", {{"event_id", "p2"}}});
  m_producer->flush();
  for (int i = 0; i < 2; ++i) {
    rd_kafka_mock_push_request_errors(m_producer->mock(), 0 /* Produce */, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  }
  auto o = options("poisoned-w", "gw5");
  o.workers = 3;
  o.probe_interval = 300ms;
  running_consumer c(std::move(o), [&](const record& r) {
    return r.event_id() == "p1" ? outcome::fatal("not JSON", "deserialization") : outcome::done();
  });
  ASSERT_TRUE(wait_for([&] { return c.get().halted(); }, 30s));
  EXPECT_NE(c.get().halt_reason().find("Kafka refuses the dead letter"), std::string::npos) << c.get().halt_reason();
  ASSERT_TRUE(wait_for([&] { return !c.get().halted() && c.get().stats().processed == 1; }, 30s))
      << "the probe gets the dead letter through, and consumption resumes";
  c.stop();
  EXPECT_EQ(c.get().stats().dead_lettered, 1u);
  EXPECT_EQ(consumer_test::committed_offsets(m_brokers, "gw5", "poisoned-w", 1), (std::vector<std::int64_t>{2}));
}

TEST_F(mock_consumer, rebalance_with_workers_lets_running_records_finish_and_the_shared_store_skips_redeliveries) {
  create_topic("moving-w", 4);
  fill("moving-w", 4, 100);
  const std::shared_ptr<dedupe::store> store = dedupe::make_memory_store({});
  std::mutex mutex;
  std::multiset<std::string> effects;
  auto slow = [&](const record& r) {
    // Simulated work, so the second member joins mid-stream: every partition has one key, so one lane each.
    std::this_thread::sleep_for(30ms);
    std::lock_guard lock(mutex);
    effects.insert(std::string(r.event_id()));
    return outcome::done();
  };
  auto member = [&] {
    auto o = options("moving-w", "gw6");
    o.properties.emplace_back("partition.assignment.strategy", "range,roundrobin");
    o.dedupe = std::make_unique<shared_store>(store);
    o.workers = 4;
    return o;
  };
  const auto distinct = [&] {
    std::lock_guard lock(mutex);
    return std::set<std::string>(effects.begin(), effects.end()).size();
  };
  running_consumer a(member(), slow);
  ASSERT_TRUE(wait_for([&] { return a.get().stats().processed >= 40; }, 30s));
  running_consumer b(member(), slow);
  ASSERT_TRUE(wait_for([&] { return distinct() == 400; }, 60s)) << "distinct=" << distinct();
  ASSERT_TRUE(wait_for(
      [&] {
        return consumer_test::committed_offsets(m_brokers, "gw6", "moving-w", 4) ==
               std::vector<std::int64_t>{100, 100, 100, 100};
      },
      30s));
  b.stop();
  a.stop();
  EXPECT_GT(b.get().stats().processed, 0u) << "the second member got partitions";
  std::lock_guard lock(mutex);
  EXPECT_EQ(effects.size(), 400u) << "an effect ran twice";
}

TEST_F(mock_consumer, workers_outside_1_to_256_are_refused_naming_the_option) {
  for (const int n : {0, -1, 257}) {
    auto o = options("any", "gw7");
    o.workers = n;
    try {
      consumer c(std::move(o), [](const record&) { return outcome::done(); });
      ADD_FAILURE() << "workers " << n << " was accepted";
    } catch (const outbox_error& e) {
      EXPECT_EQ(e.value().category, "config");
      EXPECT_NE(std::string(e.what()).find("consumer.workers is " + std::to_string(n)), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace outbox::consumer
