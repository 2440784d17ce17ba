#include "outbox/consumer/record.hpp"

#include "outbox/base/record_format.hpp"

namespace outbox::consumer {

std::optional<std::string_view> record::header(std::string_view name) const noexcept {
  for (const auto& [k, v] : headers) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

std::string_view record::event_id() const noexcept {
  return header(record_format::k_event_id).value_or(std::string_view());
}

bool record::header_is_null(std::size_t i) const noexcept {
  for (const auto n : null_headers) {
    if (n == i) return true;
  }
  return false;
}

}  // namespace outbox::consumer
