// payment-ledger: credits payment callbacks to accounts, each exactly once, with the PostgreSQL inbox
// in the same transaction as the credit (SPEC §5).
#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/config/config_error.hpp"
#include "outbox/config/consumer_config.hpp"
#include "outbox/metrics/http_endpoint.hpp"
#include "outbox/metrics/registry.hpp"
#include "outbox/consumer/consumer.hpp"
#include "outbox/consumer/stop_signals.hpp"
#include "outbox/consumer/deserialize.hpp"

#include <pqxx/pqxx>

#include <cstdint>
#include <iostream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace outbox;
using consumer::outcome;

constexpr std::string_view k_usage =
    "usage: payment-ledger --config FILE   consume payment callbacks and credit accounts until SIGTERM/SIGINT\n"
    "       payment-ledger --version | --help\n"
    "exit codes: 0 clean stop, 2 bad usage or config, 1 runtime failure\n";

constexpr int k_exit_ok = 0;
constexpr int k_exit_failure = 1;
constexpr int k_exit_usage = 2;

/// A credit a callback asks for.
struct credit {
  std::string account_id;
  std::int64_t amount_cents = 0;
};

/// Reads `{"account_id": "a1", "amount_cents": 1250}`; anything else is fatal (retrying cannot fix it).
credit parse_callback(const consumer::record& r) {
  const nlohmann::json j = consumer::parse_json(r);
  if (!j.is_object()) throw consumer::deserialization_error("payment callback is not a JSON object");
  const auto account = j.find("account_id");
  if (account == j.end() || !account->is_string() || account->get_ref<const std::string&>().empty()) {
    throw consumer::fatal_error("payment callback has no account_id string");
  }
  const auto amount = j.find("amount_cents");
  if (amount == j.end() || amount->is_null()) throw consumer::fatal_error("payment callback has no amount_cents");
  if (!amount->is_number_integer()) throw consumer::fatal_error("amount_cents is not an integer: " + amount->dump());
  if (amount->is_number_unsigned() &&
      amount->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    throw consumer::fatal_error("amount_cents is too large: " + amount->dump());
  }
  const auto cents = amount->get<std::int64_t>();
  if (cents < 0) throw consumer::fatal_error("amount_cents is negative: " + std::to_string(cents));
  return {account->get<std::string>(), cents};
}

/// Credits one callback inside the transaction that also holds its inbox row.
outcome apply(const consumer::record& r, pqxx::work& tx) {
  const credit c = parse_callback(r);
  const pqxx::result res = tx.exec_params(
      "UPDATE accounts SET balance_cents = balance_cents + $1 WHERE account_id = $2", c.amount_cents, c.account_id);
  if (res.affected_rows() == 0) return outcome::retry("unknown account " + c.account_id + "; it may be created later");
  return outcome::done();
}

const std::vector<config::key_spec>& ledger_section() {
  static const std::vector<config::key_spec> keys = {
      config::section(
          "ledger", {config::string_key("dsn").required().describe(
                        "PostgreSQL database with the accounts table; the inbox lives there too (same as dedupe.dsn)")})
          .describe("The ledger's own database")};
  return keys;
}

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
      std::cout << "payment-ledger " OUTBOX_VERSION "\n";
      return k_exit_ok;
    }
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.starts_with("--config=")) {
      config_path = std::string(arg.substr(9));
    } else {
      std::cerr << "payment-ledger: unknown or incomplete argument '" << arg << "'\n" << k_usage;
      return k_exit_usage;
    }
  }
  if (config_path.empty()) {
    std::cerr << "payment-ledger: --config FILE is required\n" << k_usage;
    return k_exit_usage;
  }

  config::consumer_config cfg;
  try {
    cfg = config::load_consumer_config(config_path, ledger_section());
  } catch (const config::config_error& e) {
    std::cerr << e.what() << "\n";
    return k_exit_usage;
  } catch (const std::exception& e) {
    std::cerr << "payment-ledger: " << e.what() << "\n";
    return k_exit_usage;
  }
  const std::string& ledger_dsn = cfg.tree.get<std::string>("ledger.dsn");
  if (cfg.dedupe.store != config::dedupe_store::postgres) {
    std::cerr << config_path << ": dedupe.store: payment-ledger needs `postgres` (the inbox must commit with the "
              << "credit); it is `" << config::to_string(cfg.dedupe.store) << "`\n";
    return k_exit_usage;
  }
  if (cfg.dedupe.dsn != ledger_dsn) {
    std::cerr << config_path << ": dedupe.dsn: must name the same database as ledger.dsn (write the same text in "
              << "both), so that the inbox row and the credit commit in one transaction\n";
    return k_exit_usage;
  }
  log::configure(cfg.log.level, cfg.log.format);

  try {
    metrics::registry registry;
    registry.add_process_metrics();
    auto options = consumer::from_config(cfg);
    options.metrics = &registry;
    consumer::consumer c(std::move(options), consumer::transactional_handler(apply));
    metrics::http_endpoint endpoint(registry, [&c]() -> metrics::readiness {
      if (c.halted()) return {false, "halted: " + c.halt_reason()};
      if (!c.assigned()) return {false, "no partitions assigned"};
      return {true, ""};
    });
    endpoint.start(cfg.metrics.listen);
    const auto stop_on_signal = signals.attach(c);
    log::info(
        "payment-ledger", "started",
        {{"version", OUTBOX_VERSION}, {"group", cfg.consumer.group_id}, {"database", log::redact_dsn(ledger_dsn)}});
    c.run();
    endpoint.stop();
    log::info("payment-ledger", "stopped cleanly");
    return k_exit_ok;
  } catch (const outbox_error& e) {
    log::error("payment-ledger", "stopping on an unrecoverable error",
               {{"category", e.value().category}, {"error", e.what()}});
    return e.value().category == "config" ? k_exit_usage : k_exit_failure;
  } catch (const std::exception& e) {
    log::error("payment-ledger", "stopping on an unrecoverable error", {{"error", e.what()}});
    return k_exit_failure;
  }
}
