#include "outbox/consumer/deserialize.hpp"

#include "outbox/consumer/outcome.hpp"

#include <string>

namespace outbox::consumer {
namespace {

std::string where(const record& r) {
  return r.topic + "[" + std::to_string(r.partition) + "]@" + std::to_string(r.offset);
}

}  // namespace

std::string_view value_of(const record& r) {
  if (!r.value) throw deserialization_error("record " + where(r) + " has no value (tombstone)");
  return *r.value;
}

nlohmann::json parse_json(const record& r) {
  const std::string_view text = value_of(r);
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) throw deserialization_error("record " + where(r) + " value is not valid JSON");
  return j;
}

}  // namespace outbox::consumer
