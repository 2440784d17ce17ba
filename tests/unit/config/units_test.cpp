#include "outbox/config/units.hpp"

#include <gtest/gtest.h>

namespace outbox::config {
namespace {

using namespace std::chrono_literals;

TEST(config_duration, accepts_every_unit) {
  EXPECT_EQ(parse_duration("250ms").value, 250ms);
  EXPECT_EQ(parse_duration("10s").value, 10s);
  EXPECT_EQ(parse_duration("5m").value, 5min);
  EXPECT_EQ(parse_duration("1h").value, 1h);
  EXPECT_EQ(parse_duration("7d").value, 7 * 24h);
  EXPECT_EQ(parse_duration("0s").value, 0ms);
}

TEST(config_duration, rejects_malformed_forms) {
  EXPECT_NE(parse_duration("-5s").error.find("negative"), std::string::npos);
  EXPECT_NE(parse_duration("10").error.find("has no unit"), std::string::npos);
  EXPECT_NE(parse_duration("10y").error.find("unknown unit `y`"), std::string::npos);
  EXPECT_NE(parse_duration("1.5s").error.find("not a whole number"), std::string::npos);
  EXPECT_NE(parse_duration("s").error.find("not a duration"), std::string::npos);
  EXPECT_FALSE(parse_duration(""));
  EXPECT_FALSE(parse_duration("10 s"));
  EXPECT_FALSE(parse_duration("+10s"));
  EXPECT_FALSE(parse_duration("1h30m"));
  EXPECT_FALSE(parse_duration("10S"));
}

TEST(config_duration, rejects_overflow) {
  EXPECT_NE(parse_duration("9223372036854775807d").error.find("too long"), std::string::npos);
  EXPECT_NE(parse_duration("99999999999999999999999ms").error.find("too long"), std::string::npos);
  EXPECT_TRUE(parse_duration("9223372036854775807ms"));
  EXPECT_FALSE(parse_duration("9223372036854775808ms"));
}

TEST(config_size, accepts_binary_decimal_and_bytes) {
  EXPECT_EQ(parse_size("512KiB").value, 512U * 1024);
  EXPECT_EQ(parse_size("64MiB").value, 64U * 1024 * 1024);
  EXPECT_EQ(parse_size("1GiB").value, 1ULL << 30);
  EXPECT_EQ(parse_size("2TiB").value, 2ULL << 40);
  EXPECT_EQ(parse_size("1KB").value, 1000U);
  EXPECT_EQ(parse_size("3MB").value, 3'000'000U);
  EXPECT_EQ(parse_size("1GB").value, 1'000'000'000U);
  EXPECT_EQ(parse_size("100B").value, 100U);
  EXPECT_EQ(parse_size("4096").value, 4096U);
}

TEST(config_size, rejects_malformed_forms) {
  EXPECT_NE(parse_size("-1MiB").error.find("negative"), std::string::npos);
  EXPECT_NE(parse_size("1.5GiB").error.find("not a whole number"), std::string::npos);
  EXPECT_NE(parse_size("10XB").error.find("unknown unit `XB`"), std::string::npos);
  EXPECT_NE(parse_size("MiB").error.find("not a size"), std::string::npos);
  EXPECT_FALSE(parse_size("64mib"));
  EXPECT_FALSE(parse_size("64 MiB"));
}

TEST(config_size, rejects_overflow) {
  EXPECT_NE(parse_size("16777216TiB").error.find("too large"), std::string::npos);
  EXPECT_NE(parse_size("18446744073709551616").error.find("too large"), std::string::npos);
  EXPECT_EQ(parse_size("18446744073709551615").value, 18446744073709551615ULL);
}

TEST(config_units, formats_in_the_largest_exact_unit) {
  EXPECT_EQ(format_duration(250ms), "250ms");
  EXPECT_EQ(format_duration(90s), "90s");
  EXPECT_EQ(format_duration(120s), "2m");
  EXPECT_EQ(format_duration(7 * 24h), "7d");
  EXPECT_EQ(format_duration(0ms), "0s");
  EXPECT_EQ(format_size(64ULL << 20), "64MiB");
  EXPECT_EQ(format_size(1'000'000), "1MB");
  EXPECT_EQ(format_size(1001), "1001B");
  EXPECT_EQ(format_size(0), "0B");
}

}  // namespace
}  // namespace outbox::config
