#pragma once

#include "outbox/config/config_error.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace outbox::config::test_util {

/// The error lines `load` throws, or a test failure when it does not throw config_error.
inline std::vector<std::string> error_lines(const std::function<void()>& load) {
  try {
    load();
  } catch (const config_error& e) {
    std::vector<std::string> lines;
    for (const auto& d : e.errors()) lines.push_back(d.to_string());
    return lines;
  }
  ADD_FAILURE() << "expected a config_error";
  return {};
}

/// The single error line `load` throws.
inline std::string error_line(const std::function<void()>& load) {
  const auto lines = error_lines(load);
  EXPECT_EQ(lines.size(), 1U) << ::testing::PrintToString(lines);
  return lines.empty() ? std::string() : lines.front();
}

}  // namespace outbox::config::test_util
