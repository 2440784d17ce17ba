#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace outbox::relay {

/// A position in PostgreSQL's write-ahead log.
using lsn_t = std::uint64_t;

/// Formats an LSN as "X/XXXXXXXX": high 32 bits in hex, low 32 bits as eight hex digits.
std::string format_lsn(lsn_t lsn);

/// Parses "16/B374D848" or PostgreSQL's unpadded "0/16B3748"; nullopt on anything else.
std::optional<lsn_t> parse_lsn(std::string_view text);

}  // namespace outbox::relay
