#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace outbox::config::detail {

/// The result of expanding `${VAR}`, `${VAR:-default}` and `$$` in one scalar.
struct interpolation {
  std::string text;
  std::vector<std::string> errors;  ///< one per problem, naming the variable
};

/// Expands environment references; a `$` not followed by `{` or `$` is kept as is.
interpolation interpolate(std::string_view raw);

}  // namespace outbox::config::detail
