#pragma once

#include <chrono>
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
  /// the effect was already applied (the handler recognised the record, e.g. by the provider's transaction id):
  /// recorded in the dedupe store or inbox like done, committed past, and counted as a duplicate
  duplicate,
};

std::string_view to_string(outcome_kind k) noexcept;

/// A handler's result: done, duplicate, retry (optionally after a delay) or fatal, with a reason.
struct outcome {
  outcome_kind kind = outcome_kind::done;
  std::string reason;
  /// For fatal outcomes, the dead-letter `dlq_error_class`; empty means `fatal`.
  std::string error_class;
  /// For retry: wait at least this long before the next attempt (0: the retry schedule decides).
  std::chrono::milliseconds retry_delay{0};

  static outcome done() { return {}; }
  static outcome duplicate() { return {outcome_kind::duplicate, {}, {}, {}}; }
  static outcome retry(std::string why) { return {outcome_kind::retry, std::move(why), {}, {}}; }
  /// Retry no sooner than `delay` from now (HTTP 429/503 `Retry-After`, "the provider says try later"). In
  /// process the next attempt waits `delay` instead of the schedule's delay (the schedule still decides whether
  /// there is one); a record leaving for `retry.topics` goes to the first remaining entry whose delay is at least
  /// `delay`, or the last entry when none is that long.
  static outcome retry_after(std::chrono::milliseconds delay, std::string why) {
    return {outcome_kind::retry, std::move(why), {}, delay};
  }
  static outcome fatal(std::string why, std::string error_class = {}) {
    return {outcome_kind::fatal, std::move(why), std::move(error_class), {}};
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
