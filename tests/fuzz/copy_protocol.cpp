// One CopyData message of the START_REPLICATION stream, as the replication stream hands it to
// parse_server_message, and the XLogData payload it carries, as the pgoutput decoder gets it.
#include "outbox/base/error.hpp"
#include "outbox/relay/copy_protocol.hpp"
#include "outbox/relay/pgoutput_decoder.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <variant>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace outbox::relay;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const server_message m = parse_server_message(bytes);
    if (const auto* x = std::get_if<xlog_data>(&m)) {
      if (x->payload.data() < bytes.data() || x->payload.data() + x->payload.size() != bytes.data() + bytes.size()) {
        outbox::fuzz::violated();
      }
      (void)from_pg_epoch_us(x->send_time_us);
      pgoutput_decoder decoder;
      (void)decoder.decode(x->payload, x->wal_start);
    } else {
      const auto& k = std::get<primary_keepalive>(m);
      (void)from_pg_epoch_us(k.send_time_us);
      const auto reply = make_standby_status_update(k.wal_end, k.wal_end, k.wal_end, k.send_time_us, k.reply_requested);
      if (reply.size() != 34) outbox::fuzz::violated();
    }
  } catch (const outbox::outbox_error&) {
    // a clear error is what bad input should get
  }
  return 0;
}
