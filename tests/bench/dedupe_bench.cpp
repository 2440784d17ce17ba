// Claims (lookup + insert) and completes per second for each dedupe store.
//
//   source .run/services.env && build/tests/bench/dedupe_bench
//
// Redis and the PostgreSQL inbox are skipped (with a message) unless OUTBOX_REDIS_URL / OUTBOX_PG_DSN are set.
#include "outbox/dedupe/postgres_inbox.hpp"
#include "outbox/dedupe/store.hpp"

#include <benchmark/benchmark.h>
#include <pqxx/pqxx>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

namespace {

using namespace std::chrono_literals;
using namespace outbox::dedupe;

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : nullptr;
}

/// A per-run name, so repeated runs and concurrent runs never share keys, files or tables.
std::string run_name(const char* what) {
  static int n = 0;
  return std::string("dedupe_bench_") + what + "_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
}

/// New event ids: each iteration claims (a lookup that misses, then an insert) and completes.
void claim_complete(benchmark::State& state, store& s) {
  std::size_t n = 0;
  for (auto _ : state) {
    const std::string id = "evt-" + std::to_string(n++);
    if (s.claim("bench", id, "bench-worker") != claim_result::claimed) {
      state.SkipWithError("a new id was not claimed");
      break;
    }
    s.complete("bench", id, "bench-worker");
  }
  state.SetItemsProcessed(state.iterations());
}

/// Redelivered event ids: each iteration is a lookup that finds a done mark.
void duplicate(benchmark::State& state, store& s) {
  constexpr std::size_t k_ids = 1000;
  for (std::size_t i = 0; i < k_ids; ++i) {
    s.claim("bench", "dup-" + std::to_string(i), "bench-worker");
    s.complete("bench", "dup-" + std::to_string(i), "bench-worker");
  }
  std::size_t n = 0;
  for (auto _ : state) {
    if (s.claim("bench", "dup-" + std::to_string(n++ % k_ids), "bench-worker") != claim_result::duplicate) {
      state.SkipWithError("a done id was not a duplicate");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations());
}

void bm_memory(benchmark::State& state, void (*body)(benchmark::State&, store&)) {
  auto s = make_memory_store({});
  body(state, *s);
}

void bm_sqlite(benchmark::State& state, void (*body)(benchmark::State&, store&)) {
  const auto dir = std::filesystem::temp_directory_path() / run_name("sqlite");
  std::filesystem::create_directories(dir);
  {
    auto s = make_sqlite_store({.path = (dir / "dedupe.db").string(), .retention = 24h});
    body(state, *s);
  }
  std::filesystem::remove_all(dir);
}

void bm_redis(benchmark::State& state, void (*body)(benchmark::State&, store&)) {
  const char* url = env("OUTBOX_REDIS_URL");
  if (url == nullptr) {
    state.SkipWithError("OUTBOX_REDIS_URL is not set: scripts/services.sh start && source .run/services.env");
    return;
  }
  // Keys expire a minute after the run.
  auto s = make_redis_store({.url = url, .retention = 60s, .key_prefix = run_name("redis") + ":"});
  body(state, *s);
}

/// The inbox path as a handler runs it: one transaction per event, holding the inbox insert.
void bm_postgres_inbox(benchmark::State& state) {
  const char* dsn = env("OUTBOX_PG_DSN");
  if (dsn == nullptr) {
    state.SkipWithError("OUTBOX_PG_DSN is not set: scripts/services.sh start && source .run/services.env");
    return;
  }
  const std::string table = run_name("inbox");
  {
    postgres_inbox inbox(dsn, {.table = table, .retention = 24h, .keep_at_least = {}, .dead_letter_table = {}});
    pqxx::connection c(dsn);
    std::size_t n = 0;
    for (auto _ : state) {
      pqxx::work tx(c);
      if (!inbox.claim_in(tx, "bench", "evt-" + std::to_string(n++))) {
        state.SkipWithError("a new id was not claimed");
        break;
      }
      tx.commit();
    }
    state.SetItemsProcessed(state.iterations());
  }
  pqxx::connection c(dsn);
  pqxx::nontransaction(c).exec0("DROP TABLE IF EXISTS " + table);
}

// Wall-clock rates: the remote stores spend their time waiting, not on the CPU.
BENCHMARK_CAPTURE(bm_memory, claim_complete, claim_complete)->UseRealTime();
BENCHMARK_CAPTURE(bm_memory, duplicate, duplicate)->UseRealTime();
BENCHMARK_CAPTURE(bm_sqlite, claim_complete, claim_complete)->UseRealTime();
BENCHMARK_CAPTURE(bm_sqlite, duplicate, duplicate)->UseRealTime();
BENCHMARK_CAPTURE(bm_redis, claim_complete, claim_complete)->UseRealTime();
BENCHMARK_CAPTURE(bm_redis, duplicate, duplicate)->UseRealTime();
BENCHMARK(bm_postgres_inbox)->Name("bm_postgres_inbox/claim_in_commit")->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
