#include "outbox/dedupe/store.hpp"

namespace outbox::dedupe {

std::string_view to_string(claim_result r) noexcept {
  switch (r) {
    case claim_result::claimed:
      return "claimed";
    case claim_result::duplicate:
      return "duplicate";
    case claim_result::in_progress:
      return "in_progress";
  }
  return "unknown";
}

}  // namespace outbox::dedupe
