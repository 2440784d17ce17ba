#include "check_flags.hpp"
#include "commands.hpp"
#include "dlq_record.hpp"

#include "outbox/base/text.hpp"
#include "outbox/config/config_error.hpp"
#include "outbox/config/relay_config.hpp"
#include "outbox/config/units.hpp"
#include "outbox/ctl/verify.hpp"

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <iostream>
#include <optional>

namespace outbox::ctl {
namespace {

constexpr const char* k_verify_usage =
    "usage: outboxctl verify --dsn DSN --brokers B [--table SCHEMA.TABLE ...] [--topic-template T]\n"
    "                        [--time-column C] [--since TIME] [--until TIME] [--grace D] [--json]\n"
    "                        [--property KEY=VALUE ...] [--memory SIZE] [--limit N]\n"
    "       outboxctl verify --config relay.yaml [--since TIME] [--until TIME] [--grace D] [--json] ...\n"
    "  --dsn defaults to $OUTBOX_PG_DSN; --since defaults to 24h ago; --until to now minus --grace (1m).\n"
    "exit codes: 0 every row is in Kafka, 3 rows are missing, 1 a service cannot be reached, 2 bad usage\n";

int usage_error(const std::string& why) {
  std::cerr << "outboxctl verify: " << why << "\n" << k_verify_usage;
  return k_exit_usage;
}

std::string age(std::int64_t then_ms, std::int64_t now_ms) {
  const std::int64_t s = std::max<std::int64_t>(0, (now_ms - then_ms) / 1000);
  if (s < 120) return std::to_string(s) + "s";
  if (s < 7200) return std::to_string(s / 60) + "m";
  return std::to_string(s / 3600) + "h";
}

}  // namespace

int verify_command(const std::vector<std::string>& args) {
  const auto now = std::chrono::system_clock::now();
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::optional<std::string> dsn;
  std::optional<std::string> brokers;
  std::optional<std::string> config_path;
  check_flags f;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (const flag_taken t = take_check_flag(args, i, now, f); t.taken) {
      if (!t.error.empty()) return usage_error(t.error);
      continue;
    }
    const std::string& a = args[i];
    if (i + 1 >= args.size()) return usage_error("unknown or incomplete argument '" + a + "'");
    const std::string& v = args[++i];
    if (a == "--dsn") {
      dsn = v;
    } else if (a == "--brokers") {
      brokers = v;
    } else if (a == "--config") {
      config_path = v;
    } else {
      return usage_error("unknown argument '" + a + "'");
    }
  }
  const std::chrono::milliseconds grace = f.grace.value_or(std::chrono::milliseconds(60'000));

  verify_options o;
  if (config_path) {
    if (dsn || brokers || !f.tables.empty() || f.topic_template) {
      return usage_error("--config gives the DSN, brokers, tables and template; do not pass them as well");
    }
    try {
      o = options_from_relay_config(config::load_relay_config(*config_path));
    } catch (const config::config_error& e) {
      std::cerr << e.what() << "\n";
      return k_exit_usage;
    }
    if (o.tables.empty())
      return usage_error("the relay config has no source.tables; logical messages cannot be verified");
    for (auto& t : o.tables) t.time_column = f.time_column;
  } else {
    if (!dsn) {
      if (const char* env = std::getenv("OUTBOX_PG_DSN"); env != nullptr && *env != '\0') dsn = env;
    }
    if (!dsn) return usage_error("--dsn is required (or set OUTBOX_PG_DSN, which keeps the password out of ps)");
    if (!brokers) return usage_error("--brokers is required");
    o.dsn = *dsn;
    o.brokers = *brokers;
    o.tables = tables_from_names(f.tables, f.time_column);
    if (f.topic_template) o.topic_template = *f.topic_template;
  }
  o.kafka_properties.insert(o.kafka_properties.end(), f.properties.begin(), f.properties.end());
  o.since_ms = f.since_ms.value_or(now_ms - 24LL * 3600 * 1000);
  o.until_ms = f.until_ms.value_or(now_ms - grace.count());
  if (o.until_ms <= o.since_ms)
    return usage_error("the window is empty: --until (or now - --grace) is not after --since");
  if (f.memory) o.memory_budget = *f.memory;
  if (f.limit) o.max_listed = *f.limit;

  verify_report r;
  if (const auto failed = run_check("verify", [&] { r = verify(o); })) return *failed;

  if (f.json) {
    nlohmann::json out;
    out["since"] = format_time(r.since_ms);
    out["until"] = format_time(r.until_ms);
    out["rows"] = r.rows;
    out["missing"] = r.missing;
    out["duplicated"] = r.duplicated;
    out["waiting"] = r.waiting;
    out["passes"] = r.passes;
    out["complete"] = r.complete();
    out["topics"] = nlohmann::json::array();
    for (const auto& t : r.topics) {
      nlohmann::json j{{"topic", t.topic},
                       {"rows", t.rows},
                       {"found", t.found},
                       {"missing", t.missing},
                       {"duplicated", t.duplicated},
                       {"waiting", t.waiting},
                       {"missing_ids", t.missing_ids},
                       {"duplicated_ids", t.duplicated_ids},
                       {"waiting_ids", t.waiting_ids}};
      j["oldest_waiting"] = t.oldest_waiting_ms >= 0 ? nlohmann::json(format_time(t.oldest_waiting_ms)) : nullptr;
      out["topics"].push_back(std::move(j));
    }
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "window " << format_time(r.since_ms) << " .. " << format_time(r.until_ms) << ": " << r.rows
              << " rows, " << r.missing << " missing, " << r.duplicated << " duplicated, " << r.waiting << " waiting"
              << (r.passes > 1 ? " (" + std::to_string(r.passes) + " passes)" : "") << "\n";
    std::printf("%-40s %10s %10s %10s %10s %10s  %s\n", "TOPIC", "ROWS", "FOUND", "MISSING", "DUPLICATED", "WAITING",
                "OLDEST WAITING");
    for (const auto& t : r.topics) {
      std::printf("%-40s %10llu %10llu %10llu %10llu %10llu  %s\n", t.topic.c_str(),
                  static_cast<unsigned long long>(t.rows), static_cast<unsigned long long>(t.found),
                  static_cast<unsigned long long>(t.missing), static_cast<unsigned long long>(t.duplicated),
                  static_cast<unsigned long long>(t.waiting),
                  t.oldest_waiting_ms >= 0 ? age(t.oldest_waiting_ms, now_ms).c_str() : "-");
    }
    for (const auto& t : r.topics) {
      for (const auto& id : t.missing_ids) std::cout << "missing " << t.topic << " " << id << "\n";
      for (const auto& id : t.duplicated_ids) std::cout << "duplicated " << t.topic << " " << id << "\n";
    }
    std::cout << (r.complete() ? "verify: complete\n" : "verify: GAP, rows are missing from Kafka\n");
  }
  return r.complete() ? k_exit_ok : k_exit_gap;
}

}  // namespace outbox::ctl
