#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>

namespace outbox::consumer {

/// What a handler decided about one record.
enum class outcome_kind {
  done,   ///< the effect is applied (or deliberately nothing to do): commit past the record
  retry,  ///< try the same record again later; later records of its partition wait
  fatal,  ///< retrying cannot help (bad input): produced to the dead-letter topic and committed past
};

std::string_view to_string(outcome_kind k) noexcept;

/// A handler's result: done, retry with a reason, or fatal with a reason.
struct outcome {
  outcome_kind kind = outcome_kind::done;
  std::string reason;
  /// For fatal outcomes, the dead-letter `dlq_error_class`; empty means `fatal`.
  std::string error_class;

  static outcome done() { return {}; }
  static outcome retry(std::string why) { return {outcome_kind::retry, std::move(why), {}}; }
  static outcome fatal(std::string why, std::string error_class = {}) {
    return {outcome_kind::fatal, std::move(why), std::move(error_class)};
  }
};

/// Thrown by a handler for a failure that retrying cannot fix; derive your own fatal errors from it.
class fatal_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A record whose key, value or headers cannot be read; always fatal.
class deserialization_error : public fatal_error {
 public:
  using fatal_error::fatal_error;
};

/// Maps an exception thrown by a handler: `fatal_error` and its subclasses are fatal (`deserialization_error`
/// with error class `deserialization`), anything else retries.
outcome outcome_from_exception(const std::exception_ptr& e) noexcept;

}  // namespace outbox::consumer
