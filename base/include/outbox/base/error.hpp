#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace outbox {

/// Whether an operation that failed is worth trying again.
enum class retry_class {
  retryable,  ///< transient: the same call may succeed later (broker down, connection lost)
  fatal,      ///< retrying cannot help: fix the input, config or environment
  in_doubt,   ///< we do not know whether the other side took it (timeout after send)
};

std::string_view to_string(retry_class c) noexcept;

/// An error value: a stable category, a message for people, and its retry class.
struct error {
  std::string category;  ///< short stable code, e.g. "config", "replication", "kafka.delivery"
  std::string message;   ///< names the thing (key, table, topic, LSN) and what to do next
  retry_class retry = retry_class::fatal;

  [[nodiscard]] bool retryable() const noexcept { return retry == retry_class::retryable; }
};

/// The exception used at start-up and API boundaries; carries an `error`.
class outbox_error : public std::runtime_error {
 public:
  explicit outbox_error(error e);
  outbox_error(std::string category, std::string message, retry_class retry = retry_class::fatal);

  [[nodiscard]] const error& value() const noexcept { return m_error; }

 private:
  error m_error;
};

/// Classifies a PostgreSQL SQLSTATE (five characters) once, for every caller.
retry_class classify_sqlstate(std::string_view sqlstate) noexcept;

}  // namespace outbox
