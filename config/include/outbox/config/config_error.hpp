#pragma once

#include "outbox/base/error.hpp"

#include <string>
#include <vector>

namespace outbox::config {

/// One problem in a config file, at a 1-based line and column.
struct diagnostic {
  std::string file;
  int line = 1;
  int column = 1;
  std::string path;  ///< dotted key path, e.g. `source.tables[0].name`; empty for file-level problems
  std::string message;

  /// `file:line:column: key.path: message`
  [[nodiscard]] std::string to_string() const;
};

/// Every problem found in one config file; binaries print `what()` and exit 2.
class config_error : public outbox_error {
 public:
  explicit config_error(std::vector<diagnostic> errors);

  [[nodiscard]] const std::vector<diagnostic>& errors() const noexcept { return m_errors; }

 private:
  std::vector<diagnostic> m_errors;
};

}  // namespace outbox::config
