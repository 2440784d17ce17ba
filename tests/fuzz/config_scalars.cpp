// The config loader's scalar readers on their own: `${VAR}` / `${VAR:-default}` / `$$` interpolation, durations
// and sizes. A duration or size that parses must print back to text that parses to the same value.
#include "outbox/config/units.hpp"

#include "interpolate.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("OUTBOX_KAFKA_BROKERS", "127.0.0.1:19092", 1);
  setenv("TIMEOUT", "10s", 1);
  setenv("EMPTY", "", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace outbox::config;
  outbox::fuzz::input in(data, size);
  const std::uint8_t mode = in.byte() % 3;
  const std::string_view text = in.rest();
  if (mode == 0) {
    const auto d = parse_duration(text);
    if (d.value.has_value() == !d.error.empty()) outbox::fuzz::violated();
    if (d && parse_duration(format_duration(*d.value)).value != d.value) outbox::fuzz::violated();
  } else if (mode == 1) {
    const auto s = parse_size(text);
    if (s.value.has_value() == !s.error.empty()) outbox::fuzz::violated();
    if (s && parse_size(format_size(*s.value)).value != s.value) outbox::fuzz::violated();
  } else {
    const auto out = detail::interpolate(text);
    if (text.find('$') == std::string_view::npos && (out.text != text || !out.errors.empty())) {
      outbox::fuzz::violated();
    }
  }
  return 0;
}
