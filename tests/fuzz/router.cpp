// One outbox row or one logical-message envelope through the router: the row's columns (the id, the
// aggregate, the payload as jsonb or bytea, the headers column as jsonb, json, text or a wrong type) or the
// envelope's JSON, with or without sink.allowed_topics.
//
// Input: a mode byte (bit 0 envelope, bit 1 bytea payload, bits 2-3 the headers column's type, bit 4
// allowed_topics), then for a row six NUL-separated columns, each a kind byte ('n' NULL, 'u' unchanged TOAST,
// 'b' binary, anything else text) and its text; for an envelope the prefix, a NUL and the content.
#include "outbox/base/text.hpp"
#include "outbox/config/relay_config.hpp"
#include "outbox/relay/pg_types.hpp"
#include "outbox/relay/pgoutput_decoder.hpp"
#include "outbox/relay/router.hpp"
#include "outbox/relay/topic_template.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "fuzz_input.hpp"

namespace {

using namespace outbox::relay;

outbox::config::relay_config make_config(bool allowed_topics) {
  outbox::config::relay_config c;
  outbox::config::table_source t;
  t.schema = "public";
  t.table = "outbox";
  t.columns = {"id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers"};
  c.source.tables.push_back(t);
  c.source.logical_messages = outbox::config::logical_messages_source{"outbox"};
  c.sink.topic_template = "{aggregate_type}.{event_type}";
  if (allowed_topics) c.sink.allowed_topics = {"orders.created", "^payments\\.[a-z_]+$"};
  return c;
}

constexpr std::array<std::uint32_t, 4> k_headers_types = {pg_types::jsonb, pg_types::json, pg_types::text, 23};

relation make_relation(std::uint32_t oid, bool bytea_payload, std::uint32_t headers_type) {
  relation rel{oid, "public", "outbox", 'd', {}};
  rel.columns = {{"id", pg_types::uuid, -1, true},
                 {"aggregate_type", pg_types::text, -1, false},
                 {"aggregate_id", pg_types::text, -1, false},
                 {"event_type", pg_types::text, -1, false},
                 {"payload", bytea_payload ? pg_types::bytea : pg_types::jsonb, -1, false},
                 {"headers", headers_type, -1, false}};
  return rel;
}

/// A router per allowed_topics setting, each knowing the eight shapes of public.outbox by OID.
struct fixture {
  router routers[2] = {router(make_config(false)), router(make_config(true))};
  std::vector<relation> relations;

  fixture() {
    for (std::uint32_t i = 0; i < 8; ++i) {
      relations.push_back(make_relation(16385 + i, (i & 1U) != 0, k_headers_types[i >> 1U]));
      for (auto& r : routers) {
        if (r.on_relation(relations.back())) outbox::fuzz::violated();
      }
    }
  }
};

void check(const routed& out) {
  if (out.what != routed::outcome::record) return;
  const record_view& rec = *out.record;
  if (!legal_topic(rec.topic) || out.row_id.empty() || rec.headers.size() < 7) outbox::fuzz::violated();
  if (rec.headers[0].name != "event_id" || rec.headers[0].value != out.row_id) outbox::fuzz::violated();
  for (const auto& h : rec.headers) {
    if (h.name.empty()) outbox::fuzz::violated();
  }
  (void)kafka_record::of(rec).byte_size();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static fixture f;
  outbox::fuzz::input in(data, size);
  const std::uint8_t mode = in.byte();
  router& r = f.routers[(mode >> 4U) & 1U];
  const tx_context tx{0x16'B374D848, 771, 1'764'633'600'000};
  if ((mode & 1U) != 0) {
    logical_message msg{true, 0x16'B374D800, in.until('\0'), in.rest()};
    check(r.route_message(msg, tx));
    return 0;
  }
  const relation& rel = f.relations[(mode >> 1U) & 7U];
  std::array<tuple_value, 6> values{};
  for (auto& v : values) {
    const std::string_view field = in.until('\0');
    const char kind = field.empty() ? 'n' : field.front();
    switch (kind) {
      case 'n':
        v = {tuple_value::kind::null, {}};
        break;
      case 'u':
        v = {tuple_value::kind::unchanged_toast, {}};
        break;
      case 'b':
        v = {tuple_value::kind::binary, field.substr(1)};
        break;
      default:
        v = {tuple_value::kind::text, field.substr(1)};
    }
  }
  check(r.route_insert(rel, values, tx));
  return 0;
}
