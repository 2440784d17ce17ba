#include "commands.hpp"
#include "dlq_record.hpp"

#include "outbox/base/log.hpp"
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
  std::vector<std::string> tables;
  std::optional<std::string> topic_template;
  std::string time_column = "created_at";
  std::optional<std::int64_t> since;
  std::optional<std::int64_t> until;
  std::chrono::milliseconds grace{60'000};
  bool json = false;
  std::vector<std::pair<std::string, std::string>> properties;
  std::optional<std::uint64_t> memory;
  std::optional<std::size_t> limit;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const bool has_value = i + 1 < args.size();
    auto value = [&]() -> const std::string& { return args[++i]; };
    if (a == "--json") {
      json = true;
    } else if (!has_value) {
      return usage_error("unknown or incomplete argument '" + a + "'");
    } else if (a == "--dsn") {
      dsn = value();
    } else if (a == "--brokers") {
      brokers = value();
    } else if (a == "--config") {
      config_path = value();
    } else if (a == "--table") {
      std::string t = value();
      if (t.find('.') == std::string::npos) t = "public." + t;
      tables.push_back(t);
    } else if (a == "--topic-template") {
      topic_template = value();
    } else if (a == "--time-column") {
      time_column = value();
    } else if (a == "--since" || a == "--until") {
      const std::string& text = value();
      const auto t = parse_time(text, now);
      if (!t) return usage_error(a + " '" + text + "' is neither an RFC 3339 time nor a duration ago like 2h");
      (a == "--since" ? since : until) = *t;
    } else if (a == "--grace") {
      const auto d = config::parse_duration(value());
      if (!d) return usage_error("--grace: " + d.error);
      grace = *d.value;
    } else if (a == "--property") {
      const std::string& kv = value();
      const auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) return usage_error("--property wants KEY=VALUE, got '" + kv + "'");
      properties.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    } else if (a == "--memory") {
      const auto sz = config::parse_size(value());
      if (!sz || *sz.value < (1U << 20U)) return usage_error("--memory: give a size of at least 1MiB, e.g. 256MiB");
      memory = *sz.value;
    } else if (a == "--limit") {
      const auto n = outbox::parse_int64(value());
      if (!n || *n < 0) return usage_error("--limit wants a whole number");
      limit = static_cast<std::size_t>(*n);
    } else {
      return usage_error("unknown argument '" + a + "'");
    }
  }

  verify_options o;
  if (config_path) {
    if (dsn || brokers || !tables.empty() || topic_template) {
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
    for (auto& t : o.tables) t.time_column = time_column;
  } else {
    if (!dsn) {
      if (const char* env = std::getenv("OUTBOX_PG_DSN"); env != nullptr && *env != '\0') dsn = env;
    }
    if (!dsn) return usage_error("--dsn is required (or set OUTBOX_PG_DSN, which keeps the password out of ps)");
    if (!brokers) return usage_error("--brokers is required");
    o.dsn = *dsn;
    o.brokers = *brokers;
    if (tables.empty()) tables.emplace_back("public.outbox");
    for (const auto& name : tables) {
      verify_table vt;
      const auto dot = name.find('.');
      vt.source.schema = name.substr(0, dot);
      vt.source.table = name.substr(dot + 1);
      vt.source.columns =
          config::column_map{"id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers"};
      vt.time_column = time_column;
      o.tables.push_back(std::move(vt));
    }
    if (topic_template) o.topic_template = *topic_template;
  }
  o.kafka_properties.insert(o.kafka_properties.end(), properties.begin(), properties.end());
  o.since_ms = since.value_or(now_ms - 24LL * 3600 * 1000);
  o.until_ms = until.value_or(now_ms - grace.count());
  if (o.until_ms <= o.since_ms)
    return usage_error("the window is empty: --until (or now - --grace) is not after --since");
  if (memory) o.memory_budget = *memory;
  if (limit) o.max_listed = *limit;

  verify_report r;
  try {
    r = verify(o);
  } catch (const verify_failure& e) {
    std::cerr << "outboxctl verify: " << log::redact_dsn(e.what()) << "\n";
    return k_exit_failure;
  } catch (const outbox_error& e) {
    std::cerr << "outboxctl verify: " << log::redact_dsn(e.what()) << "\n";
    return e.value().category == "config" ? k_exit_usage : k_exit_failure;
  }

  if (json) {
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
