#include "outbox/config/docs.hpp"
#include "outbox/config/relay_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace outbox::config {
namespace {

using ::testing::HasSubstr;

TEST(config_docs, committed_reference_is_up_to_date) {
  std::ifstream in(std::string(OUTBOX_SOURCE_DIR) + "/docs/configuration.md", std::ios::binary);
  std::ostringstream committed;
  committed << in.rdbuf();
  EXPECT_TRUE(committed.str() == reference_markdown())
      << "docs/configuration.md is stale: run build/config/outbox-config-docs > docs/configuration.md";
}

TEST(config_docs, every_declared_key_has_a_row) {
  const std::string md = markdown_reference(relay_schema());
  EXPECT_THAT(md, HasSubstr("| `source.dsn` | string | **required** |  | PostgreSQL connection"));
  EXPECT_THAT(md, HasSubstr("| `source.tables[].columns.payload` | string (1 to 63 bytes) | `payload` |"));
  EXPECT_THAT(md, HasSubstr("| `relay.max_inflight_bytes` | size (more than 0) | `1MiB` | bytes |"));
  EXPECT_THAT(md, HasSubstr("| `sink.delivery` | `at_least_once` \\| `exactly_once` | `at_least_once` |"));
  EXPECT_THAT(md, HasSubstr("| `source.logical_messages` | section | absent |"));
  EXPECT_THAT(md, HasSubstr("- At least one of `source.tables`"));
}

}  // namespace
}  // namespace outbox::config
