#include "outbox/config/config_error.hpp"

namespace outbox::config {
namespace {

std::string join(const std::vector<diagnostic>& errors) {
  std::string out;
  for (const auto& d : errors) {
    if (!out.empty()) out += '\n';
    out += d.to_string();
  }
  return out;
}

}  // namespace

std::string diagnostic::to_string() const {
  std::string out = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  if (!path.empty()) out += path + ": ";
  return out + message;
}

config_error::config_error(std::vector<diagnostic> errors)
    : outbox_error("config", join(errors), retry_class::fatal), m_errors(std::move(errors)) {}

}  // namespace outbox::config
