#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace outbox::config::detail {

/// Edits (insert, delete, replace, swap of neighbours) that turn `a` into `b`.
std::size_t edit_distance(std::string_view a, std::string_view b);

/// The candidate closest to `word`, if it is close enough to be a likely typo; empty otherwise.
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

/// `a, b, c`, each in backquotes.
std::string quoted_list(const std::vector<std::string>& items);

}  // namespace outbox::config::detail
