#pragma once

#include <cstdint>
#include <string>

namespace outbox::relay::pg_types {

/// Built-in type OIDs the relay treats specially (pg_type.h); any other type is published by its text output.
inline constexpr std::uint32_t bytea = 17;
inline constexpr std::uint32_t name = 19;
inline constexpr std::uint32_t text = 25;
inline constexpr std::uint32_t json = 114;
inline constexpr std::uint32_t bpchar = 1042;
inline constexpr std::uint32_t varchar = 1043;
inline constexpr std::uint32_t uuid = 2950;
inline constexpr std::uint32_t jsonb = 3802;

/// A readable name for an OID in messages ("jsonb", "type oid 16384").
std::string type_name(std::uint32_t oid);

}  // namespace outbox::relay::pg_types
