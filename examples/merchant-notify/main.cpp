// merchant-notify: maximum-effort notification. Consumes payment events and POSTs a signed notification to the
// merchant's URL on a schedule of non-blocking retry tiers, with a status table and an HTTP API (README.md).
#include "api_server.hpp"
#include "http_client.hpp"
#include "merchants.hpp"
#include "notifier.hpp"
#include "status_store.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/config/config_error.hpp"
#include "outbox/config/consumer_config.hpp"
#include "outbox/consumer/consumer.hpp"
#include "outbox/consumer/stop_signals.hpp"
#include "outbox/metrics/registry.hpp"

#include <iostream>
#include <string>
#include <string_view>

namespace {

using namespace outbox;

constexpr std::string_view k_usage =
    "usage: merchant-notify --config FILE   notify merchants of payment events until SIGTERM/SIGINT\n"
    "       merchant-notify --version | --help\n"
    "exit codes: 0 clean stop, 2 bad usage or config, 1 runtime failure\n";

constexpr int k_exit_ok = 0;
constexpr int k_exit_failure = 1;
constexpr int k_exit_usage = 2;

}  // namespace

int main(int argc, char** argv) {
  // SIGTERM and SIGINT stop the service cleanly from here on, during start-up too.
  consumer::stop_signals signals;
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << k_usage;
      return k_exit_ok;
    }
    if (arg == "--version") {
      std::cout << "merchant-notify " OUTBOX_VERSION "\n";
      return k_exit_ok;
    }
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.starts_with("--config=")) {
      config_path = std::string(arg.substr(9));
    } else {
      std::cerr << "merchant-notify: unknown or incomplete argument '" << arg << "'\n" << k_usage;
      return k_exit_usage;
    }
  }
  if (config_path.empty()) {
    std::cerr << "merchant-notify: --config FILE is required\n" << k_usage;
    return k_exit_usage;
  }

  config::consumer_config cfg;
  notify::notify_settings settings;
  try {
    cfg = config::load_consumer_config(config_path, notify::notify_section());
    settings = notify::settings_from(cfg.tree);
  } catch (const config::config_error& e) {
    std::cerr << e.what() << "\n";
    return k_exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "merchant-notify: " << e.what() << "\n";
    return k_exit_usage;
  }
  if (cfg.dedupe.store != config::dedupe_store::postgres) {
    std::cerr << config_path << ": dedupe.store: merchant-notify needs `postgres` (the inbox commits with the "
              << "status row); it is `" << config::to_string(cfg.dedupe.store) << "`\n";
    return k_exit_usage;
  }
  if (cfg.dedupe.dsn != settings.dsn) {
    std::cerr << config_path << ": dedupe.dsn: must name the same database as notify.dsn (write the same text in "
              << "both), so that the inbox row and the status row commit in one transaction\n";
    return k_exit_usage;
  }
  log::configure(cfg.log.level, cfg.log.format);
  if (cfg.retry.attempts != 1) {
    log::warn("merchant-notify",
              "retry.attempts is not 1: failed attempts retry in process and hold up every "
              "later record of their partition, other merchants' too",
              {{"retry.attempts", std::to_string(cfg.retry.attempts)}});
  }
  if (cfg.retry.ordering == config::retry_ordering::per_key) {
    log::warn("merchant-notify",
              "retry.ordering is per_key: while one notification of a merchant waits in a retry "
              "tier, every later one of that merchant waits behind it; `none` sends them");
  }
  if (cfg.dlq.max_ratio < 1.0) {
    log::warn("merchant-notify",
              "dlq.max_ratio is below 1: one dead merchant can halt every merchant's "
              "notifications; see README \"One dead merchant\"",
              {{"dlq.max_ratio", std::to_string(cfg.dlq.max_ratio)}});
  }

  try {
    notify::http_global_init();
    metrics::registry registry;
    registry.add_process_metrics();
    notify::status_store store(settings.dsn, settings.table);
    if (cfg.inbox.create_table) store.create_if_missing();
    auto options = consumer::from_config(cfg);
    options.metrics = &registry;
    if (options.retry_topics.empty()) options.retry_topics = config::wechatpay_delays();
    notify::notifier n(settings, options.retry_topics, store, registry);
    options.on_dead_letter = [&n](const consumer::record& r, const consumer::dead_letter_info& dl, pqxx::work& tx) {
      n.dead_lettered(r, dl, tx);
    };
    consumer::consumer c(
        std::move(options),
        consumer::transactional_handler([&n](const consumer::record& r, pqxx::work& tx) { return n.handle(r, tx); }));
    notify::api_server api(store, n, registry, [&c]() -> metrics::readiness {
      if (c.halted()) return {false, "halted: " + c.halt_reason()};
      if (!c.assigned()) return {false, "no partitions assigned"};
      return {true, ""};
    });
    api.start(cfg.metrics.listen);
    const auto stop_on_signal = signals.attach(c);
    log::info("merchant-notify", "started",
              {{"version", OUTBOX_VERSION},
               {"group", cfg.consumer.group_id},
               {"merchants", std::to_string(settings.merchants.size())},
               {"database", log::redact_dsn(settings.dsn)}});
    c.run();
    api.stop();
    log::info("merchant-notify", "stopped cleanly");
    return k_exit_ok;
  } catch (const outbox_error& e) {
    log::error("merchant-notify", "stopping on an unrecoverable error",
               {{"category", e.value().category}, {"error", e.what()}});
    return e.value().category == "config" ? k_exit_usage : k_exit_failure;
  } catch (const std::exception& e) {
    log::error("merchant-notify", "stopping on an unrecoverable error", {{"error", e.what()}});
    return k_exit_failure;
  }
}
