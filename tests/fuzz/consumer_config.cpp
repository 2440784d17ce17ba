// A consumer config file through parse_consumer_config (dedupe stores, retry tiers and schedules, dead
// letters), with an application section of its own; a config that loads is printed redacted.
#include "outbox/base/error.hpp"
#include "outbox/config/consumer_config.hpp"
#include "outbox/config/schema.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("OUTBOX_PG_DSN", "host=127.0.0.1 port=55432 dbname=outbox user=outbox password=secret", 1);
  setenv("OUTBOX_KAFKA_BROKERS", "127.0.0.1:19092", 1);
  setenv("OUTBOX_REDIS_URL", "redis://127.0.0.1:16379/0", 1);
  setenv("LEDGER_PG_DSN", "host=127.0.0.1 dbname=ledger user=ledger", 1);
  setenv("EMPTY", "", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace outbox::config;
  static const std::vector<key_spec> app = {
      section("ledger", {string_key("dsn"), duration_key("poll"), size_key("batch"), string_list_key("accounts")})};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto c = parse_consumer_config(text, "consumer.yaml", app);
    (void)dump_redacted(c);
  } catch (const outbox::outbox_error&) {
    // config_error: every problem, each naming the file, line and key
  }
  return 0;
}
