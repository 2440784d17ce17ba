#include "outbox/consumer/record.hpp"

namespace outbox::consumer {

std::optional<std::string_view> record::header(std::string_view name) const noexcept {
  for (const auto& [k, v] : headers) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

std::string_view record::event_id() const noexcept { return header("event_id").value_or(std::string_view()); }

}  // namespace outbox::consumer
