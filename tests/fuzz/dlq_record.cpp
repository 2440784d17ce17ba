// outboxctl's reading of a dead letter, whichever stack wrote it (the consumer SDK's `dlq_*`, the relay's
// `outbox_dlq_*`, Spring Kafka's `kafka_dlt-*` with its binary numbers, Kafka Connect's `__connect.errors.*`),
// what `dlq list` / `show` print of it, what a replay sends, and the --since/--until times.
//
// Input: a filter text (--since), a NUL, the record's key, a NUL, its value, a NUL, then NUL-separated header
// names and values in pairs; a value of a single 0x01 byte is a null header.
#include "outbox/base/record_format.hpp"

#include "dlq_record.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace outbox::ctl;
  outbox::fuzz::input in(data, size);
  const std::string since(in.until('\0'));
  dlq_record r;
  r.partition = 2;
  r.offset = 41;
  r.timestamp_ms = 1'764'633'600'000;
  r.key = std::string(in.until('\0'));
  r.value = std::string(in.until('\0'));
  while (!in.empty()) {
    header h{std::string(in.until('\0')), std::string(in.until('\0'))};
    if (h.value == "\x01") h.value.reset();
    r.headers.push_back(std::move(h));
  }

  const auto now = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'764'633'600'000));
  dlq_filter filter;
  filter.since_ms = parse_time(since, now);
  filter.error_contains = since;
  if (filter.since_ms) (void)format_time(*filter.since_ms);
  (void)parse_duration(since);
  (void)filter.matches(r);

  const dlq_origin o = interpret(r);
  (void)to_string(o.format);
  (void)not_replayable(o);
  (void)format_time(first_seen_ms(r, o));
  for (const bool to_replay : {false, true}) {
    const auto replayed = replay_headers(r, o, to_replay);
    if (replayed.empty()) outbox::fuzz::violated();
  }
  for (const auto& h : r.headers) {
    (void)printable(h.name, 40);
    if (h.value) {
      (void)header_number(*h.value);
      (void)printable(*h.value, 3);
      (void)base64(*h.value);
    }
  }
  (void)printable(*r.value, 60);
  return 0;
}
