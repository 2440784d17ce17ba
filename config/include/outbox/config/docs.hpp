#pragma once

#include "outbox/config/schema.hpp"

#include <string>

namespace outbox::config {

/// A Markdown table (key, type, default, unit, description) and the rules of one schema.
std::string markdown_reference(const schema& s);

/// The whole configuration reference committed as docs/configuration.md.
std::string reference_markdown();

}  // namespace outbox::config
