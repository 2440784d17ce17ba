#pragma once

#include "outbox/ctl/verify.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::ctl {

/// A time zone for the reconciliation's day: an IANA name read from the system's zoneinfo, or a fixed UTC offset.
class time_zone {
 public:
  /// `UTC`, `Z`, `+02:00`, `-0530`, `UTC+1` or an IANA name (`Europe/Berlin`); nullopt when it is none of them.
  static std::optional<time_zone> parse(std::string_view text);
  static time_zone utc() { return time_zone("UTC", 0); }

  /// Seconds east of UTC in effect at `utc_s` (seconds since the epoch).
  [[nodiscard]] std::int64_t offset_at(std::int64_t utc_s) const;
  /// The UTC instant (ms) of 00:00 local time on the given day (the first instant of the day when 00:00 falls in a
  /// daylight-saving gap).
  [[nodiscard]] std::int64_t midnight_ms(int year, unsigned month, unsigned day) const;
  /// The local calendar day at `utc_ms`: {year, month, day}.
  struct civil_day {
    int year;
    unsigned month;
    unsigned day;
  };
  [[nodiscard]] civil_day day_of(std::int64_t utc_ms) const;
  /// `2026-11-30T13:00+01:00`: the local time at `utc_ms` to the minute, with its offset.
  [[nodiscard]] std::string format_local(std::int64_t utc_ms) const;
  [[nodiscard]] const std::string& name() const noexcept { return m_name; }

 private:
  time_zone(std::string name, std::optional<std::int64_t> fixed) : m_name(std::move(name)), m_fixed(fixed) {}
  std::string m_name;
  std::optional<std::int64_t> m_fixed;  ///< seconds east of UTC; nullopt for an IANA zone
};

/// [since_ms, until_ms): the day before the day of `now_ms` in `tz`, midnight to midnight (23 or 25 hours on the
/// days clocks change).
struct time_window {
  std::int64_t since_ms = 0;
  std::int64_t until_ms = 0;
};
time_window yesterday(const time_zone& tz, std::int64_t now_ms);
/// The calendar day `date` (`YYYY-MM-DD`) in `tz`; nullopt when it is not a date.
std::optional<time_window> day_window(const time_zone& tz, std::string_view date);

/// The buckets an event of the window ends in: exactly one each.
enum class bucket { applied, dead_lettered, missing, foreign };
std::string_view to_string(bucket b) noexcept;

/// One outbox event as the merge reads it, in event id order (bytewise, PostgreSQL's "C" collation).
struct outbox_event {
  std::string id;
  std::string topic;
  std::int64_t written_ms = 0;
  bool in_window = true;  ///< false: read only to know it (the lookback before the window), never counted
};
/// One inbox row of the group, in event id order.
struct applied_event {
  std::string id;
  std::int64_t applied_ms = 0;
};
/// One recorded dead letter of the group, in event id order.
struct dead_letter_event {
  std::string id;
  std::string topic;
  std::int32_t partition = 0;
  std::int64_t offset = 0;
  std::string error_class;
  std::string error_message;
  std::int64_t dead_lettered_ms = 0;
  std::int64_t replayed_ms = -1;  ///< -1: never replayed
};

/// Counts of one topic or one hour.
struct bucket_counts {
  std::uint64_t events = 0;  ///< outbox events of the window
  std::uint64_t applied = 0;
  std::uint64_t dead_lettered = 0;
  std::uint64_t missing = 0;
  std::uint64_t foreign = 0;  ///< applied but unknown to the outbox (not among `events`)
  void add(bucket b);
};

/// An event listed in the report.
struct listed_event {
  std::string id;
  std::string topic;        ///< empty for a foreign event (the inbox does not keep the topic)
  std::int64_t at_ms = 0;   ///< written (missing), dead-lettered (dead_lettered) or applied (foreign)
  std::string error_class;  ///< dead_lettered only
  std::string error_message;
  std::int64_t replayed_ms = -1;  ///< dead_lettered: replayed at, and failed again (-1: never replayed)
};

/// The outcome of a reconciliation.
struct reconcile_report {
  std::string group;
  std::int64_t since_ms = 0;
  std::int64_t until_ms = 0;
  bucket_counts total;
  std::uint64_t replayed_applied = 0;  ///< of the applied: dead-lettered once, applied after a replay
  std::vector<std::pair<std::string, bucket_counts>> topics;  ///< by topic name; "" holds foreign events
  std::vector<std::pair<std::int64_t, bucket_counts>> hours;  ///< by the UTC ms of the local hour's start
  std::vector<listed_event> missing;                          ///< at most max_listed of each
  std::vector<listed_event> dead_lettered;
  std::vector<listed_event> foreign;
  std::uint64_t outbox_read = 0;  ///< outbox rows or Kafka records read, the lookback included
  int spilled_runs = 0;           ///< sorted runs written to temporary files (0: everything fit in memory)

  /// True when no event of the window is missing.
  [[nodiscard]] bool complete() const noexcept { return total.missing == 0; }
};

/// What the merge needs besides the three streams.
struct merge_settings {
  std::int64_t since_ms = 0;
  std::int64_t until_ms = 0;
  time_zone tz = time_zone::utc();
  std::size_t max_listed = 100;
};

/// Pulls the next item of a stream in event id order; false at its end.
template <typename T>
using pull = std::function<bool(T&)>;

/// The bucket merge: walks the three id-ordered streams once, side by side. An outbox event of the window is
/// applied when the inbox has it (whatever the dead letters say: applied wins), else dead-lettered when a dead
/// letter is recorded, else missing. An inbox row applied within the window whose id the outbox does not have is
/// foreign. Repeated ids in the outbox stream (Kafka duplicates) count once. Memory: the counts and the lists.
reconcile_report merge_buckets(const pull<outbox_event>& outbox, const pull<applied_event>& applied,
                               const pull<dead_letter_event>& dead, const merge_settings& s);

/// Where the outbox's event ids come from.
enum class outbox_side { tables, kafka };

/// What to reconcile.
struct reconcile_options {
  outbox_side side = outbox_side::tables;
  /// The outbox: `dsn`, `tables` and `topic_template` (tables) or `brokers`, `kafka_properties` (kafka); its
  /// since/until are set by reconcile() from the window and the lookback.
  verify_options outbox;
  std::vector<std::string> topics;  ///< kafka: the topics to read
  std::string inbox_dsn;
  std::string inbox_table = "outbox_inbox";
  std::string dead_letter_table;  ///< empty: `outbox_dead_letters` in the inbox table's schema
  std::string group;
  std::int64_t since_ms = 0;
  std::int64_t until_ms = 0;
  /// Outbox events written this long before the window are read too, so that an inbox row applied in the window
  /// for one of them is not taken for a foreign event.
  std::chrono::milliseconds lookback{24LL * 3600 * 1000};
  time_zone tz = time_zone::utc();
  std::uint64_t memory_budget = 256ULL << 20U;  ///< for sorting the outbox's ids; above it, sorted runs go to disk
  std::size_t max_listed = 100;
};

/// Reads the outbox's ids of the window (plus the lookback), sorts them within `memory_budget` (spilling sorted
/// runs to temporary files when they do not fit), and merges them with the group's inbox rows and dead letters,
/// read in id order through cursors. Throws verify_failure when a database or Kafka cannot be reached or a table
/// cannot be read.
reconcile_report reconcile(const reconcile_options& o);

}  // namespace outbox::ctl
