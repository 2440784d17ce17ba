// The consumer SDK's reading of a record's headers: the event id a dedupe store keys on, the `retry_*`
// bookkeeping of a retry-tier copy (record_format::retry_copy::read, as retry_flow reads it) and
// `dlq_replay_count`. What read() returns must be in the bounds the retry flow relies on, and writing it back
// as headers and reading those again must give the same copy.
//
// Input: NUL-separated header names and values, in pairs.
#include "outbox/base/record_format.hpp"
#include "outbox/base/text.hpp"
#include "outbox/consumer/record.hpp"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>

#include "fuzz_input.hpp"

namespace {

namespace rf = outbox::record_format;

bool same(const rf::retry_copy& a, const rf::retry_copy& b) {
  return a.from.topic == b.from.topic && a.from.partition == b.from.partition && a.from.offset == b.from.offset &&
         a.from.timestamp_ms == b.from.timestamp_ms && a.consumer_group == b.consumer_group && a.tier == b.tier &&
         a.attempts == b.attempts && a.due_ms == b.due_ms && a.first_failure_ms == b.first_failure_ms &&
         a.reason == b.reason;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  outbox::fuzz::input in(data, size);
  outbox::consumer::record r;
  r.topic = "orders";
  while (!in.empty()) {
    std::string name(in.until('\0'));
    std::string value(in.until('\0'));
    r.headers.emplace_back(std::move(name), std::move(value));
  }

  if (const auto id = r.header(rf::k_event_id)) {
    const auto problem = rf::event_id_problem(*id);
    if (!problem && (id->empty() || id->size() > rf::k_max_event_id || !outbox::valid_utf8(*id))) {
      outbox::fuzz::violated();
    }
  }
  if (const auto n = r.header(rf::k_dlq_replay_count)) (void)outbox::parse_int64(*n);

  const auto copy = rf::retry_copy::read([&r](std::string_view name) { return r.header(name); });
  if (copy.tier < -1 || copy.tier > 1'000'000 || copy.attempts < 0 || copy.attempts > 1'000'000 ||
      copy.from.partition < -1) {
    outbox::fuzz::violated();
  }
  outbox::consumer::record parked;
  for (auto& [k, v] : copy.headers()) parked.headers.emplace_back(std::move(k), std::move(v));
  const auto again = rf::retry_copy::read([&parked](std::string_view name) { return parked.header(name); });
  rf::retry_copy expected = copy;
  expected.reason = outbox::cut_utf8(copy.reason, rf::k_max_error_message);
  if (!same(again, expected)) outbox::fuzz::violated();
  return 0;
}
