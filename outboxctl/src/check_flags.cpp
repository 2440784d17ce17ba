#include "check_flags.hpp"

#include "commands.hpp"
#include "dlq_record.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/base/text.hpp"
#include "outbox/config/units.hpp"

#include <algorithm>
#include <iostream>
#include <iterator>

namespace outbox::ctl {

flag_taken take_check_flag(const std::vector<std::string>& args, std::size_t& i,
                           std::chrono::system_clock::time_point now, check_flags& f) {
  const std::string& a = args[i];
  if (a == "--json") {
    f.json = true;
    return {true, {}};
  }
  static const char* const k_with_value[] = {"--table", "--topic-template", "--time-column", "--since", "--until",
                                             "--grace", "--property",       "--memory",      "--limit"};
  if (std::find(std::begin(k_with_value), std::end(k_with_value), a) == std::end(k_with_value)) return {};
  if (i + 1 >= args.size()) return {true, "unknown or incomplete argument '" + a + "'"};
  const std::string& v = args[++i];
  if (a == "--table") {
    f.tables.push_back(v.find('.') == std::string::npos ? "public." + v : v);
  } else if (a == "--topic-template") {
    f.topic_template = v;
  } else if (a == "--time-column") {
    f.time_column = v;
  } else if (a == "--since" || a == "--until") {
    const auto t = parse_time(v, now);
    if (!t) return {true, a + " '" + v + "' is neither an RFC 3339 time nor a duration ago like 2h"};
    (a == "--since" ? f.since_ms : f.until_ms) = *t;
  } else if (a == "--grace") {
    const auto d = config::parse_duration(v);
    if (!d) return {true, "--grace: " + d.error};
    f.grace = *d.value;
  } else if (a == "--property") {
    const auto eq = v.find('=');
    if (eq == std::string::npos || eq == 0) return {true, "--property wants KEY=VALUE, got '" + v + "'"};
    f.properties.emplace_back(v.substr(0, eq), v.substr(eq + 1));
  } else if (a == "--memory") {
    const auto sz = config::parse_size(v);
    if (!sz || *sz.value < (1U << 20U)) return {true, "--memory: give a size of at least 1MiB, e.g. 256MiB"};
    f.memory = *sz.value;
  } else {
    const auto n = outbox::parse_int64(v);
    if (!n || *n < 0) return {true, "--limit wants a whole number"};
    f.limit = static_cast<std::size_t>(*n);
  }
  return {true, {}};
}

std::vector<verify_table> tables_from_names(std::vector<std::string> names, const std::string& time_column) {
  if (names.empty()) names.emplace_back("public.outbox");
  std::vector<verify_table> out;
  for (const auto& name : names) {
    verify_table vt;
    const auto dot = name.find('.');
    vt.source.schema = name.substr(0, dot);
    vt.source.table = name.substr(dot + 1);
    vt.source.columns = config::column_map{"id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers"};
    vt.time_column = time_column;
    out.push_back(std::move(vt));
  }
  return out;
}

std::optional<int> run_check(std::string_view command, const std::function<void()>& check) {
  try {
    check();
  } catch (const verify_failure& e) {
    std::cerr << "outboxctl " << command << ": " << log::redact_dsn(e.what()) << "\n";
    return k_exit_failure;
  } catch (const outbox_error& e) {
    std::cerr << "outboxctl " << command << ": " << log::redact_dsn(e.what()) << "\n";
    return e.value().category == "config" ? k_exit_usage : k_exit_failure;
  }
  return std::nullopt;
}

}  // namespace outbox::ctl
