// A relay config file through parse_relay_config: YAML, ${VAR} interpolation, every key's type, unit and
// validator; a config that loads is printed redacted, as --check does.
#include "outbox/base/error.hpp"
#include "outbox/config/relay_config.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("OUTBOX_PG_DSN", "host=127.0.0.1 port=55432 dbname=outbox user=outbox password=secret", 1);
  setenv("OUTBOX_KAFKA_BROKERS", "127.0.0.1:19092", 1);
  setenv("OUTBOX_PG_PASSWORD", "secret", 1);
  setenv("EMPTY", "", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto c = outbox::config::parse_relay_config(text, "relay.yaml");
    (void)outbox::config::dump_redacted(c);
  } catch (const outbox::outbox_error&) {
    // config_error: every problem, each naming the file, line and key
  }
  return 0;
}
