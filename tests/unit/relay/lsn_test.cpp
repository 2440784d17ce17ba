#include "outbox/relay/lsn.hpp"

#include <gtest/gtest.h>

#include <random>

namespace outbox::relay {
namespace {

TEST(relay_lsn, formats_low_half_padded_to_eight_digits) {
  EXPECT_EQ(format_lsn(0), "0/00000000");
  EXPECT_EQ(format_lsn(0x16B3748), "0/016B3748");
  EXPECT_EQ(format_lsn(0x16'B374D848), "16/B374D848");
  EXPECT_EQ(format_lsn(~lsn_t{0}), "FFFFFFFF/FFFFFFFF");
}

TEST(relay_lsn, parses_padded_and_unpadded_spellings) {
  EXPECT_EQ(parse_lsn("16/B374D848"), lsn_t{0x16'B374D848});
  EXPECT_EQ(parse_lsn("0/16B3748"), lsn_t{0x16B3748});
  EXPECT_EQ(parse_lsn("0/016B3748"), lsn_t{0x16B3748});
  EXPECT_EQ(parse_lsn("0/0"), lsn_t{0});
  EXPECT_EQ(parse_lsn("a/bcdef"), lsn_t{0xA'000BCDEF});
  EXPECT_EQ(parse_lsn("FFFFFFFF/FFFFFFFF"), ~lsn_t{0});
}

TEST(relay_lsn, rejects_junk) {
  for (const char* bad : {"", "/", "1/", "/1", "G/1", "1/G", "1//2", "1/2/3", " 1/2", "1/2 ", "1 /2", "-1/2", "+1/2",
                          "0x1/2", "12", "1/2\n"}) {
    EXPECT_EQ(parse_lsn(bad), std::nullopt) << '"' << bad << '"';
  }
}

TEST(relay_lsn, rejects_halves_that_overflow_32_bits) {
  EXPECT_EQ(parse_lsn("100000000/0"), std::nullopt);
  EXPECT_EQ(parse_lsn("0/100000000"), std::nullopt);
  EXPECT_EQ(parse_lsn("0/000000001"), std::nullopt);
}

TEST(relay_lsn, round_trips) {
  std::mt19937_64 rng(20240601);
  for (int i = 0; i < 10'000; ++i) {
    const lsn_t lsn = i < 64 ? lsn_t{1} << i : rng();
    const std::string text = format_lsn(lsn);
    ASSERT_EQ(parse_lsn(text), lsn) << text;
    const auto slash = text.find('/');
    ASSERT_EQ(text.size() - slash - 1, 8U) << text;
  }
}

}  // namespace
}  // namespace outbox::relay
