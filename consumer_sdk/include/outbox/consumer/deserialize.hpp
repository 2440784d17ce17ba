#pragma once

#include "outbox/consumer/record.hpp"

#include <nlohmann/json.hpp>

#include <string_view>

namespace outbox::consumer {

/// The record's value; throws deserialization_error for a tombstone.
std::string_view value_of(const record& r);

/// The record's value parsed as JSON; throws deserialization_error (fatal) for a tombstone or invalid JSON.
nlohmann::json parse_json(const record& r);

}  // namespace outbox::consumer
