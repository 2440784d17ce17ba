#include "outbox/config/consumer_config.hpp"

#include "outbox/config/units.hpp"

#include "common.hpp"
#include "validators.hpp"

#include <algorithm>
#include <array>
#include <limits>
#include <stdexcept>
#include <string>

namespace outbox::config {
namespace {

constexpr std::int64_t k_max_attempts = 1000;
constexpr std::int64_t k_max_window = 1'000'000;

using std::chrono::milliseconds;
using rep = milliseconds::rep;

rep saturating_add(rep a, rep b) noexcept {
  return a > std::numeric_limits<rep>::max() - b ? std::numeric_limits<rep>::max() : a + b;
}

/// The longest the in-process delays can add up to: the first `attempts` - 1 delays at their caps
/// (exponential: min(max, initial * 2^i); decorrelated: max; fixed: initial; list and wechatpay: the listed
/// delays), capped by `max_elapsed` because the schedule gives up before a delay would pass it.
milliseconds in_process_worst_case(std::string_view schedule, milliseconds initial, milliseconds max,
                                   std::int64_t attempts, const std::vector<milliseconds>& delays,
                                   milliseconds max_elapsed) {
  const auto& wechatpay = wechatpay_delays();
  rep total = 0;
  for (std::int64_t i = 0; i + 1 < attempts; ++i) {
    rep d = 0;
    if (schedule == "list" || schedule == "wechatpay") {
      const auto& listed = schedule == "list" ? delays : wechatpay;
      if (static_cast<std::size_t>(i) >= listed.size()) break;
      d = listed[static_cast<std::size_t>(i)].count();
    } else if (schedule == "fixed") {
      d = initial.count();
    } else if (schedule == "decorrelated") {
      d = max.count();
    } else {  // exponential
      d = i >= 62 || initial.count() > (max.count() >> i) ? max.count() : std::min(max.count(), initial.count() << i);
    }
    total = saturating_add(total, d);
  }
  if (max_elapsed.count() > 0) total = std::min(total, max_elapsed.count());
  return milliseconds(total);
}

/// A duration as people read it, e.g. `1d 13m40s`, `2m30s`, `250ms`.
std::string readable(milliseconds d) {
  if (d.count() == 0) return "0s";
  rep ms = d.count();
  std::string out;
  const auto part = [&](rep factor, std::string_view unit) {
    if (ms >= factor) {
      out += std::to_string(ms / factor) + std::string(unit);
      ms %= factor;
    }
  };
  part(86'400'000, "d");
  if (!out.empty() && ms > 0) out += ' ';
  part(3'600'000, "h");
  part(60'000, "m");
  part(1000, "s");
  part(1, "ms");
  return out;
}

/// `d` rounded up to a whole day, hour, minute or second (whichever is the largest unit in it), as YAML takes it.
std::string writable_at_least(milliseconds d) {
  for (const rep factor : std::array<rep, 5>{86'400'000, 3'600'000, 60'000, 1000, 1}) {
    if (d.count() >= factor || factor == 1) {
      const rep whole = d.count() / factor + (d.count() % factor != 0 ? 1 : 0);
      return format_duration(milliseconds(whole * factor));
    }
  }
  return format_duration(d);
}

void check_retention_covers_retries(rule_context& ctx) {
  const values& v = ctx.loaded();
  const auto* retention = v.find<milliseconds>("dedupe.retention");
  const auto* schedule = v.find<std::string>("retry.schedule");
  const auto* initial = v.find<milliseconds>("retry.initial");
  const auto* max = v.find<milliseconds>("retry.max");
  const auto* attempts = v.find<std::int64_t>("retry.attempts");
  const auto* delays = v.find<std::vector<milliseconds>>("retry.delays");
  const auto* max_elapsed = v.find<milliseconds>("retry.max_elapsed");
  const auto* topics = v.find<std::vector<milliseconds>>("retry.topics");
  const auto* replay = v.find<milliseconds>("dlq.replay_window");
  if (retention == nullptr || schedule == nullptr || initial == nullptr || max == nullptr || attempts == nullptr ||
      delays == nullptr || max_elapsed == nullptr || topics == nullptr || replay == nullptr) {
    return;  // a missing or invalid key is reported on its own
  }
  const milliseconds in_process = in_process_worst_case(*schedule, *initial, *max, *attempts, *delays, *max_elapsed);
  rep tiers = 0;
  for (const auto& t : *topics) tiers = saturating_add(tiers, t.count());
  const milliseconds needed(saturating_add(saturating_add(in_process.count(), tiers), replay->count()));
  if (*retention >= needed) return;
  ctx.fail("dedupe.retention", readable(*retention) + " is shorter than the retry schedule (in-process " +
                                   readable(in_process) + " + tiers " + readable(milliseconds(tiers)) +
                                   ") plus dlq.replay_window " + readable(*replay) +
                                   "; raise dedupe.retention to at least " + readable(needed) + " (e.g. " +
                                   writable_at_least(needed) + ") or shorten the schedule");
}

/// `dlq.retention` holds a dead letter at least as long as it may be replayed.
void check_dlq_retention_covers_replay(rule_context& ctx) {
  const auto* retention = ctx.loaded().find<milliseconds>("dlq.retention");
  const auto* replay = ctx.loaded().find<milliseconds>("dlq.replay_window");
  if (retention != nullptr && replay != nullptr && *retention < *replay) {
    ctx.fail("dlq.retention", readable(*retention) + " is shorter than dlq.replay_window " + readable(*replay) +
                                  "; a dead letter must stay in its topic while it may be replayed");
  }
}

/// The consumer group names topics (`<topic>.<group>.retry.<delay>`), so it may hold only what a topic name may.
validator topic_safe_group() {
  return [](const value& v) -> std::string {
    const auto& g = std::get<std::string>(v);
    if (g.empty()) return "is empty; name the consumer group";
    if (g.size() > 200) return "is longer than 200 characters; the retry and dead-letter topics carry it";
    for (const char c : g) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-';
      if (!ok) {
        return "`" + g + "` has `" + std::string(1, c) +
               "`; use letters, digits, `.`, `_` and `-` only: the group is part of its retry and dead-letter topics' "
               "names";
      }
    }
    return {};
  };
}

/// A duration of at least `min`.
validator at_least(milliseconds min) {
  return [min](const value& v) -> std::string {
    const auto d = std::get<milliseconds>(v);
    return d >= min ? "" : "is " + readable(d) + "; it must be at least " + readable(min);
  };
}

/// Every retry tier waits more than 0s.
validator positive_delays() {
  return [](const value& v) -> std::string {
    const auto& delays = std::get<std::vector<milliseconds>>(v);
    for (std::size_t i = 0; i < delays.size(); ++i) {
      if (delays[i].count() <= 0) return "entry " + std::to_string(i) + " is 0s; every tier waits longer than 0s";
    }
    return {};
  };
}

/// A dead-letter topic template that is not just `{topic}` (which would be the source topic itself).
validator dead_letter_template() {
  auto base = detail::topic_template({"topic", "group"});
  return [base](const value& v) -> std::string {
    if (std::get<std::string>(v) == "{topic}") {
      return "is `{topic}`, the source topic itself; dead letters need a topic of their own, e.g. "
             "`{topic}.{group}.dlq`";
    }
    return base(v);
  };
}

/// The list text of the `wechatpay` preset.
std::string wechatpay_list_text() {
  std::string out = "[";
  for (const auto& d : wechatpay_delays()) out += (out.size() > 1 ? ", " : "") + format_duration(d);
  return out + "]";
}

schema make_consumer_schema() {
  schema s;
  s.title = "consumer SDK";
  s.keys = {
      section("consumer",
              {
                  string_key("brokers")
                      .defaults("127.0.0.1:9092")
                      .check(detail::not_empty())
                      .describe("Kafka bootstrap servers, comma-separated `host:port`"),
                  string_key("group_id")
                      .required()
                      .check(topic_safe_group(), "letters, digits, `.`, `_`, `-`")
                      .describe("Kafka consumer group; also part of its retry, replay and dead-letter topics' names"),
                  string_list_key("topics")
                      .required()
                      .check(detail::topic_list(), "non-empty")
                      .describe("Topics to consume; `^regex` subscribes by pattern"),
                  string_map_key("properties")
                      .secret_entries(detail::kafka_secret_properties())
                      .describe("librdkafka consumer properties, passed unchanged (security settings also reach the "
                                "retry/dead-letter producer); `partition.assignment.strategy` defaults to "
                                "`cooperative-sticky`"),
                  duration_key("pattern_refresh")
                      .defaults("30s")
                      .check(detail::positive(), "more than 0s")
                      .describe("How often `^regex` topics are matched against the cluster's topics again"),
                  int_key("workers").defaults("1").between(1, 256).in_unit("threads").describe(
                      "Handlers running at once: records with different keys run side by side, the "
                      "records of one key in order, and offsets commit only below the oldest unfinished "
                      "record; 1 runs every record on the polling thread, a partition in order"),
              })
          .describe("Kafka consumer"),
      section("dedupe",
              {
                  enum_key("store", {"memory", "postgres", "sqlite", "redis"})
                      .defaults("memory")
                      .describe("Where processed event ids are remembered"),
                  string_key("dsn").describe("PostgreSQL connection for `store: postgres` (libpq string or URI)"),
                  string_key("path").describe("Database file for `store: sqlite`"),
                  string_key("url").describe("`redis://host:port` for `store: redis`"),
                  duration_key("retention")
                      .defaults("7d")
                      .check(detail::positive(), "more than 0s")
                      .describe("How long an event id is remembered; must cover the whole retry schedule, and what "
                                "Kafka can still redeliver (see `retention_check`)"),
                  duration_key("keep_at_least")
                      .defaults("3d")
                      .check(detail::positive(), "more than 0s")
                      .describe("`store: postgres`: cleanup never deletes inbox rows or recorded dead letters "
                                "younger than this, whatever `retention` says, so `outboxctl reconcile` finds "
                                "yesterday's applied events today (a window of one day needs at least 2d)"),
                  duration_key("lease")
                      .defaults("5m")
                      .check(detail::positive(), "more than 0s")
                      .describe("How long a claim on an event id lasts unless renewed; renewed every third of it while "
                                "the handler runs, so it only bounds how long a dead worker's claim blocks the event "
                                "(memory, sqlite, redis)"),
                  duration_key("cleanup_interval")
                      .defaults("1m")
                      .check(detail::positive(), "more than 0s")
                      .describe("How often expired entries are deleted (postgres, sqlite, memory); each run deletes "
                                "batches until none is left or 200ms passed, then runs again after 1s"),
                  int_key("cleanup_batch")
                      .defaults("1000")
                      .between(1, 1'000'000)
                      .in_unit("rows")
                      .describe("Entries one cleanup statement deletes at most"),
                  enum_key("retention_check", {"refuse", "warn"})
                      .defaults("refuse")
                      .describe("At start the consumer reads each topic's `retention.ms` and `segment.ms` and the "
                                "brokers' `offsets.retention.minutes`; when expired offsets could make Kafka "
                                "redeliver records older than `retention` minus `dlq.replay_window`, `refuse` stops "
                                "with the numbers, `warn` logs them and starts"),
                  string_key("key_header")
                      .describe("Deduplicate on this header instead of `event_id` (e.g. `transaction_id`, when one "
                                "provider transaction can arrive as several events); a record without it is "
                                "dead-lettered as `missing_event_id`"),
              })
          .describe("Duplicate detection on the `event_id` header"),
      section("inbox",
              {
                  bool_key("create_table")
                      .defaults("true")
                      .describe("`dedupe.store: postgres`: create the inbox, dead-letter and held-key tables at start "
                                "when missing; `false` for a role that may not create tables: apply "
                                "`dedupe/schema.sql` in your migrations, and start-up fails naming a missing table"),
                  int_key("batch_size")
                      .defaults("1")
                      .between(1, 10'000)
                      .in_unit("records")
                      .describe("`dedupe.store: postgres`: records whose effects share one transaction (a savepoint "
                                "each), committed together; offsets move only after the commit, and a failed commit "
                                "runs them all again; 1 is a transaction per record; needs `consumer.workers: 1`"),
                  duration_key("batch_time")
                      .defaults("10ms")
                      .check(detail::positive(), "more than 0s")
                      .describe("`dedupe.store: postgres` with `batch_size` above 1: a batch commits this long after "
                                "its first record at the latest, and as soon as no more records wait to be read"),
              })
          .describe("The PostgreSQL inbox's tables and transactions"),
      section(
          "retry",
          {
              enum_key("schedule", {"fixed", "exponential", "decorrelated", "list", "wechatpay"})
                  .defaults("exponential")
                  .describe("Backoff between in-process attempts; `wechatpay` is 15s 15s 30s 3m 10m 20m 30m "
                            "30m 30m 60m 3h 3h 3h 6h 6h, of which `attempts` - 1 delays run (blocking the "
                            "partition); for the whole schedule without blocking use `topics: wechatpay`"),
              duration_key("initial")
                  .defaults("200ms")
                  .check(detail::positive(), "more than 0s")
                  .describe("First delay"),
              duration_key("max").defaults("30s").check(detail::positive(), "more than 0s").describe("Longest delay"),
              int_key("attempts")
                  .defaults("5")
                  .between(1, k_max_attempts)
                  .in_unit("attempts")
                  .describe("In-process, blocking attempts before the retry topics"),
              duration_key("max_elapsed")
                  .defaults("0s")
                  .describe("In-process attempts stop once the next delay would end this long after the first "
                            "failure; `0s` is no cap"),
              duration_list_key("delays").describe("The delays of `schedule: list`"),
              duration_list_key("topics")
                  .check(positive_delays(), "each more than 0s")
                  .preset("wechatpay", wechatpay_list_text())
                  .describe("Non-blocking tiers tried after the in-process attempts, one attempt per entry (a delay "
                            "may repeat), then the DLQ; a copy waits in `<topic>.<group>.retry.<delay>`"),
              enum_key("ordering", {"per_key", "none"})
                  .defaults("per_key")
                  .describe("`per_key` holds later records of a key while one waits in a retry tier; the hold lives "
                            "in the dedupe store (postgres, redis, sqlite), so it survives rebalances and restarts"),
              int_key("topic_replication_factor")
                  .defaults("-1")
                  .between(-1, 32767)
                  .check(
                      [](const value& v) -> std::string {
                        return std::get<std::int64_t>(v) == 0 ? "is 0; give at least 1, or -1 for the cluster's default"
                                                              : "";
                      },
                      "not 0")
                  .describe("Replication factor of the tier, replay and dead-letter topics the consumer creates; "
                            "`-1` is the cluster's `default.replication.factor`. Existing ones must have at least "
                            "the source topic's"),
              duration_key("topic_retention")
                  .defaults("7d")
                  .check(detail::positive(), "more than 0s")
                  .describe("`retention.ms` of the tier and replay topics the consumer creates (a tier gets at least "
                            "10 times its delay); they hold the only copy of a parked record"),
          })
          .describe("Retries of failed records"),
      section("dlq",
              {
                  string_key("topic")
                      .defaults("{topic}.{group}.dlq")
                      .check(dead_letter_template())
                      .describe("Dead-letter topic; `{topic}` is the original topic, `{group}` the consumer group"),
                  number_key("max_ratio")
                      .defaults("0.5")
                      .check(detail::ratio(), "more than 0, at most 1")
                      .in_unit("ratio")
                      .describe("Consumption halts when more than this share of the last `window` records were "
                                "dead-lettered"),
                  int_key("window")
                      .defaults("200")
                      .between(1, k_max_window)
                      .in_unit("records")
                      .describe("Records counted by the DLQ breaker"),
                  duration_key("replay_window")
                      .defaults("1d")
                      .check(detail::positive(), "more than 0s")
                      .describe("How long after dead-lettering a record may still be replayed; `dedupe.retention` "
                                "must cover it"),
                  duration_key("retention")
                      .defaults("30d")
                      .check(at_least(std::chrono::hours(24 * 7)), "at least 7d")
                      .describe("`retention.ms` of a dead-letter topic the consumer creates; an existing one must keep "
                                "records at least this long"),
                  duration_key("probe_interval")
                      .defaults("5m")
                      .check(detail::positive(), "more than 0s")
                      .describe("A consumer halted by the breaker runs the record it holds again this often; when it "
                                "succeeds, the breaker closes and consumption resumes"),
              })
          .describe("Dead-letter topic and its breaker"),
      detail::metrics_section("127.0.0.1:9188"),
      detail::log_section(),
  };
  s.rules = {
      {"`dedupe.dsn` is required with `store: postgres`, `dedupe.path` with `sqlite`, `dedupe.url` with `redis`.",
       [](rule_context& ctx) {
         const auto* store = ctx.loaded().find<std::string>("dedupe.store");
         if (store == nullptr) return;
         const std::string needed = *store == "postgres" ? "dsn"
                                    : *store == "sqlite" ? "path"
                                    : *store == "redis"  ? "url"
                                                         : "";
         if (needed.empty()) return;
         const auto* given = ctx.loaded().find<std::string>("dedupe." + needed);
         if (given == nullptr || given->empty()) {
           ctx.fail("dedupe." + needed, "is required when dedupe.store is " + *store);
         }
       }},
      {"`retry.delays` is non-empty with `schedule: list`.",
       [](rule_context& ctx) {
         const auto* schedule = ctx.loaded().find<std::string>("retry.schedule");
         const auto* delays = ctx.loaded().find<std::vector<std::chrono::milliseconds>>("retry.delays");
         if (schedule != nullptr && *schedule == "list" && delays != nullptr && delays->empty()) {
           ctx.fail("retry.delays", "is required when retry.schedule is list, e.g. [1s, 10s, 1m]");
         }
       }},
      {"`retry.initial` is at most `retry.max`.",
       [](rule_context& ctx) {
         const auto* initial = ctx.loaded().find<std::chrono::milliseconds>("retry.initial");
         const auto* max = ctx.loaded().find<std::chrono::milliseconds>("retry.max");
         if (initial != nullptr && max != nullptr && *initial > *max) {
           ctx.fail("retry.initial", "is longer than retry.max; raise retry.max or lower retry.initial");
         }
       }},
      {"`dedupe.retention` is at least the longest in-process retry time (the first `retry.attempts` - 1 delays "
       "at their caps, at most `retry.max_elapsed`) plus the sum of `retry.topics` plus `dlq.replay_window`, so "
       "a retried or replayed record is still recognised as a duplicate.",
       check_retention_covers_retries},
      {"`dlq.retention` is at least `dlq.replay_window`.", check_dlq_retention_covers_replay},
  };
  return s;
}

template <typename E, std::size_t N>
E pick(const std::string& text, const std::array<std::pair<std::string_view, E>, N>& table) {
  for (const auto& [name, e] : table) {
    if (name == text) return e;
  }
  throw std::logic_error("config value `" + text + "` has no enumerator");
}

constexpr std::array<std::pair<std::string_view, dedupe_store>, 4> k_stores{{{"memory", dedupe_store::memory},
                                                                             {"postgres", dedupe_store::postgres},
                                                                             {"sqlite", dedupe_store::sqlite},
                                                                             {"redis", dedupe_store::redis}}};
constexpr std::array<std::pair<std::string_view, retry_schedule>, 5> k_schedules{
    {{"fixed", retry_schedule::fixed},
     {"exponential", retry_schedule::exponential},
     {"decorrelated", retry_schedule::decorrelated},
     {"list", retry_schedule::list},
     {"wechatpay", retry_schedule::wechatpay}}};
constexpr std::array<std::pair<std::string_view, retry_ordering>, 2> k_orderings{
    {{"per_key", retry_ordering::per_key}, {"none", retry_ordering::none}}};
constexpr std::array<std::pair<std::string_view, retention_check>, 2> k_checks{
    {{"refuse", retention_check::refuse}, {"warn", retention_check::warn}}};

template <typename E, std::size_t N>
std::string_view name_of(E e, const std::array<std::pair<std::string_view, E>, N>& table) noexcept {
  for (const auto& [name, candidate] : table) {
    if (candidate == e) return name;
  }
  return table.front().first;
}

std::string optional_text(const values& v, std::string_view path) {
  const auto* text = v.find<std::string>(path);
  return text == nullptr ? std::string() : *text;
}

consumer_config from_values(values v) {
  consumer_config c;
  c.consumer.brokers = v.get<std::string>("consumer.brokers");
  c.consumer.group_id = v.get<std::string>("consumer.group_id");
  c.consumer.topics = v.get<std::vector<std::string>>("consumer.topics");
  c.consumer.properties = v.get<std::map<std::string, std::string>>("consumer.properties");
  c.consumer.pattern_refresh = v.get<std::chrono::milliseconds>("consumer.pattern_refresh");
  c.consumer.workers = static_cast<int>(v.get<std::int64_t>("consumer.workers"));

  c.dedupe.store = pick(v.get<std::string>("dedupe.store"), k_stores);
  c.dedupe.dsn = optional_text(v, "dedupe.dsn");
  c.dedupe.path = optional_text(v, "dedupe.path");
  c.dedupe.url = optional_text(v, "dedupe.url");
  c.dedupe.retention = v.get<std::chrono::milliseconds>("dedupe.retention");
  c.dedupe.keep_at_least = v.get<std::chrono::milliseconds>("dedupe.keep_at_least");
  c.dedupe.lease = v.get<std::chrono::milliseconds>("dedupe.lease");
  c.dedupe.cleanup_interval = v.get<std::chrono::milliseconds>("dedupe.cleanup_interval");
  c.dedupe.cleanup_batch = static_cast<int>(v.get<std::int64_t>("dedupe.cleanup_batch"));
  c.dedupe.check = pick(v.get<std::string>("dedupe.retention_check"), k_checks);
  c.dedupe.key_header = optional_text(v, "dedupe.key_header");
  c.inbox.create_table = v.get<bool>("inbox.create_table");
  c.inbox.batch_size = static_cast<int>(v.get<std::int64_t>("inbox.batch_size"));
  c.inbox.batch_time = v.get<std::chrono::milliseconds>("inbox.batch_time");

  c.retry.schedule = pick(v.get<std::string>("retry.schedule"), k_schedules);
  c.retry.initial = v.get<std::chrono::milliseconds>("retry.initial");
  c.retry.max = v.get<std::chrono::milliseconds>("retry.max");
  c.retry.attempts = static_cast<int>(v.get<std::int64_t>("retry.attempts"));
  c.retry.delays = v.get<std::vector<std::chrono::milliseconds>>("retry.delays");
  c.retry.topics = v.get<std::vector<std::chrono::milliseconds>>("retry.topics");
  c.retry.ordering = pick(v.get<std::string>("retry.ordering"), k_orderings);
  c.retry.max_elapsed = v.get<std::chrono::milliseconds>("retry.max_elapsed");
  c.retry.topic_replication_factor = static_cast<int>(v.get<std::int64_t>("retry.topic_replication_factor"));
  c.retry.topic_retention = v.get<std::chrono::milliseconds>("retry.topic_retention");

  c.dlq.topic = v.get<std::string>("dlq.topic");
  c.dlq.max_ratio = v.get<double>("dlq.max_ratio");
  c.dlq.window = static_cast<int>(v.get<std::int64_t>("dlq.window"));
  c.dlq.replay_window = v.get<std::chrono::milliseconds>("dlq.replay_window");
  c.dlq.retention = v.get<std::chrono::milliseconds>("dlq.retention");
  c.dlq.probe_interval = v.get<std::chrono::milliseconds>("dlq.probe_interval");

  c.metrics = detail::read_metrics(v);
  c.log = detail::read_log(v);
  c.tree = std::move(v);
  return c;
}

}  // namespace

std::string_view to_string(dedupe_store s) noexcept { return name_of(s, k_stores); }
std::string_view to_string(retry_schedule s) noexcept { return name_of(s, k_schedules); }
std::string_view to_string(retry_ordering o) noexcept { return name_of(o, k_orderings); }
std::string_view to_string(retention_check c) noexcept { return name_of(c, k_checks); }

const std::vector<std::chrono::milliseconds>& wechatpay_delays() {
  using namespace std::chrono_literals;
  static const std::vector<std::chrono::milliseconds> delays = {15s,   15s,   30s, 3min, 10min, 20min, 30min, 30min,
                                                                30min, 60min, 3h,  3h,   3h,    6h,    6h};
  return delays;
}

schema consumer_schema(std::span<const key_spec> extra_sections) {
  static const schema base = make_consumer_schema();
  schema s = base;
  for (const auto& extra : extra_sections) {
    const bool taken =
        std::any_of(s.keys.begin(), s.keys.end(), [&](const key_spec& k) { return k.name == extra.name; });
    if (taken) throw std::logic_error("config section `" + extra.name + "` is declared twice");
    s.keys.push_back(extra);
  }
  return s;
}

consumer_config load_consumer_config(const std::string& path, std::span<const key_spec> extra_sections) {
  return from_values(load_values(consumer_schema(extra_sections), path));
}

consumer_config parse_consumer_config(std::string_view yaml_text, std::string_view file_name_for_messages,
                                      std::span<const key_spec> extra_sections) {
  return from_values(parse_values(consumer_schema(extra_sections), yaml_text, file_name_for_messages));
}

std::string dump_redacted(const consumer_config& c) { return dump_redacted(c.tree); }

}  // namespace outbox::config
