#pragma once

#include "attempt.hpp"
#include "outbox/base/record_format.hpp"
#include "outbox/consumer/offset_tracker.hpp"
#include "outbox/consumer/record.hpp"
#include "outbox/consumer/retry_schedule.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace outbox::consumer::detail {

class consumer_metrics;
class copy_sink;
class dlq_breaker;
class key_order;

using flow_clock = std::chrono::steady_clock;

/// Where a record that is not finished goes next.
enum class destination {
  handler,      ///< another attempt (in process, after the schedule's delay)
  tier,         ///< retry tier entry `target_tier`
  dead_letter,  ///< the dead-letter topic
};

/// The next step of a pending record. Each step that talks to a dependency is tried again on its own when the
/// dependency fails; a step that succeeded is never repeated.
enum class step {
  check_key,    ///< per-key ordering: is it this record's turn?
  attempt,      ///< claim → handler → complete (or the inbox transaction)
  let_go,       ///< give the claim up before the record leaves for a tier or the DLQ
  hold_key,     ///< register the record in the key's holds before its copy goes to a tier
  produce,      ///< send the copy to the tier or the dead-letter topic
  note_dead,    ///< with the inbox: record the dead letter in its database before the offset may move
  release_key,  ///< remove it from the key's holds
  finished,     ///< done, duplicate, parked or dead-lettered: its offset may be committed
};

/// Where a record was read from.
enum class source_kind { topic, tier, replay };

/// A record that needs more than one step; its partition is paused while it waits, so later records of
/// the partition wait behind it.
struct pending_record {
  record rec;               ///< as the handler sees it: the original topic, partition and offset
  topic_partition from;     ///< the partition it was read from
  std::int64_t offset = 0;  ///< its offset there
  record_format::origin origin;
  source_kind source = source_kind::topic;
  int tier = -1;              ///< read from tier entry `tier` (-1: not from a tier)
  bool replayed = false;      ///< a replay (dlq_replay_count > 0): not counted by the breaker
  std::int64_t attempts = 0;  ///< handler attempts so far, all stages
  int in_process_failures = 0;
  std::int64_t first_failure_ms = 0;
  std::chrono::milliseconds attempt_elapsed{0};  ///< since the first failure, when the last attempt began
  step next = step::attempt;
  destination target = destination::handler;
  int target_tier = 0;
  bool held = false;      ///< goes to a tier unattempted, behind an earlier record of its key
  bool in_holds = false;  ///< registered in the key's holds
  bool probe = false;     ///< consumption is halted: its next attempt is the breaker's probe
  std::string error_class;
  std::string reason;  ///< the last failure
  std::uint64_t seed = 0;
  claim_state claim;
  flow_clock::time_point due;
  flow_clock::time_point since;  ///< when it started waiting
  std::string waiting_on;        ///< the dependency it waits for; empty when none
  int dependency_failures = 0;
  flow_clock::time_point last_log;
};

/// How long until a copy read from the tier of `delay` is due (0: now), never more than `delay`, as
/// retry_flow::from_tier counts it; the polling thread of consumer.workers parks the tier partition that long
/// before a worker takes the copy.
std::chrono::milliseconds tier_copy_wait(const record& r, std::chrono::milliseconds delay);

/// What retry_flow needs from the configuration.
struct flow_settings {
  std::string group;
  std::vector<std::chrono::milliseconds> tiers;  ///< retry.topics, one attempt per entry
  std::string dlq_template;
  bool per_key = true;
  std::chrono::milliseconds probe_interval{300'000};
};

/// The retry flow: what happens to a record after each attempt. In process after the schedule's delay, then
/// one attempt per tier entry (`<topic>.<group>.retry.<delay>`), then the dead-letter topic; dependencies that
/// fail pause the record (capped backoff, a metric and a log naming them) without spending its attempts; the
/// breaker halts instead of dead-lettering too much, and a probe of the held record resumes. It never calls
/// back into the loop: drive() returns, and the loop pauses, resumes and commits.
///
///   source ─attempt─▶ done ─────────────────────────────────────────────▶ finished
///            │ retry: in process ─(schedule)─▶ attempt
///            │ exhausted / fatal ─let_go─▶ (hold_key) ─produce─▶ tier k  ▶ finished (the copy runs later)
///            │                                      └─produce─▶ DLQ    ─▶ release_key ▶ finished
///   tier k copy ─(due)─▶ check_key ─▶ attempt ─▶ done ─release_key─▶ finished
///                                       └ retry ─▶ tier k+1 or DLQ
class retry_flow {
 public:
  /// The references must outlive the flow; `order` is null without per-key ordering.
  retry_flow(flow_settings settings, retry_schedule schedule, std::uint64_t jitter_salt, attempt_runner& attempts,
             key_order* order, copy_sink& sink, dlq_breaker& breaker, consumer_metrics& metrics);

  /// A record read from a source topic, or from the group's replay topic (`replay`): runs what it can now.
  /// nullopt when it is finished (the fast path, no copy made); else the pending record to wait with.
  /// Fills in `r.attempt` for the handler.
  std::optional<pending_record> start(record& r, const topic_partition& from, bool replay);
  /// A copy read from the tier topic of `delay` (whose source topic is `source_topic`): nullopt when it is
  /// another group's (skipped) or already finished; else the pending record, due when its tier says.
  std::optional<pending_record> from_tier(const record& r, const topic_partition& from, const std::string& source_topic,
                                          std::chrono::milliseconds delay);
  /// Runs the due steps of `p`; true once it is finished.
  bool drive(pending_record& p);
  /// The record is dropped (its partition was revoked, or the consumer stops): gives its claim up (one try)
  /// and its place in the dependency gauges.
  void forget(pending_record& p);

  /// True while consumption is halted (breaker, or Kafka refusing a dead letter).
  [[nodiscard]] bool halted() const noexcept { return m_halted; }
  [[nodiscard]] const std::string& halt_reason() const noexcept { return m_halt_reason; }

 private:
  pending_record make(const record& r, const topic_partition& from, source_kind kind) const;
  /// Sets the attempt context `p.rec.attempt` for the attempt about to run.
  void prepare_attempt(pending_record& p) const;
  /// The tier a retry goes to: `next`, or with a retry_after delay the first entry from `next` that covers it.
  [[nodiscard]] int tier_after(int next, std::chrono::milliseconds retry_after) const;
  void after_attempt(pending_record& p, const attempt_result& res);
  void leave(pending_record& p, destination to, std::string error_class);
  void produce(pending_record& p);
  void produce_to_tier(pending_record& p);
  void produce_dead_letter(pending_record& p);
  void settle(const std::string& topic, bool replayed, attempt_kind kind);
  void halt(pending_record& p, const std::string& why);
  void wait_for_dependency(pending_record& p, const std::string& dependency, const std::string& why);
  void dependency_answered(pending_record& p);
  [[nodiscard]] dedupe::held_record me(const pending_record& p) const;
  [[nodiscard]] bool keyed(const pending_record& p) const;

  flow_settings m_settings;
  retry_schedule m_schedule;
  std::uint64_t m_salt;
  attempt_runner& m_attempts;
  key_order* m_order;
  copy_sink& m_sink;
  dlq_breaker& m_breaker;
  consumer_metrics& m_metrics;
  bool m_halted = false;
  std::string m_halt_reason;
};

}  // namespace outbox::consumer::detail
