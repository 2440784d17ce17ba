// outboxctl reconcile without services: the day window in a time zone, and the bucket merge of the three
// id-ordered streams.
#include "outbox/ctl/reconcile.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace outbox::ctl {
namespace {

constexpr std::int64_t k_hour = 3'600'000;

/// 2026-11-30T00:00:00Z in ms.
constexpr std::int64_t k_nov30 = 1'795'996'800'000;

template <typename T>
pull<T> from(std::vector<T> items) {
  auto it = std::make_shared<std::vector<T>>(std::move(items));
  auto pos = std::make_shared<std::size_t>(0);
  return [it, pos](T& out) {
    if (*pos >= it->size()) return false;
    out = (*it)[(*pos)++];
    return true;
  };
}

TEST(reconcile_window, yesterday_in_utc_is_midnight_to_midnight) {
  const auto w = yesterday(time_zone::utc(), k_nov30 + 26 * k_hour);  // 2026-12-01T02:00Z
  EXPECT_EQ(w.since_ms, k_nov30);
  EXPECT_EQ(w.until_ms, k_nov30 + 24 * k_hour);
}

TEST(reconcile_window, a_fixed_offset_shifts_the_day) {
  const auto tz = time_zone::parse("+02:00");
  ASSERT_TRUE(tz);
  // 2026-11-30T23:30Z is already 2026-12-01 01:30 at +02:00: yesterday is 2026-11-30 local.
  const auto w = yesterday(*tz, k_nov30 + 23 * k_hour + 30 * 60'000);
  EXPECT_EQ(w.since_ms, k_nov30 - 2 * k_hour);
  EXPECT_EQ(w.until_ms, k_nov30 + 22 * k_hour);
  const auto minus = time_zone::parse("UTC-0530");
  ASSERT_TRUE(minus);
  EXPECT_EQ(minus->offset_at(0), -(5 * 3600 + 30 * 60));
  EXPECT_EQ(minus->format_local(k_nov30), "2026-11-29T18:30-05:30");
}

TEST(reconcile_window, an_iana_zone_follows_its_daylight_saving_changes) {
  const auto berlin = time_zone::parse("Europe/Berlin");
  ASSERT_TRUE(berlin);
  EXPECT_EQ(berlin->offset_at(k_nov30 / 1000), 3600);  // CET in winter
  const auto w = day_window(*berlin, "2026-11-30");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->since_ms, k_nov30 - k_hour);
  EXPECT_EQ(w->until_ms - w->since_ms, 24 * k_hour);
  // 2026-03-29: clocks go forward at 02:00, a 23-hour day; 2026-10-25: back at 03:00, 25 hours.
  const auto spring = day_window(*berlin, "2026-03-29");
  ASSERT_TRUE(spring);
  EXPECT_EQ(spring->until_ms - spring->since_ms, 23 * k_hour);
  const auto autumn = day_window(*berlin, "2026-10-25");
  ASSERT_TRUE(autumn);
  EXPECT_EQ(autumn->until_ms - autumn->since_ms, 25 * k_hour);
  EXPECT_EQ(berlin->format_local(autumn->since_ms), "2026-10-25T00:00+02:00");
  EXPECT_EQ(berlin->format_local(autumn->until_ms), "2026-10-26T00:00+01:00");
}

TEST(reconcile_window, bad_zones_and_dates_are_refused) {
  for (const char* bad : {"Mars/Olympus", "../etc/passwd", "/etc/localtime", "+25:00", "+5:3", "", "UTC+x"}) {
    EXPECT_FALSE(time_zone::parse(bad)) << bad;
  }
  for (const char* ok : {"UTC", "Z", "+00:00", "-08", "Asia/Kolkata", "America/New_York"}) {
    EXPECT_TRUE(time_zone::parse(ok)) << ok;
  }
  for (const char* bad : {"2026-02-30", "2026-13-01", "30.11.2026", "2026-11-3", ""}) {
    EXPECT_FALSE(day_window(time_zone::utc(), bad)) << bad;
  }
}

merge_settings window_of_nov30() { return {k_nov30, k_nov30 + 24 * k_hour, time_zone::utc(), 100}; }

TEST(reconcile_merge, every_event_lands_in_exactly_one_bucket_and_applied_wins) {
  const std::int64_t t = k_nov30 + 10 * k_hour;  // 10:00
  const auto r = merge_buckets(
      from<outbox_event>({{"a-applied", "pay", t, true},
                          {"b-dead", "pay", t, true},
                          {"c-missing", "orders", t + k_hour, true},
                          {"d-replayed", "pay", t, true},
                          {"e-old", "pay", k_nov30 - k_hour, false}}),
      from<applied_event>({{"a-applied", t + 1},
                           {"d-replayed", t + 5 * k_hour},
                           {"e-old", t},  // written before the window, applied in it: known, not foreign
                           {"f-foreign", t + 2 * k_hour},
                           {"g-foreign-late", k_nov30 + 30 * k_hour}}),  // applied after the window: not counted
      from<dead_letter_event>({{"b-dead", "pay", 0, 7, "fatal", "amount_cents is negative", t + 2, -1},
                               {"d-replayed", "pay", 0, 8, "fatal", "unknown account", t + 3, t + 4 * k_hour}}),
      window_of_nov30());
  EXPECT_EQ(r.total.events, 4U);
  EXPECT_EQ(r.total.applied, 2U);
  EXPECT_EQ(r.total.dead_lettered, 1U);
  EXPECT_EQ(r.total.missing, 1U);
  EXPECT_EQ(r.total.foreign, 1U);
  EXPECT_EQ(r.replayed_applied, 1U);
  EXPECT_FALSE(r.complete());
  ASSERT_EQ(r.missing.size(), 1U);
  EXPECT_EQ(r.missing[0].id, "c-missing");
  EXPECT_EQ(r.missing[0].topic, "orders");
  ASSERT_EQ(r.dead_lettered.size(), 1U);
  EXPECT_EQ(r.dead_lettered[0].id, "b-dead");
  EXPECT_EQ(r.dead_lettered[0].error_class, "fatal");
  EXPECT_EQ(r.dead_lettered[0].replayed_ms, -1);
  ASSERT_EQ(r.foreign.size(), 1U);
  EXPECT_EQ(r.foreign[0].id, "f-foreign");

  // Per topic ("" holds the foreign events, whose topic the inbox does not know) and per hour.
  ASSERT_EQ(r.topics.size(), 3U);
  EXPECT_EQ(r.topics[0].first, "");
  EXPECT_EQ(r.topics[0].second.foreign, 1U);
  EXPECT_EQ(r.topics[1].first, "orders");
  EXPECT_EQ(r.topics[1].second.missing, 1U);
  EXPECT_EQ(r.topics[2].first, "pay");
  EXPECT_EQ(r.topics[2].second.events, 3U);
  EXPECT_EQ(r.topics[2].second.applied, 2U);
  EXPECT_EQ(r.topics[2].second.dead_lettered, 1U);
  ASSERT_EQ(r.hours.size(), 3U);
  EXPECT_EQ(r.hours[0].first, t);
  EXPECT_EQ(r.hours[0].second.events, 3U);
  EXPECT_EQ(r.hours[1].first, t + k_hour);
  EXPECT_EQ(r.hours[1].second.missing, 1U);
  EXPECT_EQ(r.hours[2].first, t + 2 * k_hour);
  EXPECT_EQ(r.hours[2].second.foreign, 1U);
}

TEST(reconcile_merge, a_replayed_dead_letter_that_failed_again_stays_dead_lettered_with_its_replay_time) {
  const std::int64_t t = k_nov30 + k_hour;
  const auto r = merge_buckets(from<outbox_event>({{"x", "pay", t, true}}), from<applied_event>({}),
                               from<dead_letter_event>({{"x", "pay", 1, 3, "retry_exhausted", "down", t + 9, t + 5}}),
                               window_of_nov30());
  EXPECT_EQ(r.total.dead_lettered, 1U);
  ASSERT_EQ(r.dead_lettered.size(), 1U);
  EXPECT_EQ(r.dead_lettered[0].replayed_ms, t + 5);
  EXPECT_TRUE(r.complete()) << "dead-lettered is accounted for";
}

TEST(reconcile_merge, kafka_duplicates_count_once_and_lists_stop_at_the_limit) {
  std::vector<outbox_event> events;
  for (int i = 0; i < 50; ++i) {
    const std::string id = "id-" + std::to_string(100 + i);
    events.push_back({id, "pay", k_nov30 + i, true});
    events.push_back({id, "pay", k_nov30 + i, true});  // published twice
  }
  auto s = window_of_nov30();
  s.max_listed = 10;
  const auto r = merge_buckets(from(events), from<applied_event>({}), from<dead_letter_event>({}), s);
  EXPECT_EQ(r.total.events, 50U);
  EXPECT_EQ(r.total.missing, 50U);
  EXPECT_EQ(r.missing.size(), 10U);
}

TEST(reconcile_merge, a_stream_out_of_id_order_is_an_error_not_a_wrong_answer) {
  EXPECT_THROW(merge_buckets(from<outbox_event>({{"b", "t", k_nov30, true}, {"a", "t", k_nov30, true}}),
                             from<applied_event>({}), from<dead_letter_event>({}), window_of_nov30()),
               verify_failure);
}

TEST(reconcile_merge, hours_follow_the_local_zone) {
  const auto tz = time_zone::parse("+05:30");
  ASSERT_TRUE(tz);
  merge_settings s{k_nov30 - 5 * k_hour - 30 * 60'000, k_nov30 + 19 * k_hour, *tz, 100};
  // 00:10Z is 05:40 local: the local hour starts at 05:00 local = 23:30Z the day before.
  const auto r = merge_buckets(from<outbox_event>({{"a", "t", k_nov30 + 10 * 60'000, true}}),
                               from<applied_event>({{"a", k_nov30 + 11 * 60'000}}), from<dead_letter_event>({}), s);
  ASSERT_EQ(r.hours.size(), 1U);
  EXPECT_EQ(r.hours[0].first, k_nov30 - 30 * 60'000);
  EXPECT_EQ(tz->format_local(r.hours[0].first), "2026-11-30T05:00+05:30");
}

}  // namespace
}  // namespace outbox::ctl
