#include "outbox/consumer/deserialize.hpp"
#include "outbox/consumer/outcome.hpp"
#include "outbox/consumer/record.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace outbox::consumer {
namespace {

struct bad_amount : fatal_error {
  using fatal_error::fatal_error;
};

outcome thrown(const auto& e) {
  try {
    throw e;
  } catch (...) {
    return outcome_from_exception(std::current_exception());
  }
}

TEST(outcome_mapping, ordinary_exceptions_retry_with_their_message) {
  const outcome o = thrown(std::runtime_error("connection reset"));
  EXPECT_EQ(o.kind, outcome_kind::retry);
  EXPECT_EQ(o.reason, "connection reset");
  EXPECT_EQ(thrown(std::logic_error("x")).kind, outcome_kind::retry);
  EXPECT_EQ(thrown(42).kind, outcome_kind::retry) << "even a non-standard exception";
}

TEST(outcome_mapping, fatal_errors_and_their_subclasses_are_fatal) {
  EXPECT_EQ(thrown(fatal_error("no")).kind, outcome_kind::fatal);
  const outcome o = thrown(bad_amount("amount_cents is negative"));
  EXPECT_EQ(o.kind, outcome_kind::fatal);
  EXPECT_EQ(o.reason, "amount_cents is negative");
  EXPECT_EQ(thrown(deserialization_error("not json")).kind, outcome_kind::fatal);
}

TEST(outcome_mapping, factories_and_names) {
  EXPECT_EQ(outcome::done().kind, outcome_kind::done);
  EXPECT_EQ(outcome::retry("later").reason, "later");
  EXPECT_EQ(outcome::fatal("never").kind, outcome_kind::fatal);
  EXPECT_EQ(to_string(outcome_kind::retry), "retry");
}

record sample() {
  record r;
  r.topic = "payments";
  r.partition = 2;
  r.offset = 41;
  r.value = R"({"account_id": "a1", "amount_cents": 1250})";
  r.headers = {{"event_type", "paid"}, {"event_id", "7f0c"}, {"event_id", "second"}};
  return r;
}

TEST(record, headers_and_event_id) {
  const record r = sample();
  EXPECT_EQ(r.event_id(), "7f0c") << "the first header of a name wins";
  EXPECT_EQ(r.header("event_type").value_or(""), "paid");
  EXPECT_FALSE(r.header("missing").has_value());
  EXPECT_EQ(record{}.event_id(), "");
}

TEST(deserialize, parses_json_values) {
  const auto j = parse_json(sample());
  EXPECT_EQ(j.at("amount_cents").get<int>(), 1250);
}

TEST(deserialize, invalid_json_and_tombstones_are_fatal) {
  record r = sample();
  r.value = "{not json";
  try {
    (void)parse_json(r);
    FAIL() << "no exception";
  } catch (const fatal_error& e) {
    EXPECT_NE(std::string(e.what()).find("payments[2]@41"), std::string::npos) << e.what();
  }
  r.value.reset();
  EXPECT_THROW((void)parse_json(r), deserialization_error);
  EXPECT_THROW((void)value_of(r), fatal_error);
}

}  // namespace
}  // namespace outbox::consumer
