#include "outbox/consumer/outcome.hpp"

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
  }
  return "retry";
}

outcome outcome_from_exception(const std::exception_ptr& e) noexcept {
  try {
    try {
      std::rethrow_exception(e);
    } catch (const deserialization_error& d) {
      return outcome::fatal(d.what(), "deserialization");
    } catch (const fatal_error& f) {
      return outcome::fatal(f.what());
    } catch (const std::exception& other) {
      return outcome::retry(other.what());
    } catch (...) {
      return outcome::retry("handler threw a non-standard exception");
    }
  } catch (...) {
    // Building the outcome itself failed (out of memory): retrying is the only safe answer.
    return outcome{outcome_kind::retry, {}, {}, {}};
  }
}

}  // namespace outbox::consumer
