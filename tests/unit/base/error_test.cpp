#include "outbox/base/error.hpp"

#include <gtest/gtest.h>

namespace outbox {
namespace {

TEST(classify_sqlstate, connection_and_rollback_classes) {
  EXPECT_EQ(classify_sqlstate("08001"), retry_class::retryable);  // cannot establish connection
  EXPECT_EQ(classify_sqlstate("08006"), retry_class::in_doubt);   // connection failure mid-statement
  EXPECT_EQ(classify_sqlstate("40001"), retry_class::retryable);  // serialization failure
  EXPECT_EQ(classify_sqlstate("40P01"), retry_class::retryable);  // deadlock
  EXPECT_EQ(classify_sqlstate("57P01"), retry_class::retryable);  // admin shutdown
  EXPECT_EQ(classify_sqlstate("55006"), retry_class::retryable);  // replication slot in use
}

TEST(classify_sqlstate, user_errors_are_fatal) {
  EXPECT_EQ(classify_sqlstate("42P01"), retry_class::fatal);  // undefined table
  EXPECT_EQ(classify_sqlstate("42501"), retry_class::fatal);  // insufficient privilege
  EXPECT_EQ(classify_sqlstate("23505"), retry_class::fatal);  // unique violation
  EXPECT_EQ(classify_sqlstate("22P02"), retry_class::fatal);  // invalid text representation
}

TEST(classify_sqlstate, malformed_code_is_in_doubt) {
  EXPECT_EQ(classify_sqlstate(""), retry_class::in_doubt);
  EXPECT_EQ(classify_sqlstate("0800"), retry_class::in_doubt);
}

TEST(outbox_error, carries_value) {
  const outbox_error e("config", "bad key", retry_class::fatal);
  EXPECT_STREQ(e.what(), "bad key");
  EXPECT_EQ(e.value().category, "config");
  EXPECT_FALSE(e.value().retryable());
}

}  // namespace
}  // namespace outbox
