#include "outbox/test/environment.hpp"

#include <gtest/gtest.h>

#include <exception>
#include <iostream>

namespace {

/// Checks once, before any test, that the services are configured; a clear failure otherwise.
class services_environment : public ::testing::Environment {
 public:
  void SetUp() override {
    try {
      std::cout << "[ seed     ] OUTBOX_TEST_SEED=" << outbox::test::run_seed() << "\n";
      outbox::test::require_services();
    } catch (const std::exception& e) {
      FAIL() << e.what();
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::AddGlobalTestEnvironment(new services_environment);
  return RUN_ALL_TESTS();
}
