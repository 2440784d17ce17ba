#include "outbox/ctl/reconcile.hpp"

#include "id_sorter.hpp"
#include "outbox_sources.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/text.hpp"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <unordered_map>

namespace outbox::ctl {
namespace {

constexpr int k_fetch_rows = 10'000;

/// Rows of one cursor, fetched k_fetch_rows at a time.
class cursor_reader {
 public:
  cursor_reader(relay::pg_session& s, std::string name, const std::string& query) : m_s(s), m_name(std::move(name)) {
    m_s.exec("DECLARE " + m_name + " NO SCROLL CURSOR FOR " + query);
  }
  /// The next row's index in rows(), or -1 at the end.
  int next() {
    if (m_row + 1 < m_rows.size()) return ++m_row;
    if (m_done) return -1;
    m_rows = m_s.exec("FETCH " + std::to_string(k_fetch_rows) + " FROM " + m_name);
    m_done = m_rows.size() < k_fetch_rows;
    m_row = 0;
    return m_rows.size() > 0 ? 0 : -1;
  }
  [[nodiscard]] const relay::pg_rows& rows() const noexcept { return m_rows; }

 private:
  relay::pg_session& m_s;
  std::string m_name;
  relay::pg_rows m_rows;
  int m_row = 0;
  bool m_done = false;
};

std::int64_t as_int(std::string_view text) { return parse_int64(text).value_or(0); }

/// `schema.table` or `table`, quoted.
std::string quoted_table(relay::pg_session& s, const std::string& name) {
  const auto dot = name.find('.');
  if (dot == std::string::npos) return s.quote_ident(name);
  return relay::quote_qualified(s, name.substr(0, dot), name.substr(dot + 1));
}

std::string dead_letter_table_of(const reconcile_options& o) {
  if (!o.dead_letter_table.empty()) return o.dead_letter_table;
  const auto dot = o.inbox_table.rfind('.');
  return dot == std::string::npos ? "outbox_dead_letters" : o.inbox_table.substr(0, dot + 1) + "outbox_dead_letters";
}

/// Throws verify_failure if `id` sorts before the stream's previous id: the merge needs every stream in order.
void check_order(std::string& last, const std::string& id, const char* stream) {
  if (id < last) {
    throw verify_failure(std::string("the ") + stream + " stream is not in event id order ('" + id + "' after '" +
                         last + "')");
  }
  last = id;
}

/// The stream's next item into `current` (reset at its end), checked to keep the id order.
template <typename T>
void advance(const pull<T>& next, std::optional<T>& current, std::string& last, const char* stream) {
  T item;
  if (next(item)) {
    check_order(last, item.id, stream);
    current = std::move(item);
  } else {
    current.reset();
  }
}

}  // namespace

std::string_view to_string(bucket b) noexcept {
  switch (b) {
    case bucket::applied:
      return "applied";
    case bucket::dead_lettered:
      return "dead_lettered";
    case bucket::missing:
      return "missing";
    case bucket::foreign:
      return "foreign";
  }
  return "missing";
}

void bucket_counts::add(bucket b) {
  switch (b) {
    case bucket::applied:
      ++events;
      ++applied;
      break;
    case bucket::dead_lettered:
      ++events;
      ++dead_lettered;
      break;
    case bucket::missing:
      ++events;
      ++missing;
      break;
    case bucket::foreign:
      ++foreign;
      break;
  }
}

reconcile_report merge_buckets(const pull<outbox_event>& outbox, const pull<applied_event>& applied,
                               const pull<dead_letter_event>& dead, const merge_settings& s) {
  reconcile_report r;
  r.since_ms = s.since_ms;
  r.until_ms = s.until_ms;
  std::map<std::string, bucket_counts> topics;
  std::map<std::int64_t, bucket_counts> hours;
  std::unordered_map<std::int64_t, std::int64_t> offsets;  // UTC hour -> the zone's offset then
  auto hour_of = [&](std::int64_t ms) {
    const std::int64_t utc_s = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    const std::int64_t utc_hour = utc_s >= 0 ? utc_s / 3600 : -((-utc_s + 3599) / 3600);
    auto it = offsets.find(utc_hour);
    if (it == offsets.end()) it = offsets.emplace(utc_hour, s.tz.offset_at(utc_s)).first;
    const std::int64_t local = utc_s + it->second;
    const std::int64_t local_hour = (local >= 0 ? local / 3600 : -((-local + 3599) / 3600)) * 3600;
    return (local_hour - it->second) * 1000;
  };

  std::optional<outbox_event> o;
  std::optional<applied_event> a;
  std::optional<dead_letter_event> d;
  std::string last_o;
  std::string last_a;
  std::string last_d;
  auto next_o = [&] { advance(outbox, o, last_o, "outbox"); };
  auto next_a = [&] { advance(applied, a, last_a, "inbox"); };
  auto next_d = [&] { advance(dead, d, last_d, "dead-letter"); };
  next_o();
  next_a();
  next_d();
  std::string key;
  while (o || a || d) {
    const std::string* least = nullptr;
    for (const std::string* id : {o ? &o->id : nullptr, a ? &a->id : nullptr, d ? &d->id : nullptr}) {
      if (id != nullptr && (least == nullptr || *id < *least)) least = id;
    }
    key = *least;
    bool known = false;
    std::optional<outbox_event> ev;
    while (o && o->id == key) {
      known = true;
      if (o->in_window && !ev) ev = std::move(*o);
      next_o();
    }
    std::optional<applied_event> ap;
    while (a && a->id == key) {
      if (!ap) ap = std::move(*a);
      next_a();
    }
    std::optional<dead_letter_event> dl;
    while (d && d->id == key) {
      if (!dl) dl = std::move(*d);
      next_d();
    }
    if (ev) {
      const bucket b = ap ? bucket::applied : dl ? bucket::dead_lettered : bucket::missing;
      if (ap && dl) ++r.replayed_applied;
      r.total.add(b);
      topics[ev->topic].add(b);
      hours[hour_of(ev->written_ms)].add(b);
      if (b == bucket::missing && r.missing.size() < s.max_listed) {
        r.missing.push_back({ev->id, ev->topic, ev->written_ms, {}, {}, -1});
      } else if (b == bucket::dead_lettered && r.dead_lettered.size() < s.max_listed) {
        r.dead_lettered.push_back(
            {ev->id, ev->topic, dl->dead_lettered_ms, dl->error_class, dl->error_message, dl->replayed_ms});
      }
    } else if (!known && ap && ap->applied_ms >= s.since_ms && ap->applied_ms < s.until_ms) {
      r.total.add(bucket::foreign);
      const std::string topic = dl ? dl->topic : std::string();
      topics[topic].add(bucket::foreign);
      hours[hour_of(ap->applied_ms)].add(bucket::foreign);
      if (r.foreign.size() < s.max_listed) r.foreign.push_back({ap->id, topic, ap->applied_ms, {}, {}, -1});
    }
  }
  r.topics.assign(topics.begin(), topics.end());
  r.hours.assign(hours.begin(), hours.end());
  return r;
}

reconcile_report reconcile(const reconcile_options& o) {
  const std::int64_t read_from = o.since_ms - o.lookback.count();
  detail::id_sorter sorter(o.memory_budget);
  std::uint64_t read = 0;
  auto take = [&](std::string_view id, const std::string& topic, std::int64_t ms) {
    ++read;
    if (id.empty() || ms < read_from || ms >= o.until_ms) return;
    sorter.add(id, topic, ms, ms >= o.since_ms);
  };

  if (o.side == outbox_side::tables) {
    verify_options v = o.outbox;
    v.since_ms = read_from;
    v.until_ms = o.until_ms;
    const relay::topic_template tmpl(v.topic_template);
    const auto session = detail::open_snapshot(v.dsn, "outboxctl-reconcile");
    detail::row_source rows(v, *session);
    try {
      rows.scan(tmpl, [&](std::size_t, std::string_view id, const std::string& topic, std::int64_t written) {
        take(id, topic, written);
      });
    } catch (const outbox_error& e) {
      throw verify_failure(std::string("reading the outbox rows: ") + e.what());
    }
  } else {
    detail::record_source kafka(o.outbox);
    for (const auto& topic : o.topics) {
      const auto ranges = kafka.ranges(topic, read_from);
      kafka.read(topic, ranges, [&](std::string_view id, std::int64_t ts) { take(id, topic, ts); });
    }
  }

  const auto session = detail::open_snapshot(o.inbox_dsn, "outboxctl-reconcile");
  relay::pg_session& s = *session;
  const std::string from = "to_timestamp(" + std::to_string(read_from) + " / 1000.0)";
  const std::string group = s.quote_literal(o.group);
  const std::string dead_table = dead_letter_table_of(o);
  std::optional<cursor_reader> inbox;
  std::optional<cursor_reader> dead;
  try {
    inbox.emplace(s, "outbox_reconcile_inbox",
                  "SELECT event_id, (extract(epoch FROM processed_at) * 1000)::bigint FROM " +
                      quoted_table(s, o.inbox_table) + " WHERE consumer_group = " + group +
                      " AND processed_at >= " + from + " ORDER BY event_id COLLATE \"C\"");
  } catch (const outbox_error& e) {
    throw verify_failure("reading the inbox table " + o.inbox_table + ": " + e.what() +
                         "; check --inbox-dsn and --inbox-table");
  }
  try {
    dead.emplace(s, "outbox_reconcile_dead",
                 "SELECT event_id, topic, partition, \"offset\", error_class, error_message,"
                 " (extract(epoch FROM dead_lettered_at) * 1000)::bigint,"
                 " coalesce((extract(epoch FROM replayed_at) * 1000)::bigint, -1) FROM " +
                     quoted_table(s, dead_table) + " WHERE consumer_group = " + group +
                     " AND dead_lettered_at >= " + from + " ORDER BY event_id COLLATE \"C\"");
  } catch (const outbox_error& e) {
    throw verify_failure("reading the dead-letter table " + dead_table + ": " + e.what() +
                         "; the consumer creates it at start with dedupe.store: postgres (or give "
                         "--dead-letter-table)");
  }

  const auto& topic_names = sorter.topics();
  pull<outbox_event> outbox = sorter.finish<outbox_event>([&](const detail::id_sorter::entry& e, outbox_event& out) {
    out.id = e.id;
    out.topic = topic_names[e.topic];
    out.written_ms = e.ms;
    out.in_window = e.in_window;
  });
  pull<applied_event> applied = [&](applied_event& out) {
    const int i = inbox->next();
    if (i < 0) return false;
    out.id = inbox->rows().text(i, 0);
    out.applied_ms = as_int(inbox->rows().text(i, 1));
    return true;
  };
  pull<dead_letter_event> dead_letters = [&](dead_letter_event& out) {
    const int i = dead->next();
    if (i < 0) return false;
    const auto& rows = dead->rows();
    out.id = rows.text(i, 0);
    out.topic = rows.text(i, 1);
    out.partition = static_cast<std::int32_t>(as_int(rows.text(i, 2)));
    out.offset = as_int(rows.text(i, 3));
    out.error_class = rows.text(i, 4);
    out.error_message = rows.text(i, 5);
    out.dead_lettered_ms = as_int(rows.text(i, 6));
    out.replayed_ms = as_int(rows.text(i, 7));
    return true;
  };
  merge_settings ms{o.since_ms, o.until_ms, o.tz, o.max_listed};
  reconcile_report r;
  try {
    r = merge_buckets(outbox, applied, dead_letters, ms);
  } catch (const outbox_error& e) {
    throw verify_failure(std::string("reading the inbox database: ") + e.what());
  }
  r.group = o.group;
  r.outbox_read = read;
  r.spilled_runs = sorter.spilled_runs();
  return r;
}

}  // namespace outbox::ctl
