#include "outbox/metrics/http_endpoint.hpp"
#include "outbox/metrics/registry.hpp"

#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

namespace outbox::metrics {
namespace {

TEST(metrics_registry, renders_counters_gauges_and_histograms_in_text_format) {
  registry r;
  auto& events = r.add_counter("outbox_test_events_total", "Events seen.", {"table", "topic"});
  events.with({"public.outbox", "orders"}).inc(3);
  events.with({"public.outbox", "payments"}).inc();
  r.add_gauge("outbox_test_inflight", "In flight.").get().set(42);
  auto& h = r.add_histogram("outbox_test_seconds", "Latency.", {}, {0.1, 1}).get();
  h.observe(0.05);
  h.observe(0.5);
  h.observe(5);
  const std::string text = r.render();
  EXPECT_NE(text.find("# HELP outbox_test_events_total Events seen.\n# TYPE outbox_test_events_total counter\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("outbox_test_events_total{table=\"public.outbox\",topic=\"orders\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("outbox_test_events_total{table=\"public.outbox\",topic=\"payments\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("outbox_test_inflight 42\n"), std::string::npos);
  EXPECT_NE(text.find("outbox_test_seconds_bucket{le=\"0.10000000000000001\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("outbox_test_seconds_bucket{le=\"1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("outbox_test_seconds_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("outbox_test_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(text.find("outbox_test_seconds_sum 5.5499999999999998\n"), std::string::npos) << text;
}

TEST(metrics_registry, escapes_label_values) {
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  registry r;
  r.add_counter("outbox_test_total", "x", {"reason"}).with({"bad \"quote\""}).inc();
  EXPECT_NE(r.render().find("outbox_test_total{reason=\"bad \\\"quote\\\"\"} 1"), std::string::npos);
}

TEST(metrics_registry, counters_are_safe_across_threads) {
  registry r;
  auto& fam = r.add_counter("outbox_test_total", "x", {"t"});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&fam] {
      for (int i = 0; i < 10000; ++i) fam.with({"same"}).inc();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(fam.with({"same"}).value(), 40000.0);
}

TEST(metrics_registry, process_metrics_and_promtool_accepts_the_output) {
  registry r;
  r.add_process_metrics();
  r.add_counter("outbox_test_events_total", "Events.", {"topic"}).with({"t\"1"}).inc();
  r.add_histogram("outbox_test_seconds", "Latency.", {"topic"}, latency_buckets()).with({"a"}).observe(0.2);
  const std::string text = r.render();
  EXPECT_NE(text.find("process_resident_memory_bytes "), std::string::npos);
  EXPECT_NE(text.find("process_cpu_seconds_total "), std::string::npos);
  const std::string path = testing::TempDir() + "metrics_render.txt";
  std::ofstream(path) << text;
  const int rc = std::system(("promtool check metrics < " + path + " > " + path + ".out 2>&1").c_str());
  std::ifstream out(path + ".out");
  const std::string report((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_EQ(rc, 0) << "promtool check metrics failed (is promtool installed? scripts/install.sh installs it):\n"
                   << report << "\n"
                   << text;
}

TEST(http_endpoint, serves_metrics_health_and_readiness) {
  registry r;
  r.add_gauge("outbox_test_up", "Up.").get().set(1);
  bool ready = false;
  http_endpoint endpoint(r, [&ready] { return readiness{ready, "not streaming"}; });
  endpoint.start("127.0.0.1:0");
  ASSERT_GT(endpoint.port(), 0);
  httplib::Client client("127.0.0.1", endpoint.port());
  auto m = client.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("outbox_test_up 1"), std::string::npos);
  EXPECT_EQ(m->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  auto h = client.Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto not_ready = client.Get("/readyz");
  ASSERT_TRUE(not_ready);
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_NE(not_ready->body.find("not streaming"), std::string::npos);
  ready = true;
  auto now_ready = client.Get("/readyz");
  ASSERT_TRUE(now_ready);
  EXPECT_EQ(now_ready->status, 200);
  endpoint.stop();
}

TEST(http_endpoint, refuses_an_address_it_cannot_bind_naming_it) {
  registry r;
  http_endpoint first(r, [] { return readiness{true, ""}; });
  first.start("127.0.0.1:0");
  http_endpoint second(r, [] { return readiness{true, ""}; });
  try {
    second.start("127.0.0.1:" + std::to_string(first.port()));
    FAIL() << "binding a used port should throw";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("127.0.0.1:" + std::to_string(first.port())), std::string::npos) << e.what();
  }
}

TEST(http_endpoint, stop_right_after_start_returns) {
  // A stop that races the server thread's start must still end the thread, never hang.
  registry r;
  for (int i = 0; i < 200; ++i) {
    http_endpoint endpoint(r, [] { return readiness{true, ""}; });
    endpoint.start("127.0.0.1:0");
    endpoint.stop();
  }
}

}  // namespace
}  // namespace outbox::metrics
