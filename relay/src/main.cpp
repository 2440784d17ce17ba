// outbox-relay: tails outbox tables through logical replication and publishes each committed row to Kafka.
#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/config/config_error.hpp"
#include "outbox/config/relay_config.hpp"
#include "outbox/metrics/http_endpoint.hpp"
#include "outbox/metrics/registry.hpp"
#include "outbox/relay/publisher.hpp"
#include "outbox/relay/relay.hpp"
#include "outbox/relay/replication_stream.hpp"
#include "outbox/relay/source_setup.hpp"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <string_view>

namespace {

using namespace outbox;

constexpr std::string_view k_usage =
    "usage: outbox-relay --config FILE [--recreate-slot] [--backfill-table SCHEMA.TABLE ...]\n"
    "                                          run until SIGTERM/SIGINT\n"
    "       outbox-relay --config FILE --check    validate config, reach PostgreSQL and Kafka, print a report\n"
    "       outbox-relay --version | --help\n"
    "  --recreate-slot         drop the slot and the relay's state, make a new slot and first publish the rows\n"
    "                          the outbox tables hold now (the way out after a lost slot)\n"
    "  --backfill-table T      before streaming, publish the rows table T holds now (after a table was swapped\n"
    "                          or left the publication); repeatable\n"
    "exit codes: 0 clean stop, 2 bad usage or config, 1 runtime failure (or stopped after halting)\n";

constexpr int k_exit_ok = 0;
constexpr int k_exit_failure = 1;
constexpr int k_exit_usage = 2;

/// `--check`: what the relay would find and do, without creating or streaming anything.
int check(const config::relay_config& c) {
  bool ok = true;
  std::cout << "config: ok\n" << config::dump_redacted(c) << "\n";
  if (c.sink.allow_unsafe_properties) {
    bool any = false;
    for (const auto& [key, value] : c.sink.properties) {
      if (const std::string why = config::unsafe_property(key, value); !why.empty()) {
        std::cout << "WARNING: sink.allow_unsafe_properties is true and sink.properties." << key << " " << why << "\n";
        any = true;
      }
    }
    if (!any) std::cout << "note: sink.allow_unsafe_properties is true (no unsafe property is set)\n";
  }
  std::cout << "postgresql: " << log::redact_dsn(c.source.dsn) << "\n";
  try {
    relay::pg_session s(relay::side_params(c.source), "side connection");
    s.connect(c.source.connect_timeout);
    const auto report = relay::inspect_source(s, c, false);
    for (const auto& [name, value] : report.facts) std::cout << "  " << name << ": " << value << "\n";
    for (const auto& w : report.warnings) std::cout << "  WARNING: " << w << "\n";
    for (const auto& p : report.problems) std::cout << "  PROBLEM: " << p << "\n";
    ok = ok && report.ok();
    relay::replication_stream stream(relay::replication_params(c.source));
    const auto id = stream.connect(c.source.connect_timeout);
    std::cout << "  system: " << id.system_id << ", timeline " << id.timeline << "\n";
    if (report.state && report.state->system_identifier != id.system_id) {
      std::cout << "  PROBLEM: the state table says the relay streamed from system " << report.state->system_identifier
                << ", this server is " << id.system_id << "; the relay will refuse to start (see --recreate-slot)\n";
      ok = false;
    } else if (report.state && report.state->backfill == "done" && !report.slot.exists) {
      std::cout << "  PROBLEM: slot " << c.source.slot
                << " is gone but the relay published from it before; the relay will refuse to start "
                   "(see --recreate-slot)\n";
      ok = false;
    } else if (report.slot.exists && report.slot.invalidated()) {
      std::cout << "  PROBLEM: slot " << c.source.slot << " was invalidated; the relay will refuse to start "
                << "(see --recreate-slot)\n";
      ok = false;
    }
  } catch (const std::exception& e) {
    std::cout << "  PROBLEM: " << e.what() << "\n";
    ok = false;
  }
  std::cout << "kafka: " << c.sink.brokers << "\n";
  try {
    // librdkafka says why a broker cannot be reached (TLS, SASL) only in its error callback.
    std::vector<std::string> reasons;
    relay::publisher p(
        c.sink, 1000, [](const relay::delivery&) {},
        [&reasons](rd_kafka_resp_err_t, const std::string& reason) {
          if (std::find(reasons.begin(), reasons.end(), reason) == reasons.end()) {
            reasons.push_back(reason);
          }
        });
    try {
      for (const auto& b : p.describe_cluster(std::chrono::seconds(10))) std::cout << "  broker: " << b << "\n";
    } catch (const std::exception& e) {
      p.poll();
      std::string why = e.what();
      for (const auto& r : reasons) why += "; " + r;
      std::cout << "  PROBLEM: " << why << "\n";
      ok = false;
    }
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
  relay::run_options opts;
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
    } else if (arg == "--recreate-slot") {
      opts.recreate_slot = true;
    } else if (arg == "--backfill-table" && i + 1 < argc) {
      std::string t = argv[++i];
      if (t.find('.') == std::string::npos) t = "public." + t;
      opts.backfill_tables.push_back(std::move(t));
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
  for (const auto& t : opts.backfill_tables) {
    const bool known = std::any_of(cfg.source.tables.begin(), cfg.source.tables.end(),
                                   [&](const config::table_source& s) { return s.qualified_name() == t; });
    if (!known) {
      std::cerr << "outbox-relay: --backfill-table " << t << " is not one of source.tables\n";
      return k_exit_usage;
    }
  }
  log::configure(cfg.log.level, cfg.log.format);
  if (check_only) return check(cfg);

  try {
    log::info("relay", "starting",
              {{"version", OUTBOX_VERSION},
               {"slot", cfg.source.slot},
               {"brokers", cfg.sink.brokers},
               {"postgresql", log::redact_dsn(cfg.source.dsn)}});
    metrics::registry registry;
    registry.add_process_metrics();
    relay::relay r(cfg, opts, registry);
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
