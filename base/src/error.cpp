#include "outbox/base/error.hpp"

namespace outbox {

std::string_view to_string(retry_class c) noexcept {
  switch (c) {
    case retry_class::retryable:
      return "retryable";
    case retry_class::fatal:
      return "fatal";
    case retry_class::in_doubt:
      return "in_doubt";
  }
  return "fatal";
}

outbox_error::outbox_error(error e) : std::runtime_error(e.message), m_error(std::move(e)) {}

outbox_error::outbox_error(std::string category, std::string message, retry_class retry)
    : outbox_error(error{std::move(category), std::move(message), retry}) {}

retry_class classify_sqlstate(std::string_view sqlstate) noexcept {
  if (sqlstate.size() != 5) return retry_class::in_doubt;
  const std::string_view cls = sqlstate.substr(0, 2);
  // Class 08: connection exception; whether a statement in flight took effect is unknown.
  if (cls == "08") return sqlstate == "08001" || sqlstate == "08004" ? retry_class::retryable : retry_class::in_doubt;
  // Class 40: transaction rollback (serialization failure, deadlock): safe to run again.
  if (cls == "40") return retry_class::retryable;
  // Class 53: insufficient resources; 57: operator intervention (admin shutdown, cannot connect now).
  if (cls == "53" || cls == "57") return retry_class::retryable;
  // Class 55 object not in prerequisite state: 55006 object in use (e.g. slot active), 55P03 lock not available.
  if (sqlstate == "55006" || sqlstate == "55P03") return retry_class::retryable;
  // Class 58: system error (I/O) outside PostgreSQL.
  if (cls == "58") return retry_class::retryable;
  return retry_class::fatal;
}

}  // namespace outbox
