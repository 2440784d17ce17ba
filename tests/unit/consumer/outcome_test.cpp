#include "outbox/consumer/deserialize.hpp"
#include "outbox/consumer/outcome.hpp"
#include "outbox/consumer/record.hpp"
#include "outbox/base/error.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <pqxx/except>

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

outcome classified(const auto& e, const classifier& user = {}) {
  try {
    throw e;
  } catch (...) {
    return outcome_from_exception(std::current_exception(), user);
  }
}

outcome sql(const char* sqlstate) { return classified(pqxx::sql_error("ERROR: test", "SELECT 1", sqlstate)); }

TEST(error_classification, json_shape_errors_and_sqlstate_classes_22_23_42_are_fatal) {
  const auto j = nlohmann::json::parse(R"({"amount_cents": "12.50"})");
  try {
    static_cast<void>(j.at("amount_cents").get<std::int64_t>());
    FAIL() << "a string is not an integer";
  } catch (...) {
    const outcome o = outcome_from_exception(std::current_exception());
    EXPECT_EQ(o.kind, outcome_kind::fatal);
    EXPECT_EQ(o.error_class, "deserialization");
  }
  try {
    static_cast<void>(j.at("account_id"));
    FAIL() << "no such field";
  } catch (...) {
    EXPECT_EQ(outcome_from_exception(std::current_exception()).kind, outcome_kind::fatal) << "out_of_range";
  }
  for (const char* state : {"22003", "22P02", "23505", "23503", "42P01", "42501"}) {
    const outcome o = sql(state);
    EXPECT_EQ(o.kind, outcome_kind::fatal) << state;
    EXPECT_NE(o.reason.find(state), std::string::npos) << "the reason names the SQLSTATE: " << o.reason;
  }
}

TEST(error_classification, lost_connections_commits_in_doubt_and_transient_sqlstates_are_infrastructure) {
  EXPECT_EQ(classified(pqxx::broken_connection("server closed the connection")).kind, outcome_kind::infrastructure);
  EXPECT_EQ(classified(pqxx::in_doubt_error("COMMIT sent, no answer")).kind, outcome_kind::infrastructure);
  for (const char* state : {"40001", "40P01", "55P03", "08006", "57P01", "53300"}) {
    EXPECT_EQ(sql(state).kind, outcome_kind::infrastructure) << state;
  }
  EXPECT_EQ(classified(outbox_error("dedupe", "redis: LOADING", retry_class::retryable)).kind,
            outcome_kind::infrastructure);
}

TEST(error_classification, the_rest_retries) {
  EXPECT_EQ(sql("P0001").kind, outcome_kind::retry) << "a RAISE in a function";
  EXPECT_EQ(classified(std::runtime_error("HTTP 502 from the provider")).kind, outcome_kind::retry);
  EXPECT_EQ(classified(outbox_error("inbox", "bad", retry_class::fatal)).kind, outcome_kind::retry);
}

TEST(error_classification, the_services_classifier_is_asked_first_and_may_pass) {
  struct invalid_signature : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  const classifier mine = [](const std::exception& e) -> std::optional<outcome> {
    if (dynamic_cast<const invalid_signature*>(&e) != nullptr) return outcome::fatal(e.what(), "bad_signature");
    if (const auto* s = dynamic_cast<const pqxx::sql_error*>(&e); s != nullptr && s->sqlstate() == "23505") {
      return outcome::duplicate();  // the provider's id is already in the ledger
    }
    return std::nullopt;
  };
  const outcome sig = classified(invalid_signature("signature mismatch"), mine);
  EXPECT_EQ(sig.kind, outcome_kind::fatal);
  EXPECT_EQ(sig.error_class, "bad_signature");
  EXPECT_EQ(classified(pqxx::sql_error("dup", "INSERT", "23505"), mine).kind, outcome_kind::duplicate);
  EXPECT_EQ(classified(pqxx::sql_error("x", "UPDATE", "40001"), mine).kind, outcome_kind::infrastructure)
      << "nullopt: the defaults";
  const classifier throws = [](const std::exception&) -> std::optional<outcome> { throw std::logic_error("bug"); };
  EXPECT_EQ(classified(std::runtime_error("x"), throws).kind, outcome_kind::retry);
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
