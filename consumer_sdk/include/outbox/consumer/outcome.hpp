#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <optional>
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
  /// a dependency failed, not the record (connection lost, commit in doubt, serialization failure, lock
  /// timeout): tried again with a capped backoff (200ms to 5s) until it answers, with the partition paused; no
  /// attempt is spent and the breaker does not count it
  infrastructure,
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
  static outcome infrastructure(std::string why) { return {outcome_kind::infrastructure, std::move(why), {}, {}}; }
};

/// A service's own error classification: the outcome for an exception a handler threw, or nullopt to leave it
/// to the defaults (default_classification). Runs on the processing thread; it must not throw.
using classifier = std::function<std::optional<outcome>(const std::exception&)>;

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

/// The defaults for an exception a handler threw:
/// - fatal: `fatal_error` and its subclasses (`deserialization_error` with error class `deserialization`),
///   nlohmann::json exceptions (a value of the wrong type, a missing field read with at(); class
///   `deserialization`), SQLSTATE classes 22 (data exception, e.g. 22003 an amount out of range), 23 (integrity
///   constraint) and 42 (syntax error or access rule);
/// - infrastructure: a lost connection (pqxx::broken_connection), a commit in doubt (pqxx::in_doubt_error), and
///   the SQLSTATEs classify_sqlstate does not call fatal (classes 08, 40 such as 40001 and 40P01, 53, 57, 58,
///   and 55006, 55P03);
/// - retry: everything else.
outcome default_classification(const std::exception& e) noexcept;

/// Maps an exception thrown by a handler: `user` first (when set and it answers), then default_classification;
/// a non-standard exception retries.
outcome outcome_from_exception(const std::exception_ptr& e, const classifier& user = {}) noexcept;

}  // namespace outbox::consumer
