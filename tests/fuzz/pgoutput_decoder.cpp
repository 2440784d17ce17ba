// A stream of pgoutput messages (each after a 2-byte length) through one decoder, whose relation cache carries
// from message to message, and every decoded event through a router for public.outbox and the "outbox" prefix,
// as the relay's loop hands them on.
#include "outbox/base/error.hpp"
#include "outbox/config/relay_config.hpp"
#include "outbox/relay/pgoutput_decoder.hpp"
#include "outbox/relay/router.hpp"

#include <cstddef>
#include <cstdint>
#include <variant>

#include "fuzz_input.hpp"

namespace {

outbox::config::relay_config make_config() {
  outbox::config::relay_config c;
  outbox::config::table_source t;
  t.schema = "public";
  t.table = "outbox";
  t.columns = {"id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers"};
  c.source.tables.push_back(t);
  c.source.logical_messages = outbox::config::logical_messages_source{"outbox"};
  c.sink.topic_template = "{aggregate_type}";
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace outbox::relay;
  static const outbox::config::relay_config config = make_config();
  outbox::fuzz::input in(data, size);
  pgoutput_decoder decoder;
  router r(config);
  tx_context tx;
  lsn_t at = 0x16'B374D848;
  while (!in.empty()) {
    const auto payload = in.framed();
    at += payload.size();
    try {
      const pg_event ev = decoder.decode(payload, at);
      if (const auto* b = std::get_if<begin_msg>(&ev)) {
        tx = tx_context{b->final_lsn, b->xid, b->commit_time_us / 1000};
      } else if (const auto* rel = std::get_if<relation_msg>(&ev)) {
        if (decoder.find(rel->rel->oid) != rel->rel) outbox::fuzz::violated();
        (void)r.on_relation(*rel->rel);
      } else if (const auto* ins = std::get_if<insert_msg>(&ev)) {
        if (ins->values.size() != ins->rel->columns.size()) outbox::fuzz::violated();
        const routed out = r.route_insert(*ins->rel, ins->values, tx);
        if (out.what == routed::outcome::record && out.record->byte_size() == 0) outbox::fuzz::violated();
      } else if (const auto* msg = std::get_if<logical_message>(&ev)) {
        (void)r.route_message(*msg, tx);
      }
    } catch (const outbox::outbox_error&) {
      // the relay stops on a decode error; the fuzzer goes on with the next message
    }
  }
  return 0;
}
