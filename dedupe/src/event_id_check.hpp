#pragma once

#include "outbox/base/error.hpp"
#include "outbox/base/record_format.hpp"

#include <string>
#include <string_view>

namespace outbox::dedupe::detail {

/// Throws the fatal error every store gives for an event id it cannot key on (record_format::event_id_problem).
inline void check_event_id(std::string_view id) {
  if (auto problem = record_format::event_id_problem(id)) {
    throw outbox_error("dedupe", "event_id " + *problem + "; a dedupe store cannot key on it", retry_class::fatal);
  }
}

}  // namespace outbox::dedupe::detail
