#pragma once
// A small context of verbs around the consumer's stages (attempt, retry_flow, key_order, the breaker), with no
// broker: records arrive, copies come due, the dedupe store fails or answers, Kafka takes or refuses copies.

#include "attempt.hpp"
#include "consumer_metrics.hpp"
#include "dlq_breaker.hpp"
#include "key_order.hpp"
#include "retry_flow.hpp"
#include "side_producer.hpp"
#include "outbox/base/error.hpp"
#include "outbox/base/record_format.hpp"
#include "outbox/dedupe/key_holds.hpp"
#include "outbox/dedupe/store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace outbox::consumer::detail::test {

using namespace std::chrono_literals;

/// One copy the flow sent, as Kafka would hand it back.
struct sent_copy {
  std::string topic;
  record rec;  ///< key, value, headers (the record's own without retry bookkeeping, plus the copy's)
};

/// Takes copies (or refuses them, or is unreachable) as the test says, and remembers what it took.
class recording_sink final : public copy_sink {
 public:
  send_result send(const std::string& topic, const record& r, const record_format::header_pairs& extra) override {
    if (!answers.empty()) {
      const send_status s = answers.front();
      answers.pop_front();
      if (s != send_status::sent) return {s, "test: " + topic + " refused"};
    }
    sent_copy c{topic, r};
    c.rec.headers.clear();
    for (const auto& h : r.headers) {
      if (!record_format::is_retry_header(h.first)) c.rec.headers.push_back(h);
    }
    for (const auto& h : extra) c.rec.headers.push_back(h);
    c.rec.topic = topic;
    c.rec.offset = static_cast<std::int64_t>(sent.size());
    sent.push_back(std::move(c));
    return {};
  }

  std::deque<send_status> answers;  ///< the next sends' answers; empty: sent
  std::vector<sent_copy> sent;
};

/// A memory store that can be made to fail its next claims or completes (an unreachable Redis, for a moment).
class flaky_store final : public dedupe::store {
 public:
  explicit flaky_store(std::chrono::milliseconds lease = 60s) : m_store(dedupe::make_memory_store({.lease = lease})) {}
  dedupe::claim_result claim(std::string_view g, std::string_view id, std::string_view t) override {
    fail_if(fail_claims);
    return m_store->claim(g, id, t);
  }
  bool renew(std::string_view g, std::string_view id, std::string_view t) override { return m_store->renew(g, id, t); }
  bool complete(std::string_view g, std::string_view id, std::string_view t) override {
    fail_if(fail_completes);
    return m_store->complete(g, id, t);
  }
  bool release(std::string_view g, std::string_view id, std::string_view t) override {
    fail_if(fail_releases);
    return m_store->release(g, id, t);
  }
  std::size_t cleanup(std::size_t limit) override { return m_store->cleanup(limit); }
  [[nodiscard]] std::chrono::milliseconds retention() const noexcept override { return m_store->retention(); }
  [[nodiscard]] std::chrono::milliseconds lease() const noexcept override { return m_store->lease(); }

  std::atomic<int> fail_claims{0};
  std::atomic<int> fail_completes{0};
  std::atomic<int> fail_releases{0};

 private:
  static void fail_if(std::atomic<int>& n) {
    if (n.load() > 0) {
      n.fetch_sub(1);
      throw outbox_error("dedupe", "redis 127.0.0.1:6379/0: claim: Connection refused (test)", retry_class::retryable);
    }
  }
  std::unique_ptr<dedupe::store> m_store;
};

/// What the flow is built with.
struct flow_setup {
  std::vector<std::chrono::milliseconds> tiers;
  int in_process_attempts = 1;
  bool per_key = true;
  double max_ratio = 1.0;
  int window = 10;
  std::chrono::milliseconds probe_interval = 10ms;
  dedupe_key_function dedupe_key = {};  ///< empty: the event_id header
};

/// The stages wired together around a handler the test sets.
class flow_context {
 public:
  explicit flow_context(flow_setup s = {})
      : m_metrics(nullptr),
        m_breaker(s.max_ratio, s.window),
        m_holds(dedupe::make_memory_key_holds(1h)),
        m_order(*m_holds, "g"),
        m_attempts(
            "g", [this](const record& r) { return on_record(r); }, &store, m_metrics, s.dedupe_key),
        m_flow(flow_settings{"g", s.tiers, "{topic}.{group}.dlq", s.per_key, s.probe_interval}, schedule(s), 1,
               m_attempts, s.per_key ? &m_order : nullptr, sink, m_breaker, m_metrics) {}

  /// A source record of `topic` partition 0 at `offset`.
  static record source(const std::string& id, std::int64_t offset, std::optional<std::string> key = std::nullopt,
                       const std::string& topic = "payments") {
    record r;
    r.topic = topic;
    r.partition = 0;
    r.offset = offset;
    r.key = std::move(key);
    r.value = "{}";
    r.headers = {{"event_id", id}, {"trace", "t-" + id}};
    r.timestamp_ms = 1000 + offset;
    return r;
  }

  /// A record arrives on its source topic; nullopt when it finished at once.
  std::optional<pending_record> arrive(record r) { return m_flow.start(r, {r.topic, r.partition}, false); }
  /// Copy `i` of sink.sent is read back from its tier topic (of `delay`), due now: the tier's wait has passed.
  std::optional<pending_record> come_due(std::size_t i, std::chrono::milliseconds delay) {
    record r = sink.sent.at(i).rec;
    for (auto& h : r.headers) {
      if (h.first == record_format::k_retry_due_ms) h.second = "0";
    }
    return m_flow.from_tier(r, {r.topic, 0}, "payments", delay);
  }
  /// Drives `p` until it finishes or waits for something that is not due yet; true when finished.
  bool settle(pending_record& p) {
    for (int i = 0; i < 1000; ++i) {
      if (m_flow.drive(p)) return true;
      // A dependency's backoff or an in-process delay passes at once; a tier's due time or the breaker's probe
      // is the caller's to pass (pass_time).
      if (p.waiting_on.empty() && (p.probe || p.due > flow_clock::now() + 50ms)) return false;
      p.due = flow_clock::now();
    }
    return false;
  }
  /// Makes `p` due now (its wait passed).
  static void pass_time(pending_record& p) { p.due = flow_clock::now(); }

  /// The value of header `name` of sent copy `i`.
  [[nodiscard]] std::string header(std::size_t i, std::string_view name) const {
    return std::string(sink.sent.at(i).rec.header(name).value_or("(none)"));
  }

  retry_flow& flow() { return m_flow; }
  dlq_breaker& breaker() { return m_breaker; }
  dedupe::key_holds& holds() { return *m_holds; }
  [[nodiscard]] consumer_stats stats() const { return m_metrics.stats(); }

  /// The handler: by default done; event ids in `calls` in call order.
  std::function<outcome(const record&)> handler = [](const record&) { return outcome::done(); };
  std::vector<std::string> calls;
  flaky_store store;
  recording_sink sink;

 private:
  static retry_schedule schedule(const flow_setup& s) {
    retry_policy p;
    p.kind = schedule_kind::fixed;
    p.initial = 1ms;
    p.max = 1ms;
    p.max_attempts = s.in_process_attempts;
    return retry_schedule(p);
  }
  outcome on_record(const record& r) {
    calls.emplace_back(r.event_id());
    return handler(r);
  }

  consumer_metrics m_metrics;
  dlq_breaker m_breaker;
  std::unique_ptr<dedupe::key_holds> m_holds;
  key_order m_order;
  attempt_runner m_attempts;
  retry_flow m_flow;
};

}  // namespace outbox::consumer::detail::test
