#include "outbox/dedupe/redis_url.hpp"

#include <gtest/gtest.h>

namespace outbox::dedupe {
namespace {

TEST(redis_url, host_and_port) {
  const auto ep = parse_redis_url("redis://127.0.0.1:16379");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "127.0.0.1");
  EXPECT_EQ(ep->port, 16379);
  EXPECT_EQ(ep->db, 0);
  EXPECT_TRUE(ep->user.empty());
  EXPECT_TRUE(ep->password.empty());
}

TEST(redis_url, defaults_the_port_and_reads_the_database) {
  const auto ep = parse_redis_url("redis://cache.internal/3");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "cache.internal");
  EXPECT_EQ(ep->port, 6379);
  EXPECT_EQ(ep->db, 3);
  EXPECT_EQ(parse_redis_url("redis://h:1/")->db, 0);
}

TEST(redis_url, user_and_password_percent_decoded) {
  const auto ep = parse_redis_url("redis://app:p%40ss%3Aw@h:6380/2");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->user, "app");
  EXPECT_EQ(ep->password, "p@ss:w");
  EXPECT_EQ(ep->host, "h");
  EXPECT_EQ(ep->port, 6380);
  EXPECT_EQ(ep->db, 2);
}

TEST(redis_url, password_only) {
  auto ep = parse_redis_url("redis://:secret@h");
  ASSERT_TRUE(ep);
  EXPECT_TRUE(ep->user.empty());
  EXPECT_EQ(ep->password, "secret");
  ep = parse_redis_url("redis://secret@h");
  ASSERT_TRUE(ep);
  EXPECT_TRUE(ep->user.empty());
  EXPECT_EQ(ep->password, "secret");
}

TEST(redis_url, bracketed_ipv6_host) {
  const auto ep = parse_redis_url("redis://[::1]:7000");
  ASSERT_TRUE(ep);
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->port, 7000);
}

TEST(redis_url, rejects_malformed_urls) {
  for (const char* bad :
       {"", "http://h:1", "redis://", "redis://:1", "redis://h:", "redis://h:0", "redis://h:70000", "redis://h:x",
        "redis://h/x", "redis://h/-1", "redis://[::1", "redis://[::1]x", "redis://u:%zz@h", "redis://u:%4@h"}) {
    EXPECT_FALSE(parse_redis_url(bad)) << bad;
  }
}

}  // namespace
}  // namespace outbox::dedupe
