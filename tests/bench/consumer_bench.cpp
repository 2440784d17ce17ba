// consumer_bench: the SDK's throughput against a bare librdkafka consumer loop, on the same pre-filled topic.
// Both run the same payment-ledger-style handler (parse the JSON callback, credit an in-memory ledger); the SDK
// adds the memory dedupe store, offset tracking and its commits. Prints both rates and their ratio.
// `workers` mode instead runs a handler that waits like an HTTP call at consumer.workers 1, 8 and 32 and prints
// records/s for each, next to the rate the wait allows (workers / wait).
//
//   source .run/services.env && build/tests/bench/consumer_bench [records=500000] [rounds=2] [both|bare|sdk]
//   source .run/services.env && build/tests/bench/consumer_bench workers [records=4000] [wait_ms=5]
// `inbox` mode runs payment-ledger's credit in the PostgreSQL inbox transaction (synchronous_commit on, as on a
// production server) with a transaction per record and with inbox.batch_size BATCH, and prints both rates:
//   source .run/services.env && build/tests/bench/consumer_bench inbox [records=20000] [batch=100]
#include "outbox/base/log.hpp"
#include "outbox/consumer/consumer.hpp"
#include "outbox/consumer/deserialize.hpp"
#include "outbox/dedupe/store.hpp"
#include "test_producer.hpp"

#include <librdkafka/rdkafka.h>
#include <pqxx/pqxx>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <unordered_map>

namespace {

using namespace outbox;
using clock_type = std::chrono::steady_clock;

constexpr int k_partitions = 6;
constexpr int k_accounts = 1000;

/// The work both loops do per record: what payment-ledger does, minus PostgreSQL.
struct ledger {
  std::unordered_map<std::string, std::int64_t> balances;
  void credit(std::string_view value) {
    const auto j = nlohmann::json::parse(value, nullptr, false);
    if (j.is_discarded()) return;
    balances[j.at("account_id").get<std::string>()] += j.at("amount_cents").get<std::int64_t>();
  }
};

struct run_result {
  double rate = 0;  ///< records per second, first record to last
};

std::string brokers() {
  const char* b = std::getenv("OUTBOX_KAFKA_BROKERS");
  if (b == nullptr || *b == '\0') {
    std::fprintf(stderr, "OUTBOX_KAFKA_BROKERS is not set: scripts/services.sh start && source .run/services.env\n");
    std::exit(2);
  }
  return b;
}

void fill(const std::string& topic, long records) {
  consumer_test::create_topic(brokers(), topic, k_partitions);
  consumer_test::test_producer producer(brokers());
  std::mt19937_64 rng(42);
  for (long i = 0; i < records; ++i) {
    const std::string account = "acct-" + std::to_string(rng() % k_accounts);
    producer.send(
        {topic,
         -1,
         account,
         R"({"account_id": ")" + account + R"(", "amount_cents": )" + std::to_string(1 + rng() % 100000) + "}",
         {{"event_id", "cb-" + std::to_string(i)}, {"event_type", "payment_succeeded"}}});
  }
  producer.flush(std::chrono::minutes(5));
}

run_result bare_loop(const std::string& topic, const std::string& group, long records) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers().c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "group.id", group.c_str(), err, sizeof err);
  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_subscribe(rk, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  ledger l;
  long seen = 0;
  clock_type::time_point first;
  while (seen < records) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (seen++ == 0) first = clock_type::now();
      l.credit(std::string_view(static_cast<const char*>(m->payload), m->len));
    }
    rd_kafka_message_destroy(m);
  }
  const double secs = std::chrono::duration<double>(clock_type::now() - first).count();
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return {static_cast<double>(records - 1) / secs};
}

run_result sdk_loop(const std::string& topic, const std::string& group, long records, bool with_dedupe) {
  consumer::consumer_options o;
  o.brokers = brokers();
  o.group_id = group;
  o.topics = {topic};
  o.check_retention = consumer::retention_check::off;  // the local broker keeps records longer than a bench needs
  dedupe::memory_options mem;
  mem.max_entries = static_cast<std::size_t>(records) * 2;
  if (with_dedupe) o.dedupe = dedupe::make_memory_store(mem);
  ledger l;
  long seen = 0;
  clock_type::time_point first;
  clock_type::time_point last;
  consumer::consumer* self = nullptr;
  consumer::consumer c(std::move(o), [&](const consumer::record& r) {
    if (seen++ == 0) first = clock_type::now();
    l.credit(consumer::value_of(r));
    if (seen == records) {
      last = clock_type::now();
      self->stop();
    }
    return consumer::outcome::done();
  });
  self = &c;
  c.run();
  const double secs = std::chrono::duration<double>(last - first).count();
  return {static_cast<double>(records - 1) / secs};
}

/// The SDK with `workers` lanes and a handler that waits `wait` per record; records/s first record to last.
run_result waiting_loop(const std::string& topic, const std::string& group, long records, int workers,
                        std::chrono::milliseconds wait) {
  consumer::consumer_options o;
  o.brokers = brokers();
  o.group_id = group;
  o.topics = {topic};
  o.workers = workers;
  o.check_retention = consumer::retention_check::off;
  o.dedupe = dedupe::make_memory_store({});
  std::atomic<long> seen{0};
  std::atomic<std::int64_t> first_ns{0};
  std::atomic<std::int64_t> last_ns{0};
  consumer::consumer* self = nullptr;
  const auto now_ns = [] { return clock_type::now().time_since_epoch().count(); };
  consumer::consumer c(std::move(o), [&](const consumer::record&) {
    std::int64_t unset = 0;
    first_ns.compare_exchange_strong(unset, now_ns());
    std::this_thread::sleep_for(wait);  // the merchant's HTTP endpoint answering
    if (seen.fetch_add(1) + 1 == records) {
      last_ns = now_ns();
      self->stop();
    }
    return consumer::outcome::done();
  });
  self = &c;
  c.run();
  const double secs = static_cast<double>(last_ns.load() - first_ns.load()) / 1e9;
  return {static_cast<double>(records) / secs};
}

std::string pg_dsn() {
  const char* d = std::getenv("OUTBOX_PG_DSN");
  if (d == nullptr || *d == '\0') {
    std::fprintf(stderr, "OUTBOX_PG_DSN is not set: scripts/services.sh start && source .run/services.env\n");
    std::exit(2);
  }
  return d;
}

/// The SDK with the PostgreSQL inbox in `schema` (batch 1: a transaction per record); records/s first to last.
run_result inbox_loop(const std::string& topic, const std::string& group, const std::string& schema, long records,
                      std::size_t batch) {
  consumer::consumer_options o;
  o.brokers = brokers();
  o.group_id = group;
  o.topics = {topic};
  o.check_retention = consumer::retention_check::off;
  consumer::inbox_options inbox;
  // Each commit waits for its WAL to be flushed, as on a production server (the local server runs without).
  inbox.dsn = pg_dsn() + " options='-csearch_path=" + schema + " -csynchronous_commit=on'";
  inbox.batch = batch;
  o.inbox = inbox;
  bool started = false;
  clock_type::time_point first;
  clock_type::time_point last;
  consumer::consumer* self = nullptr;
  consumer::consumer c(std::move(o), consumer::transactional_handler([&](const consumer::record& r, pqxx::work& tx) {
                         if (!started) first = clock_type::now();
                         started = true;
                         const auto j = nlohmann::json::parse(consumer::value_of(r));
                         tx.exec_params("UPDATE accounts SET balance_cents = balance_cents + $1 WHERE account_id = $2",
                                        j.at("amount_cents").get<std::int64_t>(),
                                        j.at("account_id").get<std::string>());
                         return consumer::outcome::done();
                       }));
  self = &c;
  std::thread watch([&] {
    // Counts what the inbox committed: the handler's own count includes records of a batch not committed yet.
    pqxx::connection db(pg_dsn());
    while (true) {
      const long n =
          pqxx::nontransaction(db)
              .exec1("SELECT count(*) FROM " + schema + ".outbox_inbox WHERE consumer_group = " + db.quote(group))[0]
              .as<long>();
      if (n >= records) break;
      // Poll interval of the count above: a count of up to `records` rows every 5 ms took a quarter of a core from
      // the two loops it measures; 50 ms adds at most that much to a run of several seconds.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    last = clock_type::now();
    self->stop();
  });
  c.run();
  watch.join();
  return {static_cast<double>(records) / std::chrono::duration<double>(last - first).count()};
}

int run_inbox(int argc, char** argv) {
  const long records = argc > 2 ? std::atol(argv[2]) : 20000;
  const auto batch = static_cast<std::size_t>(argc > 3 ? std::atol(argv[3]) : 100);
  outbox::log::configure(outbox::log::level::warn, outbox::log::format::text);
  const std::string suffix = std::to_string(std::random_device{}() % 1'000'000'000);
  const std::string topic = "bench_inbox_" + suffix;
  {
    pqxx::connection db(pg_dsn());
    const auto fsync = pqxx::nontransaction(db).exec1("SHOW fsync")[0].as<std::string>();
    std::printf("the server runs with fsync %s%s\n", fsync.c_str(),
                fsync == "on" ? "" : ": a commit costs no flush here, and the figures understate what batching saves");
  }
  std::printf("filling %s with %ld records over %d partitions...\n", topic.c_str(), records, k_partitions);
  fill(topic, records);
  double rates[2] = {0, 0};
  for (int round = 0; round < 2; ++round) {
    const std::string schema = "bench_inbox_" + suffix + "_" + std::to_string(round);
    {
      pqxx::connection db(pg_dsn());
      pqxx::nontransaction(db).exec("CREATE SCHEMA " + schema + "; CREATE TABLE " + schema +
                                    ".accounts (account_id text PRIMARY KEY, balance_cents bigint NOT NULL); INSERT "
                                    "INTO " +
                                    schema + ".accounts SELECT 'acct-' || g, 0 FROM generate_series(0, " +
                                    std::to_string(k_accounts - 1) + ") g");
    }
    const std::size_t b = round == 0 ? 1 : batch;
    rates[round] = inbox_loop(topic, "bench_inbox_" + suffix + "_" + std::to_string(round), schema, records, b).rate;
    std::printf("inbox, %zu record(s) a transaction: %.0f records/s\n", b, rates[round]);
    pqxx::connection db(pg_dsn());
    pqxx::nontransaction(db).exec("DROP SCHEMA " + schema + " CASCADE");
  }
  std::printf("batched / per record: %.2f (target >= 5)\n", rates[1] / rates[0]);
  return 0;
}

int run_workers(int argc, char** argv) {
  const long records = argc > 2 ? std::atol(argv[2]) : 4000;
  const auto wait = std::chrono::milliseconds(argc > 3 ? std::atol(argv[3]) : 5);
  outbox::log::configure(outbox::log::level::warn, outbox::log::format::text);
  const std::string suffix = std::to_string(std::random_device{}() % 1'000'000'000);
  const std::string topic = "bench_notify_" + suffix;
  std::printf("filling %s with %ld records over %d partitions, keys over %d accounts...\n", topic.c_str(), records,
              k_partitions, k_accounts);
  fill(topic, records);
  for (const int workers : {1, 8, 32}) {
    const auto r =
        waiting_loop(topic, "bench_workers_" + suffix + "_" + std::to_string(workers), records, workers, wait);
    const double allowed = 1000.0 * workers / static_cast<double>(wait.count());
    std::printf("workers %2d, handler waits %lld ms: %.0f records/s (the wait allows %.0f: %.2f of it)\n", workers,
                static_cast<long long>(wait.count()), r.rate, allowed, r.rate / allowed);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "workers") return run_workers(argc, argv);
  if (argc > 1 && std::string(argv[1]) == "inbox") return run_inbox(argc, argv);
  const long records = argc > 1 ? std::atol(argv[1]) : 500'000;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 2;
  const std::string mode = argc > 3 ? argv[3] : "both";
  outbox::log::configure(outbox::log::level::warn, outbox::log::format::text);
  const std::string suffix = std::to_string(std::random_device{}() % 1'000'000'000);
  const std::string topic = "bench_payments_" + suffix;
  std::printf("filling %s with %ld records over %d partitions...\n", topic.c_str(), records, k_partitions);
  fill(topic, records);

  double best_bare = 0;
  double best_sdk = 0;
  double best_plain = 0;
  for (int r = 0; r < rounds; ++r) {
    const std::string round = suffix + "_" + std::to_string(r);
    const auto bare = mode == "sdk" ? run_result{1} : bare_loop(topic, "bench_bare_" + round, records);
    const auto sdk = mode == "bare" ? run_result{1} : sdk_loop(topic, "bench_sdk_" + round, records, true);
    const auto plain = mode != "both" ? run_result{1} : sdk_loop(topic, "bench_plain_" + round, records, false);
    std::printf(
        "round %d: bare loop %.0f records/s | SDK + memory dedupe %.0f records/s, ratio %.3f | SDK without "
        "dedupe %.0f records/s, ratio %.3f\n",
        r + 1, bare.rate, sdk.rate, sdk.rate / bare.rate, plain.rate, plain.rate / bare.rate);
    best_bare = std::max(best_bare, bare.rate);
    best_sdk = std::max(best_sdk, sdk.rate);
    best_plain = std::max(best_plain, plain.rate);
  }
  std::printf(
      "best: bare %.0f records/s, SDK + memory dedupe %.0f records/s, ratio %.3f (target >= 0.95); SDK "
      "without dedupe ratio %.3f\n",
      best_bare, best_sdk, best_sdk / best_bare, best_plain / best_bare);
  return 0;
}
