#include "retry_flow.hpp"

#include "consumer_metrics.hpp"
#include "dlq_breaker.hpp"
#include "key_order.hpp"
#include "side_producer.hpp"
#include "outbox/base/log.hpp"
#include "outbox/base/text.hpp"

#include <algorithm>

namespace outbox::consumer::detail {
namespace {

namespace rf = record_format;
using std::chrono::milliseconds;

constexpr std::string_view k_component = "consumer";
constexpr milliseconds k_first_backoff{200};
constexpr milliseconds k_max_backoff{5000};
constexpr milliseconds k_log_every{30000};
constexpr milliseconds k_halted_poll{1000};

std::int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

rf::header_lookup lookup(const record& r) {
  return [&r](std::string_view name) { return r.header(name); };
}

std::int64_t replay_count(const record& r) {
  const auto v = r.header(rf::k_dlq_replay_count);
  return v ? parse_int64(*v).value_or(0) : 0;
}

std::string duration_text(milliseconds d) { return rf::delay_name(d); }

std::uint64_t seed_of(const record& r, std::uint64_t salt) {
  const std::string_view id = r.event_id();
  return jitter_seed(
      id.empty() ? r.topic + "/" + std::to_string(r.partition) + "/" + std::to_string(r.offset) : std::string(id),
      salt);
}

}  // namespace

retry_flow::retry_flow(flow_settings settings, retry_schedule schedule, std::uint64_t jitter_salt,
                       attempt_runner& attempts, key_order* order, copy_sink& sink, dlq_breaker& breaker,
                       consumer_metrics& metrics)
    : m_settings(std::move(settings)),
      m_schedule(std::move(schedule)),
      m_salt(jitter_salt),
      m_attempts(attempts),
      m_order(order),
      m_sink(sink),
      m_breaker(breaker),
      m_metrics(metrics) {}

pending_record retry_flow::make(const record& r, const topic_partition& from, source_kind kind) const {
  pending_record p;
  p.rec = r;
  p.from = from;
  p.offset = r.offset;
  p.source = kind;
  p.origin = rf::origin{r.topic, r.partition, r.offset, r.timestamp_ms};
  p.replayed = replay_count(r) > 0;
  p.seed = seed_of(r, m_salt);
  p.due = flow_clock::now();
  p.since = p.due;
  return p;
}

dedupe::held_record retry_flow::me(const pending_record& p) const { return {p.origin.partition, p.origin.offset}; }

bool retry_flow::keyed(const pending_record& p) const { return m_order != nullptr && p.rec.key.has_value(); }

void retry_flow::prepare_attempt(pending_record& p) const {
  attempt_info& a = p.rec.attempt;
  a.number = p.attempts + 1;
  a.first_failure_ms = p.first_failure_ms;
  a.tier = p.source == source_kind::tier ? p.tier : -1;
  a.tier_delay_ms = a.tier >= 0 ? m_settings.tiers[static_cast<std::size_t>(a.tier)].count() : 0;
  a.replay_count = replay_count(p.rec);
  a.replay = p.replayed;
  // The elapsed time the schedule decides on after this attempt is taken now, so `last` is what happens.
  p.attempt_elapsed = p.first_failure_ms > 0 ? milliseconds(std::max<std::int64_t>(0, wall_ms() - p.first_failure_ms))
                                             : milliseconds(0);
  if (p.probe) {
    a.last = true;
  } else if (p.source == source_kind::tier) {
    a.last = static_cast<std::size_t>(p.tier + 1) >= m_settings.tiers.size();
  } else {
    a.last = m_settings.tiers.empty() && !m_schedule.next_delay(p.in_process_failures + 1, p.attempt_elapsed, p.seed);
  }
}

int retry_flow::tier_after(int next, milliseconds retry_after) const {
  const auto n = static_cast<int>(m_settings.tiers.size());
  if (retry_after <= milliseconds(0) || next >= n) return next;
  for (int i = next; i < n; ++i) {
    if (m_settings.tiers[static_cast<std::size_t>(i)] >= retry_after) return i;
  }
  return n - 1;
}

std::optional<pending_record> retry_flow::start(record& r, const topic_partition& from, bool replay) {
  if (!replay && (m_order == nullptr || !r.key) && !m_halted) {
    // The fast path: nothing to look up first, and most records are simply done.
    r.attempt = attempt_info{};
    r.attempt.replay_count = replay_count(r);
    r.attempt.replay = r.attempt.replay_count > 0;
    r.attempt.last = m_settings.tiers.empty() && !m_schedule.next_delay(1, milliseconds(0), seed_of(r, m_salt));
    claim_state c;
    const attempt_result res = m_attempts.run(r, c);
    if (res.kind == attempt_kind::processed || res.kind == attempt_kind::duplicate) {
      settle(r.topic, replay_count(r) > 0, res.kind);
      return std::nullopt;
    }
    pending_record p = make(r, from, source_kind::topic);
    p.claim = std::move(c);
    if (res.ran_handler) p.attempts = 1;
    if (res.kind == attempt_kind::wait) {
      wait_for_dependency(p, res.dependency, res.reason);
    } else {
      after_attempt(p, res);
    }
    if (drive(p)) return std::nullopt;
    return p;
  }
  pending_record p = make(r, from, replay ? source_kind::replay : source_kind::topic);
  if (replay) {
    // The group's replay topic: where the dead letter first came from, then a fresh schedule.
    const rf::retry_copy copy = rf::retry_copy::read(lookup(r));
    if (!copy.from.topic.empty()) p.origin = copy.from;
    p.rec.topic = p.origin.topic;
    p.rec.partition = p.origin.partition;
    p.rec.offset = p.origin.offset;
    p.replayed = true;
  }
  p.next = keyed(p) ? step::check_key : step::attempt;
  if (drive(p)) return std::nullopt;
  return p;
}

std::optional<pending_record> retry_flow::from_tier(const record& r, const topic_partition& from,
                                                    const std::string& source_topic, milliseconds delay) {
  const rf::retry_copy copy = rf::retry_copy::read(lookup(r));
  if (!copy.consumer_group.empty() && copy.consumer_group != m_settings.group) {
    m_metrics.foreign_copy(from.topic);
    log::warn(k_component, "skipping a retry copy another consumer group parked (it is not this group's to run)",
              {{"topic", from.topic}, {"offset", r.offset}, {"parked_by", copy.consumer_group}});
    return std::nullopt;
  }
  pending_record p = make(r, from, source_kind::tier);
  p.origin = copy.from;
  if (p.origin.topic.empty()) p.origin.topic = source_topic;
  if (p.origin.timestamp_ms < 0) p.origin.timestamp_ms = r.timestamp_ms;
  p.rec.topic = p.origin.topic;  // the handler sees the record it subscribed to
  p.rec.partition = p.origin.partition;
  p.rec.offset = p.origin.offset;
  // Which entry of retry.topics this copy is: its header when it matches this topic's delay, else the first
  // entry with this delay (a copy from before the header existed, or from a changed list).
  const auto& tiers = m_settings.tiers;
  if (copy.tier >= 0 && static_cast<std::size_t>(copy.tier) < tiers.size() && tiers[copy.tier] == delay) {
    p.tier = copy.tier;
  } else {
    const auto it = std::find(tiers.begin(), tiers.end(), delay);
    p.tier = it == tiers.end() ? -1 : static_cast<int>(it - tiers.begin());
  }
  p.attempts = copy.attempts;
  p.first_failure_ms = copy.first_failure_ms > 0 ? copy.first_failure_ms : wall_ms();
  p.reason = copy.reason;
  // Due when the header says, but never later than one delay from now: a clock running ahead or a hand-made
  // header must not block the tier partition (and every key behind the copy).
  const std::int64_t now = wall_ms();
  std::int64_t wait_ms = copy.due_ms > now ? copy.due_ms - now : 0;
  if (wait_ms > delay.count()) {
    log::warn(k_component, "a retry copy's retry_due_ms is further away than its tier's delay; it runs after the delay",
              {{"topic", from.topic}, {"offset", r.offset}, {"retry_due_ms", copy.due_ms}});
    wait_ms = delay.count();
  }
  p.due = flow_clock::now() + milliseconds(wait_ms);
  p.next = keyed(p) ? step::check_key : step::attempt;
  if (drive(p)) return std::nullopt;
  return p;
}

milliseconds tier_copy_wait(const record& r, milliseconds delay) {
  const rf::retry_copy copy = rf::retry_copy::read(lookup(r));
  const std::int64_t now = wall_ms();
  const std::int64_t wait_ms = copy.due_ms > now ? copy.due_ms - now : 0;
  return milliseconds(std::min<std::int64_t>(wait_ms, delay.count()));
}

bool retry_flow::drive(pending_record& p) {
  while (true) {
    if (p.next == step::finished) return true;
    const auto now = flow_clock::now();
    if (now < p.due) return false;
    if (m_halted && !p.probe) {
      p.due = now + k_halted_poll;
      return false;
    }
    switch (p.next) {
      case step::check_key: {
        key_order::turn turn = key_order::turn::free;
        try {
          turn = m_order->turn_of(p.origin.topic, *p.rec.key, me(p));
        } catch (const std::exception& e) {
          wait_for_dependency(p, "dedupe", std::string("per-key holds: ") + e.what());
          continue;
        }
        dependency_answered(p);
        if (turn == key_order::turn::behind) {
          // Not its turn: an earlier record of its key is parked. Into a tier, unattempted.
          p.held = true;
          leave(p, destination::tier, {});
          p.target_tier = p.source == source_kind::tier ? std::max(p.tier, 0) : 0;
        } else {
          p.in_holds = p.in_holds || turn == key_order::turn::first;
          p.next = step::attempt;
        }
        continue;
      }
      case step::attempt: {
        prepare_attempt(p);
        const attempt_result res = m_attempts.run(p.rec, p.claim);
        if (res.ran_handler) ++p.attempts;
        if (res.kind == attempt_kind::wait) {
          wait_for_dependency(p, res.dependency, res.reason);
          continue;
        }
        dependency_answered(p);
        after_attempt(p, res);
        continue;
      }
      case step::let_go: {
        const attempt_result res = m_attempts.let_go(p.rec, p.claim);
        if (res.kind == attempt_kind::wait) {
          wait_for_dependency(p, res.dependency, res.reason);
          continue;
        }
        dependency_answered(p);
        p.next = p.target == destination::tier && keyed(p) ? step::hold_key : step::produce;
        continue;
      }
      case step::hold_key:
        try {
          m_order->parked(p.origin.topic, *p.rec.key, me(p));
        } catch (const std::exception& e) {
          wait_for_dependency(p, "dedupe", std::string("per-key holds: ") + e.what());
          continue;
        }
        dependency_answered(p);
        p.in_holds = true;
        p.next = step::produce;
        continue;
      case step::produce:
        produce(p);
        continue;
      case step::note_dead: {
        // Kafka took the dead letter; the row follows before the offset is committed, so a crash between the
        // two runs the record again and dead-letters it again (a second copy in the topic, the same row).
        dedupe::dead_letter_entry e;
        e.group = m_settings.group;
        e.event_id = std::string(p.rec.event_id());
        e.topic = p.origin.topic;
        e.partition = p.origin.partition;
        e.offset = p.origin.offset;
        e.error_class = p.error_class.empty() ? std::string(rf::k_class_fatal) : p.error_class;
        e.error_message = p.reason;
        e.replayed = p.replayed;
        const dead_letter_info info{
            e.error_class, p.reason, p.attempts,
            rf::dead_letter_topic_name(m_settings.dlq_template, p.origin.topic, m_settings.group)};
        const attempt_result res = m_attempts.record_dead_letter(e, p.rec, info);
        if (res.kind == attempt_kind::wait) {
          wait_for_dependency(p, res.dependency, res.reason);
          continue;
        }
        dependency_answered(p);
        p.next = p.in_holds ? step::release_key : step::finished;
        continue;
      }
      case step::release_key:
        try {
          m_order->resolved(p.origin.topic, *p.rec.key, me(p));
        } catch (const std::exception& e) {
          wait_for_dependency(p, "dedupe", std::string("per-key holds: ") + e.what());
          continue;
        }
        dependency_answered(p);
        p.in_holds = false;
        p.next = step::finished;
        continue;
      case step::finished:
        return true;
    }
  }
}

void retry_flow::after_attempt(pending_record& p, const attempt_result& res) {
  if (res.kind == attempt_kind::processed || res.kind == attempt_kind::duplicate) {
    settle(p.origin.topic, p.replayed, res.kind);
    if (p.probe) {
      p.probe = false;
      if (m_halted) {
        m_halted = false;
        m_halt_reason.clear();
        m_breaker.reset();
        m_metrics.halted(false);
        log::info(k_component, "the held record succeeded: the breaker is closed and consumption resumes",
                  {{"topic", p.origin.topic}, {"offset", p.origin.offset}, {"event_id", p.rec.event_id()}});
      }
    }
    p.next = p.in_holds ? step::release_key : step::finished;
    return;
  }
  p.reason = res.reason;
  if (p.first_failure_ms == 0) p.first_failure_ms = wall_ms();
  if (res.kind == attempt_kind::fatal) {
    leave(p, destination::dead_letter, res.error_class);
    return;
  }
  m_metrics.retried(p.origin.topic);
  if (p.probe) {
    leave(p, destination::dead_letter, std::string(rf::k_class_retry_exhausted));
    return;
  }
  if (p.source != source_kind::tier) {
    ++p.in_process_failures;
    if (auto delay = m_schedule.next_delay(p.in_process_failures, p.attempt_elapsed, p.seed)) {
      if (res.retry_after > milliseconds(0)) delay = res.retry_after;  // the handler knows better
      p.next = step::attempt;
      p.due = flow_clock::now() + *delay;
      m_metrics.retry_scheduled(p.origin.topic, "in_process");
      log::warn(k_component, "handler asked to retry; later records of the partition wait",
                {{"topic", p.origin.topic},
                 {"partition", p.origin.partition},
                 {"offset", p.origin.offset},
                 {"event_id", p.rec.event_id()},
                 {"attempt", p.attempts},
                 {"retry_in_ms", static_cast<long long>(delay->count())},
                 {"reason", p.reason}});
      return;
    }
  }
  const int next_tier = tier_after(p.source == source_kind::tier ? p.tier + 1 : 0, res.retry_after);
  if (static_cast<std::size_t>(next_tier) < m_settings.tiers.size()) {
    leave(p, destination::tier, {});
    p.target_tier = next_tier;
  } else {
    leave(p, destination::dead_letter, std::string(rf::k_class_retry_exhausted));
  }
}

void retry_flow::leave(pending_record& p, destination to, std::string error_class) {
  p.target = to;
  if (!error_class.empty()) p.error_class = std::move(error_class);
  p.next = step::let_go;
}

void retry_flow::produce(pending_record& p) {
  if (p.target == destination::tier) {
    produce_to_tier(p);
  } else {
    produce_dead_letter(p);
  }
}

void retry_flow::produce_to_tier(pending_record& p) {
  const milliseconds delay = m_settings.tiers[static_cast<std::size_t>(p.target_tier)];
  const std::string topic = rf::retry_topic_name(p.origin.topic, m_settings.group, delay);
  rf::retry_copy copy;
  copy.from = p.origin;
  copy.consumer_group = m_settings.group;
  copy.tier = p.target_tier;
  copy.attempts = p.attempts;
  copy.due_ms = wall_ms() + delay.count();
  copy.first_failure_ms = p.first_failure_ms > 0 ? p.first_failure_ms : wall_ms();
  copy.reason = p.reason;
  const send_result sent = m_sink.send(topic, p.rec, copy.headers());
  if (sent.status == send_status::retry_later) {
    wait_for_dependency(p, "kafka", sent.error);
    return;
  }
  dependency_answered(p);
  if (sent.status == send_status::refused) {
    log::error(k_component, "Kafka refused the retry copy for good: dead-lettering the record instead",
               {{"topic", topic}, {"offset", p.origin.offset}, {"event_id", p.rec.event_id()}, {"error", sent.error}});
    p.reason = "Kafka refused the retry copy (" + sent.error + ")" +
               (p.reason.empty() ? std::string() : "; the last failure was: " + p.reason);
    p.target = destination::dead_letter;
    p.error_class = rf::k_class_retry_refused;
    return;  // next is still produce, now to the dead-letter topic
  }
  if (p.held) {
    m_metrics.held(p.origin.topic);
    log::info(k_component, "record held behind an earlier record of its key",
              {{"topic", topic}, {"key", p.rec.key.value_or("")}, {"original_offset", p.origin.offset}});
  } else {
    m_metrics.parked(p.origin.topic);
    m_metrics.retry_scheduled(p.origin.topic, duration_text(delay));
    log::warn(k_component, "record parked in a retry topic",
              {{"topic", topic},
               {"original_offset", p.origin.offset},
               {"event_id", p.rec.event_id()},
               {"attempts", p.attempts},
               {"tier", p.target_tier},
               {"due_in_ms", static_cast<long long>(delay.count())},
               {"reason", p.reason}});
  }
  p.next = step::finished;
}

void retry_flow::produce_dead_letter(pending_record& p) {
  if (!p.replayed && m_breaker.would_trip()) {
    halt(p,
         "DLQ breaker tripped: more than dlq.max_ratio of the last dlq.window records would be dead letters; "
         "consumption is halted instead of dead-lettering more; fix the cause (the held record is probed every "
         "dlq.probe_interval and consumption resumes when it succeeds)");
    return;
  }
  const std::string topic = rf::dead_letter_topic_name(m_settings.dlq_template, p.origin.topic, m_settings.group);
  rf::dead_letter dl;
  dl.from = p.origin;
  dl.consumer_group = m_settings.group;
  dl.error_class = p.error_class.empty() ? std::string(rf::k_class_fatal) : p.error_class;
  dl.error_message = p.reason;
  dl.attempts = p.attempts;
  dl.last_failure_ms = wall_ms();
  dl.first_failure_ms = p.first_failure_ms > 0 ? p.first_failure_ms : dl.last_failure_ms;
  const send_result sent = m_sink.send(topic, p.rec, dl.headers());
  if (sent.status == send_status::retry_later) {
    wait_for_dependency(p, "kafka", sent.error);
    return;
  }
  dependency_answered(p);
  if (sent.status == send_status::refused) {
    halt(p, "Kafka refuses the dead letter for " + topic + " (" + sent.error +
                "); consumption is halted so that nothing is committed past it; fix the topic's size limit or ACLs");
    return;
  }
  if (!p.replayed) m_breaker.add(true);
  m_metrics.dead_lettered(p.origin.topic, dl.error_class != rf::k_class_retry_exhausted);
  log::error(k_component, "giving up on a record: dead-lettered",
             {{"topic", p.origin.topic},
              {"partition", p.origin.partition},
              {"offset", p.origin.offset},
              {"event_id", p.rec.event_id()},
              {"dlq_topic", topic},
              {"error_class", dl.error_class},
              {"attempts", p.attempts},
              {"reason", p.reason}});
  if (p.probe && m_halted) {
    p.probe = false;
    m_halted = false;
    m_halt_reason.clear();
    m_metrics.halted(false);
    log::info(k_component, "Kafka took the dead letter it refused before: consumption resumes", {{"dlq_topic", topic}});
  }
  if (p.in_holds) {
    m_metrics.key_released(p.origin.topic);
    log::error(k_component,
               "per-key order released for a key: its oldest parked record was dead-lettered, so its later records "
               "run now; a replay of it lands after them",
               {{"topic", p.origin.topic}, {"key", p.rec.key.value_or("")}, {"original_offset", p.origin.offset}});
  }
  p.next = step::note_dead;
}

void retry_flow::settle(const std::string& topic, bool replayed, attempt_kind kind) {
  if (!replayed) m_breaker.add(false);
  if (kind == attempt_kind::processed) {
    m_metrics.processed(topic);
  } else {
    m_metrics.duplicate(topic);
  }
}

void retry_flow::halt(pending_record& p, const std::string& why) {
  if (!m_halted) {
    m_halted = true;
    m_halt_reason = why;
    m_metrics.halted(true);
    log::error(k_component, why,
               {{"dead_lettered_in_window", m_breaker.dead_letters()},
                {"window", m_breaker.window()},
                {"max_ratio", m_breaker.max_ratio()},
                {"held_topic", p.origin.topic},
                {"held_offset", p.origin.offset},
                {"probe_in_ms", static_cast<long long>(m_settings.probe_interval.count())},
                {"reason", p.reason}});
  }
  p.probe = true;
  p.next = step::attempt;
  p.due = flow_clock::now() + m_settings.probe_interval;
}

void retry_flow::wait_for_dependency(pending_record& p, const std::string& dependency, const std::string& why) {
  const auto now = flow_clock::now();
  if (p.waiting_on != dependency) {
    if (!p.waiting_on.empty()) m_metrics.dependency_waiting(p.waiting_on, -1);
    m_metrics.dependency_waiting(dependency, 1);
    p.waiting_on = dependency;
    p.dependency_failures = 0;
  }
  ++p.dependency_failures;
  m_metrics.dependency_error(dependency);
  const int shift = std::min(p.dependency_failures - 1, 10);
  const milliseconds backoff = std::min(k_max_backoff, k_first_backoff * (1 << shift));
  if (p.dependency_failures == 1 || now - p.last_log >= k_log_every) {
    log::warn(k_component,
              "a dependency did not answer: the record waits with its partition paused and no attempt is spent",
              {{"dependency", dependency},
               {"topic", p.origin.topic},
               {"partition", p.origin.partition},
               {"offset", p.origin.offset},
               {"event_id", p.rec.event_id()},
               {"tries", p.dependency_failures},
               {"retry_in_ms", static_cast<long long>(backoff.count())},
               {"error", why}});
    p.last_log = now;
  }
  p.due = now + backoff;
}

void retry_flow::dependency_answered(pending_record& p) {
  if (p.waiting_on.empty()) return;
  m_metrics.dependency_waiting(p.waiting_on, -1);
  log::info(k_component, "a dependency answers again",
            {{"dependency", p.waiting_on}, {"tries", p.dependency_failures}, {"topic", p.origin.topic}});
  p.waiting_on.clear();
  p.dependency_failures = 0;
}

void retry_flow::forget(pending_record& p) {
  if (!p.waiting_on.empty()) {
    m_metrics.dependency_waiting(p.waiting_on, -1);
    p.waiting_on.clear();
  }
  if (p.claim.owned) static_cast<void>(m_attempts.let_go(p.rec, p.claim));
}

}  // namespace outbox::consumer::detail
