#include "outbox/consumer/outcome.hpp"

#include "outbox/base/error.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/except>

namespace outbox::consumer {

std::string_view to_string(outcome_kind k) noexcept {
  switch (k) {
    case outcome_kind::done:
      return "done";
    case outcome_kind::retry:
      return "retry";
    case outcome_kind::fatal:
      return "fatal";
    case outcome_kind::duplicate:
      return "duplicate";
    case outcome_kind::infrastructure:
      return "infrastructure";
  }
  return "retry";
}

namespace {

bool starts_with(const std::string& s, std::string_view prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

}  // namespace

outcome default_classification(const std::exception& e) noexcept {
  try {
    if (const auto* d = dynamic_cast<const deserialization_error*>(&e))
      return outcome::fatal(d->what(), "deserialization");
    if (dynamic_cast<const fatal_error*>(&e) != nullptr) return outcome::fatal(e.what());
    if (dynamic_cast<const nlohmann::json::exception*>(&e) != nullptr) {
      return outcome::fatal(std::string("the value does not have the expected shape: ") + e.what(), "deserialization");
    }
    if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
      return outcome::infrastructure(std::string("PostgreSQL connection lost: ") + e.what());
    }
    if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
      return outcome::infrastructure(std::string("commit in doubt: ") + e.what());
    }
    if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
      const std::string state = sql->sqlstate();
      const std::string text = std::string(e.what()) + " (SQLSTATE " + state + ")";
      if (starts_with(state, "22") || starts_with(state, "23") || starts_with(state, "42")) return outcome::fatal(text);
      if (!state.empty() && classify_sqlstate(state) != retry_class::fatal) return outcome::infrastructure(text);
      return outcome::retry(text);
    }
    if (const auto* o = dynamic_cast<const outbox_error*>(&e); o != nullptr && o->value().retry != retry_class::fatal) {
      return outcome::infrastructure(e.what());
    }
    return outcome::retry(e.what());
  } catch (...) {
    // Building the outcome itself failed (out of memory): retrying is the only safe answer.
    return outcome{outcome_kind::retry, {}, {}, {}};
  }
}

outcome outcome_from_exception(const std::exception_ptr& e, const classifier& user) noexcept {
  try {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      if (user) {
        if (auto o = user(ex)) return std::move(*o);
      }
      return default_classification(ex);
    } catch (...) {
      return outcome::retry("handler threw a non-standard exception");
    }
  } catch (...) {
    // The classifier threw, or building the outcome failed (out of memory): retrying is the only safe answer.
    return outcome{outcome_kind::retry, "the error classifier threw", {}, {}};
  }
}

}  // namespace outbox::consumer
