#include "outbox/base/log.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace outbox::log {
namespace {

TEST(redact_dsn, keyword_value_password) {
  EXPECT_EQ(redact_dsn("host=127.0.0.1 user=app password=s3cret dbname=x"),
            "host=127.0.0.1 user=app password=***** dbname=x");
  EXPECT_EQ(redact_dsn("password = 'a b\\'c' host=h"), "password = ***** host=h");
  EXPECT_EQ(redact_dsn("host=h PASSWORD=x"), "host=h PASSWORD=*****");
}

TEST(redact_dsn, uri_password) {
  EXPECT_EQ(redact_dsn("postgresql://app:s3cret@127.0.0.1:5432/db"), "postgresql://app:*****@127.0.0.1:5432/db");
  EXPECT_EQ(redact_dsn("postgres://app@127.0.0.1/db"), "postgres://app@127.0.0.1/db");
}

TEST(parse_level, accepts_known_levels_only) {
  EXPECT_EQ(parse_level("warn"), level::warn);
  EXPECT_EQ(parse_level("trace"), level::trace);
  EXPECT_FALSE(parse_level("WARN").has_value());
  EXPECT_FALSE(parse_level("verbose").has_value());
}

TEST(write, json_line_has_fields) {
  configure(level::info, format::json);
  testing::internal::CaptureStderr();
  info("relay", "streaming", {{"lsn", "0/16B3748"}, {"slot", std::string("s1")}, {"n", 3}});
  debug("relay", "hidden");
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_NE(out.find(R"("level":"info","component":"relay","msg":"streaming","lsn":"0/16B3748","slot":"s1","n":3})"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("hidden"), std::string::npos);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1);
}

TEST(write, text_format_is_one_readable_line) {
  configure(level::debug, format::text);
  testing::internal::CaptureStderr();
  warn("kafka", "all brokers down", {{"reason", "connect refused"}, {"inflight", 12}});
  const std::string out = testing::internal::GetCapturedStderr();
  configure(level::info, format::json);
  EXPECT_NE(out.find(" warn [kafka] all brokers down reason=connect refused inflight=12\n"), std::string::npos) << out;
  EXPECT_EQ(out.find('{'), std::string::npos) << "text lines are not JSON: " << out;
}

}  // namespace
}  // namespace outbox::log
