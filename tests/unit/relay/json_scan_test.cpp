#include "json_scan.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace outbox::relay {
namespace {

/// `{"k": "<body>"}` read as an object: true and the body as written, or false.
bool scans(const std::string& body, std::string* raw = nullptr) {
  std::vector<json_member> members;
  std::string error;
  const std::string text = "{\"k\": \"" + body + "\"}";  // the members are views into it
  const bool ok = json_scan::object(text, members, error);
  if (ok && raw != nullptr) *raw = std::string(members.at(0).raw);
  return ok;
}

TEST(json_scan, a_string_is_read_to_its_closing_quote_wherever_a_special_byte_falls_in_its_eight_byte_steps) {
  // String bodies are skipped eight plain ASCII bytes at a time: a quote, a backslash, a control character or a
  // non-ASCII byte at any offset, in a step or just after one, must still be seen.
  for (std::size_t at = 0; at < 24; ++at) {
    const std::string before(at, 'a');
    const std::string after(24 - at, 'b');
    std::string raw;
    ASSERT_TRUE(scans(before + "\\\"" + after, &raw)) << "an escaped quote at " << at;
    EXPECT_EQ(raw, "\"" + before + "\\\"" + after + "\"");
    EXPECT_TRUE(scans(before + "\\\\" + after)) << "an escaped backslash at " << at;
    EXPECT_TRUE(scans(before + "\\u00e4" + after)) << "a \\u escape at " << at;
    EXPECT_TRUE(scans(before + "\xc3\xa4" + after)) << "two-byte UTF-8 at " << at;
    EXPECT_TRUE(scans(before + "\xe2\x82\xac" + after)) << "three-byte UTF-8 at " << at;
    EXPECT_TRUE(scans(before + "\x7f" + after)) << "DEL is not a control character in JSON, at " << at;
    EXPECT_FALSE(scans(before + "\n" + after)) << "a raw newline at " << at;
    EXPECT_FALSE(scans(before + std::string(1, '\x1f') + after)) << "0x1f at " << at;
    EXPECT_FALSE(scans(before + std::string(1, '\0') + after)) << "NUL at " << at;
    EXPECT_FALSE(scans(before + "\xff" + after)) << "0xff at " << at;
    EXPECT_FALSE(scans(before + "\xc3" + after)) << "a lone lead byte at " << at;
    EXPECT_FALSE(scans(before + "\\x" + after)) << "an unknown escape at " << at;
    // A quote ends the string where it is: what follows it is not a string any more.
    EXPECT_FALSE(scans(before + "\"" + after)) << "a bare quote at " << at;
  }
}

TEST(json_scan, a_string_that_ends_inside_an_eight_byte_step_is_unterminated) {
  std::vector<json_member> members;
  std::string error;
  for (std::size_t n = 0; n < 20; ++n) {
    EXPECT_FALSE(json_scan::object("{\"k\": \"" + std::string(n, 'x'), members, error)) << n;
    EXPECT_NE(error.find("unterminated string"), std::string::npos) << error;
  }
  ASSERT_TRUE(json_scan::object("{\"0123456789abcdef\": \"0123456789abcdef\"}", members, error)) << error;
  ASSERT_EQ(members.size(), 1U);
  EXPECT_EQ(members[0].raw_name, "0123456789abcdef");
  EXPECT_EQ(members[0].raw, "\"0123456789abcdef\"");
}

}  // namespace
}  // namespace outbox::relay
