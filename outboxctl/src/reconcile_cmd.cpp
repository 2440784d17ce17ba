#include "check_flags.hpp"
#include "commands.hpp"
#include "dlq_record.hpp"

#include "outbox/base/text.hpp"
#include "outbox/config/config_error.hpp"
#include "outbox/config/relay_config.hpp"
#include "outbox/config/units.hpp"
#include "outbox/ctl/reconcile.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>

namespace outbox::ctl {
namespace {

constexpr const char* k_reconcile_usage =
    "usage: outboxctl reconcile --group G --inbox-dsn DSN [--inbox-table T] [--dead-letter-table T]\n"
    "                           (--outbox-dsn DSN [--table SCHEMA.TABLE ...] [--topic-template T] [--time-column C]\n"
    "                            | --config relay.yaml\n"
    "                            | --from-kafka --brokers B --topic T ... [--property KEY=VALUE ...])\n"
    "                           [--since TIME] [--until TIME] [--date YYYY-MM-DD] [--tz ZONE] [--grace D]\n"
    "                           [--lookback D] [--memory SIZE] [--limit N] [--json]\n"
    "  the window defaults to yesterday, 00:00 to 00:00 in --tz (an IANA name or a UTC offset; default UTC),\n"
    "  and ends at the latest --grace (5m) before now; --outbox-dsn defaults to $OUTBOX_PG_DSN, --inbox-dsn\n"
    "  to $OUTBOX_INBOX_DSN.\n"
    "exit codes: 0 every event is applied or dead-lettered, 3 events are missing, 1 a service cannot be reached,\n"
    "            2 bad usage\n";

int usage_error(const std::string& why) {
  std::cerr << "outboxctl reconcile: " << why << "\n" << k_reconcile_usage;
  return k_exit_usage;
}

std::optional<std::string> from_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

nlohmann::json counts_json(const bucket_counts& c) {
  return {{"events", c.events},
          {"applied", c.applied},
          {"dead_lettered", c.dead_lettered},
          {"missing", c.missing},
          {"foreign", c.foreign}};
}

void print_counts(const std::string& label, const bucket_counts& c) {
  std::printf("%-40s %10llu %10llu %14llu %10llu %10llu\n", label.c_str(), static_cast<unsigned long long>(c.events),
              static_cast<unsigned long long>(c.applied), static_cast<unsigned long long>(c.dead_lettered),
              static_cast<unsigned long long>(c.missing), static_cast<unsigned long long>(c.foreign));
}

}  // namespace

int reconcile_command(const std::vector<std::string>& args) {
  const auto now = std::chrono::system_clock::now();
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::optional<std::string> outbox_dsn;
  std::optional<std::string> inbox_dsn;
  std::optional<std::string> config_path;
  std::optional<std::string> brokers;
  std::optional<std::string> group;
  std::optional<std::string> date;
  std::vector<std::string> topics;
  std::string inbox_table = "outbox_inbox";
  std::string dead_letter_table;
  time_zone tz = time_zone::utc();
  std::chrono::milliseconds lookback{24LL * 3600'000};
  bool from_kafka = false;
  check_flags f;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (const flag_taken t = take_check_flag(args, i, now, f); t.taken) {
      if (!t.error.empty()) return usage_error(t.error);
      continue;
    }
    const std::string& a = args[i];
    if (a == "--from-kafka") {
      from_kafka = true;
      continue;
    }
    if (i + 1 >= args.size()) return usage_error("unknown or incomplete argument '" + a + "'");
    const std::string& v = args[++i];
    if (a == "--outbox-dsn" || a == "--dsn") {
      outbox_dsn = v;
    } else if (a == "--inbox-dsn") {
      inbox_dsn = v;
    } else if (a == "--inbox-table") {
      inbox_table = v;
    } else if (a == "--dead-letter-table") {
      dead_letter_table = v;
    } else if (a == "--group") {
      group = v;
    } else if (a == "--config") {
      config_path = v;
    } else if (a == "--brokers") {
      brokers = v;
    } else if (a == "--topic") {
      topics.push_back(v);
    } else if (a == "--date") {
      date = v;
    } else if (a == "--tz") {
      const auto z = time_zone::parse(v);
      if (!z) {
        return usage_error("--tz '" + v +
                           "' is neither an IANA zone name found in the system's zoneinfo (e.g. Europe/Berlin) "
                           "nor a UTC offset (e.g. +02:00, UTC)");
      }
      tz = *z;
    } else if (a == "--lookback") {
      const auto d = config::parse_duration(v);
      if (!d) return usage_error("--lookback: " + d.error);
      lookback = *d.value;
    } else {
      return usage_error("unknown argument '" + a + "'");
    }
  }
  const std::chrono::milliseconds grace = f.grace.value_or(std::chrono::milliseconds(5 * 60'000));

  if (!group) return usage_error("--group is required: the consumer group whose inbox is reconciled");
  if (!inbox_dsn) inbox_dsn = from_env("OUTBOX_INBOX_DSN");
  if (!inbox_dsn) return usage_error("--inbox-dsn is required (or set OUTBOX_INBOX_DSN): the consumer's database");

  reconcile_options o;
  o.group = *group;
  o.inbox_dsn = *inbox_dsn;
  o.inbox_table = inbox_table;
  o.dead_letter_table = dead_letter_table;
  o.tz = tz;
  o.lookback = lookback;
  if (config_path) {
    if (outbox_dsn || !f.tables.empty() || f.topic_template || brokers) {
      return usage_error("--config gives the outbox DSN, tables, template and brokers; do not pass them as well");
    }
    try {
      o.outbox = options_from_relay_config(config::load_relay_config(*config_path));
    } catch (const config::config_error& e) {
      std::cerr << e.what() << "\n";
      return k_exit_usage;
    }
    for (auto& t : o.outbox.tables) t.time_column = f.time_column;
    if (!from_kafka && o.outbox.tables.empty()) {
      return usage_error("the relay config has no source.tables; reconcile logical messages with --from-kafka");
    }
  }
  if (from_kafka) {
    if (!f.tables.empty() || outbox_dsn || f.topic_template) {
      return usage_error(
          "--from-kafka reads the topics, not the tables: drop --outbox-dsn, --table and "
          "--topic-template");
    }
    if (brokers) o.outbox.brokers = *brokers;
    if (o.outbox.brokers.empty()) return usage_error("--from-kafka needs --brokers (or --config)");
    if (topics.empty()) return usage_error("--from-kafka needs at least one --topic");
    o.side = outbox_side::kafka;
    o.topics = topics;
  } else if (!config_path) {
    if (!topics.empty() || brokers) return usage_error("--topic and --brokers go with --from-kafka");
    if (!outbox_dsn) outbox_dsn = from_env("OUTBOX_PG_DSN");
    if (!outbox_dsn) {
      return usage_error(
          "--outbox-dsn is required (or set OUTBOX_PG_DSN, or give --config relay.yaml, or read "
          "the topics with --from-kafka)");
    }
    o.outbox.dsn = *outbox_dsn;
    o.outbox.tables = tables_from_names(f.tables, f.time_column);
    if (f.topic_template) o.outbox.topic_template = *f.topic_template;
  } else if (!topics.empty()) {
    return usage_error("--topic goes with --from-kafka");
  }
  o.outbox.kafka_properties.insert(o.outbox.kafka_properties.end(), f.properties.begin(), f.properties.end());

  time_window w = yesterday(tz, now_ms);
  if (date) {
    if (f.since_ms || f.until_ms)
      return usage_error("--date gives the whole day; do not pass --since or --until as well");
    const auto d = day_window(tz, *date);
    if (!d) return usage_error("--date '" + *date + "' is not a date like 2026-11-30");
    w = *d;
  }
  o.since_ms = f.since_ms.value_or(w.since_ms);
  o.until_ms = std::min(f.until_ms.value_or(w.until_ms), now_ms - grace.count());
  if (o.until_ms <= o.since_ms) {
    return usage_error("the window is empty: --until (capped at now - --grace) is not after --since");
  }
  if (f.memory) o.memory_budget = *f.memory;
  if (f.limit) o.max_listed = *f.limit;

  reconcile_report r;
  if (const auto failed = run_check("reconcile", [&] { r = reconcile(o); })) return *failed;

  auto local = [&](std::int64_t ms) { return ms < 0 ? std::string("-") : tz.format_local(ms); };
  if (f.json) {
    nlohmann::json out = counts_json(r.total);
    out["group"] = r.group;
    out["since"] = format_time(r.since_ms);
    out["until"] = format_time(r.until_ms);
    out["tz"] = tz.name();
    out["source"] = o.side == outbox_side::kafka ? "kafka" : "outbox";
    out["replayed_applied"] = r.replayed_applied;
    out["complete"] = r.complete();
    out["outbox_read"] = r.outbox_read;
    out["spilled_runs"] = r.spilled_runs;
    out["topics"] = nlohmann::json::array();
    for (const auto& [topic, c] : r.topics) {
      nlohmann::json j = counts_json(c);
      j["topic"] = topic.empty() ? nlohmann::json(nullptr) : nlohmann::json(topic);
      out["topics"].push_back(std::move(j));
    }
    out["hours"] = nlohmann::json::array();
    for (const auto& [start, c] : r.hours) {
      nlohmann::json j = counts_json(c);
      j["hour"] = local(start);
      out["hours"].push_back(std::move(j));
    }
    out["missing_ids"] = nlohmann::json::array();
    for (const auto& e : r.missing) {
      out["missing_ids"].push_back({{"id", e.id}, {"topic", e.topic}, {"written", format_time(e.at_ms)}});
    }
    out["dead_lettered_ids"] = nlohmann::json::array();
    for (const auto& e : r.dead_lettered) {
      out["dead_lettered_ids"].push_back(
          {{"id", e.id},
           {"topic", e.topic},
           {"dead_lettered", format_time(e.at_ms)},
           {"error_class", e.error_class},
           {"error_message", e.error_message},
           {"replayed", e.replayed_ms >= 0},
           {"replayed_at", e.replayed_ms >= 0 ? nlohmann::json(format_time(e.replayed_ms)) : nullptr}});
    }
    out["foreign_ids"] = nlohmann::json::array();
    for (const auto& e : r.foreign) {
      out["foreign_ids"].push_back({{"id", e.id}, {"applied", format_time(e.at_ms)}});
    }
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "group " << r.group << ", window " << local(r.since_ms) << " .. " << local(r.until_ms) << " ("
              << tz.name() << "): " << r.total.events << " events, " << r.total.applied << " applied, "
              << r.total.dead_lettered << " dead-lettered, " << r.total.missing << " missing, " << r.total.foreign
              << " foreign\n";
    std::printf("%-40s %10s %10s %14s %10s %10s\n", "TOPIC", "EVENTS", "APPLIED", "DEAD-LETTERED", "MISSING",
                "FOREIGN");
    for (const auto& [topic, c] : r.topics) print_counts(topic.empty() ? "(unknown)" : topic, c);
    std::printf("%-40s %10s %10s %14s %10s %10s\n", "HOUR", "EVENTS", "APPLIED", "DEAD-LETTERED", "MISSING", "FOREIGN");
    for (const auto& [start, c] : r.hours) print_counts(local(start), c);
    for (const auto& e : r.missing) std::cout << "missing " << e.topic << " " << e.id << "\n";
    for (const auto& e : r.dead_lettered) {
      std::cout << "dead-lettered " << e.topic << " " << e.id << " " << e.error_class
                << (e.replayed_ms >= 0 ? " (replayed " + format_time(e.replayed_ms) + ", failed again)" : "") << "\n";
    }
    for (const auto& e : r.foreign) std::cout << "foreign " << e.id << " applied " << format_time(e.at_ms) << "\n";
    std::cout << (r.complete() ? "reconcile: complete, every event is applied or dead-lettered\n"
                               : "reconcile: GAP, events were neither applied nor dead-lettered\n");
  }
  return r.complete() ? k_exit_ok : k_exit_gap;
}

}  // namespace outbox::ctl
