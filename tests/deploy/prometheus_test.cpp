// Every expression of deploy/grafana/outbox.json and deploy/prometheus/alerts.yml, evaluated by Debian's
// `prometheus` scraping a real relay under load, with the scrape jobs of deploy/prometheus/prometheus.yml:
// each is a valid query, each metric it names exists, and each dashboard query returns data.
#include "outbox/test/environment.hpp"
#include "outbox/test/postgres.hpp"
#include "outbox/test/process.hpp"
#include "outbox/test/relay_fixture.hpp"
#include "ledger_support.hpp"
#include "test_producer.hpp"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

const std::filesystem::path k_deploy = std::filesystem::path(OUTBOX_SOURCE_DIR) / "deploy";
/// The relay's job name in deploy/prometheus/prometheus.yml, which alerts.yml selects on.
constexpr std::string_view k_relay_job = "outbox-relay";

/// Selectors of series that only exist once something went wrong (an error, a retry, a dead letter):
/// an expression using one may return nothing, but the metric's name must still be known.
const std::vector<std::string> k_event_driven = {"outbox_relay_publish_errors_total", "outbox_consumer_retries_total",
                                                 "outcome=\"dead_lettered\"", "outbox_relay_invalid_records_total"};

/// One scrape target: a job of deploy/prometheus/prometheus.yml and a `host:port`.
struct scrape_target {
  std::string job;
  std::string address;
};

/// One PromQL expression of the deploy files, Grafana variables already substituted.
struct expression {
  std::string origin;  ///< e.g. `dashboard panel "Leader"` or `alert OutboxRelayDown`
  std::string promql;
  bool dashboard = false;  ///< a panel or variable query: must return data
  bool consumer = false;   ///< about consumers: must return data only when a consumer target is scraped
};

bool contains(const std::string& text, std::string_view needle) { return text.find(needle) != std::string::npos; }

bool event_driven(const std::string& text) {
  return std::any_of(k_event_driven.begin(), k_event_driven.end(), [&](const auto& e) { return contains(text, e); });
}

/// Grafana's variables as Prometheus sees them: intervals become 1m, template variables match all.
std::string substitute_variables(const std::string& expr) {
  static const std::regex var(R"(\$\{?(\w+)\}?)");
  std::string out;
  auto last = expr.cbegin();
  for (std::sregex_iterator it(expr.begin(), expr.end(), var), end; it != end; ++it) {
    out.append(last, expr.cbegin() + it->position());
    const std::string name = (*it)[1];
    out += name.starts_with("__") ? "1m" : ".*";
    last = expr.cbegin() + it->position() + it->length();
  }
  out.append(last, expr.cend());
  return out;
}

std::vector<expression> dashboard_expressions() {
  std::ifstream in(k_deploy / "grafana/outbox.json");
  const json dash = json::parse(in);
  std::vector<expression> out;
  const auto add = [&](const std::string& origin, const std::string& expr) {
    out.push_back({origin, substitute_variables(expr), true,
                   contains(expr, "outbox_consumer_") || contains(expr, "$consumer_job")});
  };
  std::vector<json> panels(dash.at("panels").begin(), dash.at("panels").end());
  for (std::size_t i = 0; i < panels.size(); ++i) {
    const json panel = panels[i];  // a copy: push_back below may reallocate
    for (const auto& nested : panel.value("panels", json::array())) panels.push_back(nested);
    for (const auto& target : panel.value("targets", json::array())) {
      add("dashboard panel \"" + panel.value("title", "") + "\"", target.value("expr", ""));
    }
  }
  // Variable queries `label_values(<selector>, label)`: the selector must find series.
  static const std::regex label_values(R"(^label_values\((.+),\s*\w+\)$)");
  for (const auto& v : dash.at("templating").at("list")) {
    if (v.value("type", "") != "query") continue;
    const std::string q =
        v.at("query").is_object() ? v.at("query").value("query", "") : v.at("query").get<std::string>();
    std::smatch m;
    if (std::regex_match(q, m, label_values)) add("dashboard variable $" + v.value("name", ""), m[1]);
  }
  return out;
}

std::vector<expression> alert_expressions() {
  std::vector<expression> out;
  const YAML::Node rules = YAML::LoadFile((k_deploy / "prometheus/alerts.yml").string());
  for (const auto& group : rules["groups"]) {
    for (const auto& rule : group["rules"]) {
      const std::string name = rule["alert"] ? rule["alert"].as<std::string>() : rule["record"].as<std::string>();
      const std::string expr = rule["expr"].as<std::string>();
      out.push_back({"alert " + name, expr, false, contains(expr, "outbox_consumer_")});
    }
  }
  return out;
}

/// The vector selectors of an expression (`metric{matchers}`), for the metric names the deploy files use.
std::vector<std::string> selectors(const std::string& promql) {
  static const std::regex selector(R"(\b((?:outbox|process)_[A-Za-z0-9_]+|up(?=\{))(\{[^}]*\})?)");
  std::vector<std::string> out;
  for (std::sregex_iterator it(promql.begin(), promql.end(), selector), end; it != end; ++it) out.push_back(it->str());
  return out;
}

/// A TCP port nobody listens on right now.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

/// Debian's prometheus on loopback, with deploy/prometheus/prometheus.yml's jobs pointed at `targets`,
/// a 1s scrape and evaluation interval, and the rule files of that config.
class prometheus_server {
 public:
  prometheus_server(const std::string& dir, const std::vector<scrape_target>& targets) : m_port(free_port()) {
    YAML::Node cfg = YAML::LoadFile((k_deploy / "prometheus/prometheus.yml").string());
    cfg["global"]["scrape_interval"] = "1s";
    cfg["global"]["evaluation_interval"] = "1s";
    YAML::Node rule_files(YAML::NodeType::Sequence);
    for (const auto& r : cfg["rule_files"])
      rule_files.push_back((k_deploy / "prometheus" / r.as<std::string>()).string());
    cfg["rule_files"] = rule_files;
    YAML::Node jobs(YAML::NodeType::Sequence);
    std::set<std::string> known;
    for (const auto& job : cfg["scrape_configs"]) {
      const auto name = job["job_name"].as<std::string>();
      known.insert(name);
      std::vector<std::string> addresses;
      for (const auto& t : targets) {
        if (t.job == name) addresses.push_back(t.address);
      }
      if (addresses.empty()) continue;  // nothing of that kind runs in this test
      YAML::Node sc = YAML::Clone(job);
      YAML::Node static_config;
      static_config["targets"] = addresses;
      sc["static_configs"] = YAML::Node(YAML::NodeType::Sequence);
      sc["static_configs"].push_back(static_config);
      jobs.push_back(sc);
    }
    for (const auto& t : targets) {
      EXPECT_TRUE(known.count(t.job)) << "job " << t.job << " is not in deploy/prometheus/prometheus.yml";
    }
    cfg["scrape_configs"] = jobs;
    YAML::Emitter out;
    out << cfg;
    std::ofstream(dir + "/prometheus.yml") << out.c_str() << "\n";
    m_process = std::make_unique<child_process>(
        std::vector<std::string>{OUTBOX_PROMETHEUS_BIN, "--config.file=" + dir + "/prometheus.yml",
                                 "--storage.tsdb.path=" + dir + "/data",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(m_port), "--log.level=warn"},
        dir + "/prometheus.log");
    m_process->start();
  }

  [[nodiscard]] bool ready() {
    auto res = client().Get("/-/ready");
    return res && res->status == 200;
  }
  [[nodiscard]] bool running() { return m_process->running(); }
  [[nodiscard]] std::string log() const { return m_process->log(); }

  /// POST /api/v1/query; the whole response (status, data or error).
  json query(const std::string& promql) {
    auto res = client().Post("/api/v1/query", httplib::Params{{"query", promql}});
    if (!res) return json{{"status", "error"}, {"error", "no response from prometheus"}};
    return json::parse(res->body, nullptr, false);
  }
  /// Whether the query succeeds and returns at least one sample.
  bool has_data(const std::string& promql) {
    const json r = query(promql);
    return r.value("status", "") == "success" && !r["data"]["result"].empty();
  }
  /// Whether a scraped target announced the metric (`# TYPE`/`# HELP`), even with no series yet.
  bool announced(const std::string& metric) {
    for (const std::string suffix : {"", "_total", "_bucket", "_count", "_sum"}) {
      if (!metric.ends_with(suffix)) continue;
      const std::string base = metric.substr(0, metric.size() - suffix.size());
      auto res = client().Get("/api/v1/targets/metadata?metric=" + base);
      if (res && !json::parse(res->body, nullptr, false)["data"].empty()) return true;
    }
    return false;
  }
  json get(const std::string& path) {
    auto res = client().Get(path);
    return res ? json::parse(res->body, nullptr, false) : json{};
  }

 private:
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", m_port);
    c.set_read_timeout(10, 0);
    return c;
  }

  int m_port;
  std::unique_ptr<child_process> m_process;
};

class deploy_prometheus : public relay_fixture {
 protected:
  /// Checks every expression against what Prometheus scraped; returns the problems (empty: all good).
  static std::vector<std::string> problems(prometheus_server& prom, const std::vector<expression>& exprs,
                                           bool consumers_present) {
    std::vector<std::string> out;
    for (const auto& e : exprs) {
      const json r = prom.query(e.promql);
      if (r.value("status", "") != "success") {
        out.push_back(e.origin + ": invalid query: " + r.value("error", r.dump()) + "\n    " + e.promql);
        continue;
      }
      const bool data_expected = e.consumer ? consumers_present : true;
      if (e.dashboard && data_expected && !event_driven(e.promql) && r["data"]["result"].empty()) {
        out.push_back(e.origin + ": returns no data\n    " + e.promql);
      }
      // The selectors inside (also of alert conditions that are normally false): the metrics must exist.
      for (const auto& sel : selectors(e.promql)) {
        const bool consumer_metric = sel.starts_with("outbox_consumer_");
        if ((consumer_metric && !consumers_present) || prom.has_data("count(" + sel + ")")) continue;
        const std::string name = sel.substr(0, sel.find('{'));
        if (event_driven(sel) && (prom.has_data("count({__name__=\"" + name + "\"})") || prom.announced(name)))
          continue;
        out.push_back(e.origin + ": no series for " + sel +
                      (event_driven(sel) ? " and no target announces " + name : "") + "\n    " + e.promql);
      }
    }
    return out;
  }

  /// Runs the checks with Prometheus scraping this test's relay plus `extra_targets` (consumers).
  void check_expressions(const std::vector<scrape_target>& extra_targets) {
    const auto table = create_table("ob_deploy");
    start_relay(config(tables({table})));
    ASSERT_GT(metrics_port(), 0);
    const auto topic = unique_name("deploy");
    const auto insert_rows = [&] {
      pg_exec("INSERT INTO " + table + " (aggregate_type, aggregate_id, event_type, payload) SELECT '" + topic +
              "', 'k' || g, 'e', '{}' FROM generate_series(1, 20) g");
    };
    insert_rows();

    std::vector<scrape_target> targets{{std::string(k_relay_job), "127.0.0.1:" + std::to_string(metrics_port())}};
    targets.insert(targets.end(), extra_targets.begin(), extra_targets.end());
    const bool consumers_present =
        std::any_of(targets.begin(), targets.end(), [](const auto& t) { return t.job != k_relay_job; });
    prometheus_server prom(scratch_dir("prometheus"), targets);
    wait_until([&] { return prom.ready() || !prom.running(); }, 30s, 100ms);
    ASSERT_TRUE(prom.ready()) << "prometheus did not start:\n" << prom.log();
    ASSERT_TRUE(
        wait_until([&] { return prom.has_data("up{job=\"" + std::string(k_relay_job) + "\"} == 1"); }, 30s, 200ms))
        << "prometheus never scraped the relay\n"
        << prom.log();

    std::vector<expression> exprs = dashboard_expressions();
    const auto alerts = alert_expressions();
    exprs.insert(exprs.end(), alerts.begin(), alerts.end());
    ASSERT_GT(exprs.size(), 20U);
    // Rates need two scrapes or more; keep writing while they accumulate.
    std::vector<std::string> found;
    wait_until(
        [&] {
          insert_rows();
          found = problems(prom, exprs, consumers_present);
          return found.empty();
        },
        60s, 1s);
    for (const auto& p : found) ADD_FAILURE() << p;

    // Prometheus evaluated every rule of alerts.yml without error, and none is pending or firing.
    json groups;
    ASSERT_TRUE(wait_until(
        [&] {
          groups = prom.get("/api/v1/rules")["data"]["groups"];
          std::size_t evaluated = 0;
          for (const auto& g : groups) {
            for (const auto& r : g["rules"]) evaluated += r.value("health", "") != "unknown" ? 1 : 0;
          }
          return evaluated == alerts.size();
        },
        30s, 500ms))
        << groups.dump(2);
    for (const auto& g : groups) {
      for (const auto& r : g["rules"]) {
        EXPECT_EQ(r.value("health", ""), "ok") << r.value("name", "") << ": " << r.value("lastError", "");
      }
    }
    json active;
    EXPECT_TRUE(wait_until(
        [&] {
          active = prom.get("/api/v1/alerts")["data"]["alerts"];
          return active.empty();
        },
        15s, 500ms))
        << "alerts active while the relay streams normally: " << active.dump(2);
  }
};

/// payment-ledger with its own schema, topic and group (the consumer tests' fixture, run from here).
struct ledger_environment : consumer_test::ledger_fixture {
  void TestBody() override {}
  using ledger_fixture::create_accounts;
  using ledger_fixture::create_topic;
  using ledger_fixture::m_topic;
  using ledger_fixture::SetUp;
  using ledger_fixture::start_ledger;
  using ledger_fixture::TearDown;
  using ledger_fixture::write_config;
};

TEST_F(deploy_prometheus, every_dashboard_and_alert_expression_is_valid_and_finds_its_metrics) {
  // Prometheus scrapes a relay under insert load and payment-ledger consuming callbacks (some of them
  // repeated, one for an account that does not exist yet, so retries and duplicates have series too).
  ledger_environment ledger;
  ledger.SetUp();
  ledger.create_topic(3);
  ledger.create_accounts({"a1", "a2", "a3"});
  {
    consumer_test::test_producer producer(require_services().kafka_brokers);
    for (int i = 0; i < 300; ++i) {
      const consumer_test::callback c{"ev-" + std::to_string(i), "a" + std::to_string(1 + i % 3), 100 + i};
      producer.send(consumer_test::to_record(ledger.m_topic, c));
      if (i % 10 == 0) producer.send(consumer_test::to_record(ledger.m_topic, c));
    }
    producer.send(consumer_test::to_record(ledger.m_topic, {"ev-late", "a9", 5}));
    producer.flush();
  }
  auto process = ledger.start_ledger(ledger.write_config(), "ledger.log");
  std::string port;
  ASSERT_TRUE(wait_until(
      [&] {
        const std::string log = process->log();
        const std::string marker = "\"listen\":\"127.0.0.1:";
        const auto at = log.find(marker);
        if (at != std::string::npos)
          port = log.substr(at + marker.size(), log.find('"', at + marker.size()) - at - marker.size());
        return !port.empty();
      },
      60s))
      << process->log();
  ASSERT_TRUE(process->wait_for_log("unknown account a9", 60s)) << process->log();
  check_expressions({{"payment-ledger", "127.0.0.1:" + port}});
  EXPECT_EQ(process->stop(SIGTERM, 30s), 0) << process->log();
  ledger.TearDown();
}

TEST_F(deploy_prometheus, a_broker_outage_makes_the_kafka_and_publish_error_alerts_fire) {
  // The relay's real series, scraped during a real outage: the alert conditions become true and Prometheus holds
  // the alerts pending (their `for:` would make them fire if the outage lasted).
  const auto table = create_table("ob_outage");
  start_relay(config(tables({table})));
  const auto topic = unique_name("outage");
  kafka_create_topic(topic, 1);
  prometheus_server prom(scratch_dir("prometheus"), {{std::string(k_relay_job), "127.0.0.1:" + std::to_string(metrics_port())}});
  ASSERT_TRUE(wait_until([&] { return prom.ready(); }, 30s, 100ms)) << prom.log();
  ASSERT_TRUE(wait_until([&] { return prom.has_data("up{job=\"outbox-relay\"} == 1"); }, 30s, 200ms)) << prom.log();
  const char* script = std::getenv("OUTBOX_SERVICES_SCRIPT");
  ASSERT_NE(script, nullptr);
  ASSERT_EQ(run_command({"/bin/bash", script, "stop", "kafka"}, 120s).exit_code, 0);
  std::set<std::string> pending;
  const bool both = wait_until(
      [&] {
        pg_exec("INSERT INTO " + table + " (aggregate_type, aggregate_id, event_type, payload) VALUES ('" + topic +
                "', 'k', 'e', '{}')");
        const json alerts = prom.get("/api/v1/alerts");
        for (const auto& a : alerts["data"]["alerts"]) {
          pending.insert(a["labels"].value("alertname", ""));
        }
        return pending.count("OutboxRelayKafkaUnreachable") != 0 && pending.count("OutboxRelayPublishErrors") != 0;
      },
      90s, 1s);
  const auto started = run_command({"/bin/bash", script, "start", "kafka"}, 180s);
  EXPECT_TRUE(both) << "active alerts during the outage: " << ::testing::PrintToString(pending)
                    << "\nkafka_up now: " << prom.query("outbox_relay_kafka_up").dump()
                    << "\nalerts now: " << prom.get("/api/v1/alerts").dump().substr(0, 3000);
  ASSERT_EQ(started.exit_code, 0) << started.output;
  EXPECT_TRUE(wait_until([&] { return kafka_record_count(topic) > 0; }, 120s)) << "events flow again";
  EXPECT_EQ(m_relay->stop(SIGTERM, 60s), 0);
}

}  // namespace
}  // namespace outbox::test
