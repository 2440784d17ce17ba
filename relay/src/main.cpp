// outbox-relay: tails outbox tables through logical replication and publishes each committed row to Kafka.
#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/config/config_error.hpp"
#include "outbox/config/relay_config.hpp"
#include "outbox/metrics/http_endpoint.hpp"
#include "outbox/metrics/registry.hpp"
#include "outbox/relay/publisher.hpp"
#include "outbox/relay/relay.hpp"
#include "outbox/relay/source_setup.hpp"

#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>

namespace {

using namespace outbox;

constexpr std::string_view k_usage =
    "usage: outbox-relay --config FILE            run until SIGTERM/SIGINT\n"
    "       outbox-relay --config FILE --check    validate config, reach PostgreSQL and Kafka, print a report\n"
    "       outbox-relay --version | --help\n"
    "exit codes: 0 clean stop, 2 bad usage or config, 1 runtime failure\n";

constexpr int k_exit_ok = 0;
constexpr int k_exit_failure = 1;
constexpr int k_exit_usage = 2;

relay::settings to_settings(const config::relay_config& c) {
  relay::settings s;
  s.dsn = c.source.dsn;
  s.slot = c.source.slot;
  s.publication = c.source.publication;
  for (const auto& t : c.source.tables) {
    relay::table_settings ts;
    ts.route.schema = t.schema;
    ts.route.table = t.table;
    ts.route.columns = relay::column_map{t.columns.id,         t.columns.aggregate_type, t.columns.aggregate_id,
                                         t.columns.event_type, t.columns.payload,        t.columns.headers};
    ts.delete_after_publish = t.delete_after_publish;
    s.tables.push_back(std::move(ts));
  }
  if (c.source.logical_messages) s.message_prefix = c.source.logical_messages->prefix;
  s.heartbeat_interval = c.source.heartbeat_interval;
  s.brokers = c.sink.brokers;
  s.topic_template = c.sink.topic_template;
  s.kafka_properties.assign(c.sink.properties.begin(), c.sink.properties.end());
  s.max_inflight_messages = static_cast<std::size_t>(c.relay.max_inflight_messages);
  s.max_inflight_bytes = c.relay.max_inflight_bytes;
  s.status_interval = c.relay.status_interval;
  s.shutdown_timeout = c.relay.shutdown_timeout;
  s.stall_timeout = c.relay.stall_timeout;
  return s;
}

/// `--check`: what the relay would find, without creating or streaming anything.
int check(const config::relay_config& c, const relay::settings& s) {
  bool ok = true;
  std::cout << "config: ok\n" << config::dump_redacted(c) << "\n";
  std::cout << "postgresql: " << log::redact_dsn(s.dsn) << "\n";
  try {
    const auto report = relay::prepare_source(s, false);
    for (const auto& [name, value] : report.facts) std::cout << "  " << name << ": " << value << "\n";
    for (const auto& p : report.problems) std::cout << "  PROBLEM: " << p << "\n";
    ok = ok && report.ok();
  } catch (const std::exception& e) {
    std::cout << "  PROBLEM: " << e.what() << "\n";
    ok = false;
  }
  std::cout << "kafka: " << s.brokers << "\n";
  try {
    relay::publisher p(
        s.brokers, s.kafka_properties, s.max_inflight_messages, [](const relay::delivery&) {},
        [](bool, const std::string&) {});
    for (const auto& b : p.describe_cluster(std::chrono::seconds(10))) std::cout << "  broker: " << b << "\n";
  } catch (const std::exception& e) {
    std::cout << "  PROBLEM: " << e.what() << "\n";
    ok = false;
  }
  std::cout << (ok ? "check: ok\n" : "check: FAILED\n");
  return ok ? k_exit_ok : k_exit_failure;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << k_usage;
      return k_exit_ok;
    }
    if (arg == "--version") {
      std::cout << "outbox-relay " OUTBOX_VERSION "\n";
      return k_exit_ok;
    }
    if (arg == "--check") {
      check_only = true;
    } else if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.starts_with("--config=")) {
      config_path = std::string(arg.substr(9));
    } else {
      std::cerr << "outbox-relay: unknown or incomplete argument '" << arg << "'\n" << k_usage;
      return k_exit_usage;
    }
  }
  if (config_path.empty()) {
    std::cerr << "outbox-relay: --config FILE is required\n" << k_usage;
    return k_exit_usage;
  }

  config::relay_config cfg;
  try {
    cfg = config::load_relay_config(config_path);
  } catch (const config::config_error& e) {
    std::cerr << e.what() << "\n";
    return k_exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "outbox-relay: " << e.what() << "\n";
    return k_exit_usage;
  }
  log::configure(cfg.log.level, cfg.log.format);
  const relay::settings s = to_settings(cfg);
  if (check_only) return check(cfg, s);

  try {
    log::info("relay", "starting",
              {{"version", OUTBOX_VERSION},
               {"slot", s.slot},
               {"brokers", s.brokers},
               {"postgresql", log::redact_dsn(s.dsn)}});
    metrics::registry registry;
    registry.add_process_metrics();
    relay::relay r(s, registry);
    metrics::http_endpoint endpoint(registry, [&r] { return r.ready(); });
    endpoint.start(cfg.metrics.listen);
    const int code = r.run();
    endpoint.stop();
    return code;
  } catch (const outbox_error& e) {
    log::error("relay", "stopping on an unrecoverable error", {{"category", e.value().category}, {"error", e.what()}});
    return e.value().category == "config" ? k_exit_usage : k_exit_failure;
  } catch (const std::exception& e) {
    log::error("relay", "stopping on an unrecoverable error", {{"error", e.what()}});
    return k_exit_failure;
  }
}
