#include "outbox/base/log.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <regex>

namespace outbox::log {
namespace {

std::atomic<level> g_threshold{level::info};
std::atomic<format> g_format{format::json};
std::mutex g_write_mutex;  // one line at a time on stderr

std::string timestamp() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const auto t = system_clock::to_time_t(now);
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}

}  // namespace

std::optional<level> parse_level(std::string_view s) noexcept {
  if (s == "trace") return level::trace;
  if (s == "debug") return level::debug;
  if (s == "info") return level::info;
  if (s == "warn") return level::warn;
  if (s == "error") return level::error;
  return std::nullopt;
}

std::string_view to_string(level l) noexcept {
  switch (l) {
    case level::trace:
      return "trace";
    case level::debug:
      return "debug";
    case level::info:
      return "info";
    case level::warn:
      return "warn";
    case level::error:
      return "error";
  }
  return "info";
}

void configure(level threshold, format fmt) {
  g_threshold = threshold;
  g_format = fmt;
}

bool enabled(level l) noexcept { return l >= g_threshold.load(std::memory_order_relaxed); }

void write(level l, std::string_view component, std::string_view msg, std::initializer_list<field> fields) {
  if (!enabled(l)) return;
  std::string line;
  if (g_format.load(std::memory_order_relaxed) == format::json) {
    nlohmann::ordered_json j;
    j["ts"] = timestamp();
    j["level"] = to_string(l);
    j["component"] = component;
    j["msg"] = msg;
    for (const auto& f : fields) {
      if (f.numeric) {
        j[std::string(f.key)] = nlohmann::json::parse(f.text, nullptr, false);
      } else {
        j[std::string(f.key)] = f.text;
      }
    }
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = timestamp() + " " + std::string(to_string(l)) + " [" + std::string(component) + "] " + std::string(msg);
    for (const auto& f : fields) {
      line += " ";
      line += f.key;
      line += "=";
      line += f.text;
    }
  }
  line += '\n';
  const std::lock_guard lock(g_write_mutex);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

std::string redact_dsn(std::string_view dsn) {
  static const std::regex kv(R"((password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+))", std::regex::icase);
  static const std::regex uri(R"(^(postgres(?:ql)?://[^:/@]*:)([^@]*)(@))", std::regex::icase);
  std::string out = std::regex_replace(std::string(dsn), kv, "$1*****");
  out = std::regex_replace(out, uri, "$1*****$3");
  return out;
}

}  // namespace outbox::log
