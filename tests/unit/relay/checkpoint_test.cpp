// The exactly_once checkpoint record: what the relay writes is what it reads back, and a damaged record is named.
#include "checkpoint.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace outbox::relay {
namespace {

using ::testing::HasSubstr;

TEST(checkpoint, round_trips_with_and_without_a_split_transaction) {
  checkpoint c;
  c.slot = "outbox_relay";
  c.system_id = "7301234567890123456";
  c.timeline = 2;
  c.end_lsn = 0x1'2345'6789ULL;
  c.written_at = "2026-12-02T01:00:00Z";
  std::string error;
  const auto back = decode_checkpoint(encode_checkpoint(c), error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(*back, c);
  EXPECT_THAT(encode_checkpoint(c), HasSubstr("\"end_lsn\":\"1/23456789\""));

  c.partial = partial_transaction{0x2'0000'0010ULL, 20000};
  const auto split = decode_checkpoint(encode_checkpoint(c), error);
  ASSERT_TRUE(split) << error;
  EXPECT_EQ(split->partial, c.partial);
}

TEST(checkpoint, a_damaged_record_says_what_is_wrong) {
  std::string error;
  EXPECT_FALSE(decode_checkpoint("not json", error));
  EXPECT_EQ(error, "not a JSON object");
  EXPECT_FALSE(decode_checkpoint(R"({"slot":"s","system_identifier":"1","timeline":1,"end_lsn":"zz"})", error));
  EXPECT_EQ(error, "end_lsn is not an LSN");
  EXPECT_FALSE(decode_checkpoint(R"({"slot":"s","timeline":1,"end_lsn":"0/1"})", error));
  EXPECT_THAT(error, HasSubstr("missing or wrong field"));
}

TEST(checkpoint, the_transactional_id_comes_from_the_database_and_the_slot_unless_set) {
  config::relay_config c;
  c.source.dsn = "host=db port=5432 dbname=payments user=relay";
  c.source.slot = "outbox_relay";
  EXPECT_EQ(transactional_id_of(c), "outbox-relay.payments.outbox_relay");
  c.sink.transactional_id = "payments-relay";
  EXPECT_EQ(transactional_id_of(c), "payments-relay");
}

}  // namespace
}  // namespace outbox::relay
