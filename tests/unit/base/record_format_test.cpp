#include "outbox/base/record_format.hpp"
#include "outbox/base/text.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace outbox::record_format {
namespace {

using namespace std::chrono_literals;

header_lookup from(const header_pairs& h) {
  return [&h](std::string_view name) -> std::optional<std::string_view> {
    for (const auto& [k, v] : h) {
      if (k == name) return std::string_view(v);
    }
    return std::nullopt;
  };
}

TEST(record_format, a_retry_copy_reads_back_what_it_wrote) {
  retry_copy c;
  c.from = {"payments", 2, 41, 1700000000000};
  c.consumer_group = "ledger";
  c.tier = 1;
  c.attempts = 3;
  c.due_ms = 1700000010000;
  c.first_failure_ms = 1700000001000;
  c.reason = std::string(2000, 'x');
  const header_pairs h = c.headers();
  const retry_copy back = retry_copy::read(from(h));
  EXPECT_EQ(back.from.topic, "payments");
  EXPECT_EQ(back.from.partition, 2);
  EXPECT_EQ(back.from.offset, 41);
  EXPECT_EQ(back.from.timestamp_ms, 1700000000000);
  EXPECT_EQ(back.consumer_group, "ledger");
  EXPECT_EQ(back.tier, 1);
  EXPECT_EQ(back.attempts, 3);
  EXPECT_EQ(back.due_ms, 1700000010000);
  EXPECT_EQ(back.first_failure_ms, 1700000001000);
  EXPECT_EQ(back.reason.size(), k_max_error_message) << "reasons are cut to 1 KiB";
  for (const auto& [name, value] : h) EXPECT_TRUE(is_retry_header(name)) << name;
}

TEST(record_format, hostile_retry_headers_fall_back_to_safe_values) {
  const header_pairs h = {{"retry_attempt", "-5"}, {"retry_tier", "99999999999"}, {"retry_original_partition", "x"}};
  const retry_copy c = retry_copy::read(from(h));
  EXPECT_EQ(c.attempts, 0);
  EXPECT_EQ(c.tier, -1);
  EXPECT_EQ(c.from.partition, -1);
  EXPECT_EQ(retry_copy::read(from({})).tier, -1) << "absent: no tier";
}

TEST(record_format, a_dead_letter_carries_every_spec_header) {
  dead_letter d;
  d.from = {"payments", 0, 7, 5};
  d.consumer_group = "ledger";
  d.error_message = "unknown account";
  d.attempts = 4;
  d.first_failure_ms = 10;
  d.last_failure_ms = 20;
  std::map<std::string, std::string> h;
  for (const auto& [k, v] : d.headers()) h[k] = v;
  EXPECT_EQ(h.at("dlq_original_topic"), "payments");
  EXPECT_EQ(h.at("dlq_original_partition"), "0");
  EXPECT_EQ(h.at("dlq_original_offset"), "7");
  EXPECT_EQ(h.at("dlq_original_timestamp_ms"), "5");
  EXPECT_EQ(h.at("dlq_consumer_group"), "ledger");
  EXPECT_EQ(h.at("dlq_error_class"), "fatal") << "the default class";
  EXPECT_EQ(h.at("dlq_error_message"), "unknown account");
  EXPECT_EQ(h.at("dlq_attempts"), "4");
  EXPECT_EQ(h.at("dlq_first_failure_ms"), "10");
  EXPECT_EQ(h.at("dlq_last_failure_ms"), "20");
  for (const auto& [k, v] : h) EXPECT_TRUE(is_dead_letter_header(k)) << k;
  EXPECT_FALSE(is_dead_letter_header("dlq_replay_count")) << "kept through later dead letters";
  EXPECT_FALSE(is_retry_header("retry_me_please")) << "a user header that starts with retry_ is the user's";
}

TEST(record_format, topic_names_include_the_group_and_spell_delays_once) {
  EXPECT_EQ(retry_topic_name("payments", "ledger", 10s), "payments.ledger.retry.10s");
  EXPECT_EQ(retry_topic_name("payments", "ledger", 60min), "payments.ledger.retry.1h");
  EXPECT_EQ(delay_name(90s), "90s");
  EXPECT_EQ(delay_name(1500ms), "1500ms");
  EXPECT_EQ(delay_name(48h), "2d");
  EXPECT_EQ(delay_name(0ms), "0s");
  EXPECT_EQ(replay_topic_name("payments", "ledger"), "payments.ledger.replay");
  EXPECT_EQ(dead_letter_topic_name(k_default_dead_letter_template, "payments", "ledger"), "payments.ledger.dlq");
  EXPECT_EQ(dead_letter_topic_name("dlq.{group}.{topic}.{group}", "p", "g"), "dlq.g.p.g");
}

TEST(record_format, event_ids_that_cannot_be_keyed_on_are_named) {
  EXPECT_EQ(event_id_problem(""), "is empty");
  EXPECT_EQ(event_id_problem(std::string("a\0b", 3)), "contains a NUL byte");
  EXPECT_EQ(event_id_problem(std::string(1025, 'x')), "is 1025 bytes long, more than 1024");
  EXPECT_EQ(event_id_problem("\xc3\x28"), "is not valid UTF-8");
  EXPECT_EQ(event_id_problem("\xed\xa0\x80"), "is not valid UTF-8") << "a surrogate";
  EXPECT_FALSE(event_id_problem(std::string(1024, 'x')));
  EXPECT_FALSE(event_id_problem("c3a0b6e2-\xe2\x82\xac"));
}

TEST(text, cut_utf8_never_splits_a_character) {
  EXPECT_EQ(cut_utf8("abc", 5), "abc");
  EXPECT_EQ(cut_utf8("a\xe2\x82\xac", 3), "a") << "the euro sign takes 3 bytes";
  std::string umlauts;
  for (int i = 0; i < 600; ++i) umlauts += "\xc3\xa4";
  const std::string cut = cut_utf8(umlauts, 1023);
  EXPECT_EQ(cut.size(), 1022u);
  EXPECT_TRUE(valid_utf8(cut));
}

TEST(text, valid_utf8_finds_a_bad_byte_at_every_offset_around_its_eight_byte_steps) {
  // ASCII is checked eight bytes at a time: every position of a bad byte or a split sequence, before, inside and
  // after such a step, must still be found.
  for (std::size_t at = 0; at < 20; ++at) {
    std::string s(20, 'a');
    s[at] = '\xff';
    EXPECT_FALSE(valid_utf8(s)) << "0xff at " << at;
    s[at] = '\xc3';
    EXPECT_FALSE(valid_utf8(s)) << "a lead byte alone at " << at;
    std::string good = std::string(at, 'a') + "\xe2\x82\xac" + std::string(20 - at, 'b');
    EXPECT_TRUE(valid_utf8(good)) << "a euro sign at " << at;
    std::string cut = std::string(at, 'a') + "\xe2\x82";
    EXPECT_FALSE(valid_utf8(cut)) << "a euro sign cut short at the end, at " << at;
    std::string overlong = std::string(at, 'a') + "\xc0\xaf" + "zzzzzzzz";
    EXPECT_FALSE(valid_utf8(overlong)) << "an overlong '/' at " << at;
  }
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("c3a0b6e2-1f4d-4c1e-9a0b-6e21f4d4c1e9"));
  EXPECT_FALSE(valid_utf8(std::string("order_placed\xed\xa0\x80", 15))) << "a surrogate after 12 ASCII bytes";
}

}  // namespace
}  // namespace outbox::record_format
