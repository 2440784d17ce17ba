#include "outbox/ctl/reconcile.hpp"

#include "outbox/base/text.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <mutex>

namespace outbox::ctl {
namespace {

using namespace std::chrono;

/// The C library reads IANA zones through the TZ variable, which is process-wide: one user at a time.
std::mutex g_tz_mutex;

/// Runs fn with TZ set to the IANA zone `name`, then puts TZ back.
template <typename Fn>
auto with_tz(const std::string& name, Fn&& fn) {
  const std::lock_guard lock(g_tz_mutex);
  const char* old = std::getenv("TZ");
  const std::optional<std::string> saved = old != nullptr ? std::optional<std::string>(old) : std::nullopt;
  ::setenv("TZ", (":" + name).c_str(), 1);
  ::tzset();
  auto out = fn();
  if (saved) {
    ::setenv("TZ", saved->c_str(), 1);
  } else {
    ::unsetenv("TZ");
  }
  ::tzset();
  return out;
}

std::filesystem::path zoneinfo_dir() {
  const char* dir = std::getenv("TZDIR");
  return dir != nullptr && *dir != '\0' ? std::filesystem::path(dir) : std::filesystem::path("/usr/share/zoneinfo");
}

/// `+02:00`, `-0530`, `+2`: seconds east of UTC.
std::optional<std::int64_t> parse_offset(std::string_view s) {
  if (s.empty() || (s[0] != '+' && s[0] != '-')) return std::nullopt;
  const int sign = s[0] == '-' ? -1 : 1;
  std::string digits;
  for (const char c : s.substr(1)) {
    if (c != ':') digits += c;
  }
  std::optional<std::int64_t> hours;
  std::optional<std::int64_t> minutes = 0;
  if (digits.size() <= 2) {
    hours = parse_int64(digits);
  } else if (digits.size() == 4) {
    hours = parse_int64(digits.substr(0, 2));
    minutes = parse_int64(digits.substr(2));
  }
  if (!hours || !minutes || *hours > 18 || *minutes > 59 ||
      (s.find(':') != std::string_view::npos && digits.size() != 4)) {
    return std::nullopt;
  }
  return sign * (*hours * 3600 + *minutes * 60);
}

std::string two(std::int64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%02lld", static_cast<long long>(v));
  return buf;
}

}  // namespace

std::optional<time_zone> time_zone::parse(std::string_view text) {
  if (text == "UTC" || text == "Z" || text == "utc" || text == "Etc/UTC") return utc();
  if (text.starts_with("UTC") || text.starts_with("GMT")) text.remove_prefix(3);
  if (!text.empty() && (text[0] == '+' || text[0] == '-')) {
    const auto off = parse_offset(text);
    if (!off) return std::nullopt;
    return time_zone("UTC" + std::string(text), *off);
  }
  // An IANA name: letters, digits, '/', '_', '-', '+', never a path of its own.
  if (text.empty() || text.front() == '/' || text.find("..") != std::string_view::npos) return std::nullopt;
  for (const char c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
                    c == '_' || c == '-' || c == '+';
    if (!ok) return std::nullopt;
  }
  std::error_code ec;
  if (!std::filesystem::is_regular_file(zoneinfo_dir() / std::string(text), ec)) return std::nullopt;
  return time_zone(std::string(text), std::nullopt);
}

std::int64_t time_zone::offset_at(std::int64_t utc_s) const {
  if (m_fixed) return *m_fixed;
  return with_tz(m_name, [&] {
    const auto t = static_cast<std::time_t>(utc_s);
    std::tm tm{};
    ::localtime_r(&t, &tm);
    return static_cast<std::int64_t>(tm.tm_gmtoff);
  });
}

std::int64_t time_zone::midnight_ms(int year, unsigned month, unsigned day) const {
  const sys_days d{std::chrono::year{year} / std::chrono::month{month} / std::chrono::day{day}};
  const std::int64_t local_s = duration_cast<seconds>(d.time_since_epoch()).count();
  if (m_fixed) return (local_s - *m_fixed) * 1000;
  return with_tz(m_name, [&] {
    std::tm tm{};
    tm.tm_year = year - 1900;
    tm.tm_mon = static_cast<int>(month) - 1;
    tm.tm_mday = static_cast<int>(day);
    tm.tm_isdst = -1;  // let the zone say; a midnight in a gap moves forward to the first instant after it
    return static_cast<std::int64_t>(std::mktime(&tm)) * 1000;
  });
}

time_zone::civil_day time_zone::day_of(std::int64_t utc_ms) const {
  const std::int64_t utc_s = utc_ms >= 0 ? utc_ms / 1000 : -((-utc_ms + 999) / 1000);
  const sys_seconds local{seconds(utc_s + offset_at(utc_s))};
  const year_month_day ymd{floor<days>(local)};
  return {static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day())};
}

std::string time_zone::format_local(std::int64_t utc_ms) const {
  const std::int64_t utc_s = utc_ms >= 0 ? utc_ms / 1000 : -((-utc_ms + 999) / 1000);
  const std::int64_t off = offset_at(utc_s);
  const sys_seconds local{seconds(utc_s + off)};
  const auto day = floor<days>(local);
  const year_month_day ymd{day};
  const hh_mm_ss<seconds> tod{local - day};
  const std::int64_t abs_off = off < 0 ? -off : off;
  return std::to_string(static_cast<int>(ymd.year())) + "-" + two(static_cast<unsigned>(ymd.month())) + "-" +
         two(static_cast<unsigned>(ymd.day())) + "T" + two(tod.hours().count()) + ":" + two(tod.minutes().count()) +
         (off < 0 ? "-" : "+") + two(abs_off / 3600) + ":" + two(abs_off % 3600 / 60);
}

time_window yesterday(const time_zone& tz, std::int64_t now_ms) {
  const auto today = tz.day_of(now_ms);
  const sys_days d{std::chrono::year{today.year} / std::chrono::month{today.month} / std::chrono::day{today.day}};
  const year_month_day before{d - days(1)};
  return {tz.midnight_ms(static_cast<int>(before.year()), static_cast<unsigned>(before.month()),
                         static_cast<unsigned>(before.day())),
          tz.midnight_ms(today.year, today.month, today.day)};
}

std::optional<time_window> day_window(const time_zone& tz, std::string_view date) {
  if (date.size() != 10 || date[4] != '-' || date[7] != '-') return std::nullopt;
  const auto y = parse_int64(date.substr(0, 4));
  const auto m = parse_int64(date.substr(5, 2));
  const auto d = parse_int64(date.substr(8, 2));
  if (!y || !m || !d) return std::nullopt;
  const year_month_day ymd{std::chrono::year{static_cast<int>(*y)}, std::chrono::month{static_cast<unsigned>(*m)},
                           std::chrono::day{static_cast<unsigned>(*d)}};
  if (!ymd.ok()) return std::nullopt;
  const year_month_day next{sys_days{ymd} + days(1)};
  return time_window{tz.midnight_ms(static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                                    static_cast<unsigned>(ymd.day())),
                     tz.midnight_ms(static_cast<int>(next.year()), static_cast<unsigned>(next.month()),
                                    static_cast<unsigned>(next.day()))};
}

}  // namespace outbox::ctl
