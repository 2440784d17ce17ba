#include "notifier.hpp"

#include "http_client.hpp"
#include "signature.hpp"

#include "outbox/base/log.hpp"
#include "outbox/consumer/deserialize.hpp"

#include <algorithm>

namespace outbox::notify {
namespace {

using consumer::outcome;

std::string required_string(const nlohmann::json& j, const char* name) {
  const auto it = j.find(name);
  if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    throw consumer::fatal_error(std::string("payment event has no ") + name + " string");
  }
  return it->get<std::string>();
}

std::vector<double> delivery_buckets() { return {0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600, 6 * 3600, 24 * 3600}; }

}  // namespace

payment_event parse_event(const consumer::record& r) {
  payment_event e;
  e.event_id = std::string(r.event_id());
  if (e.event_id.empty()) throw consumer::fatal_error("payment event has no event_id header");
  const nlohmann::json j = consumer::parse_json(r);
  if (!j.is_object()) throw consumer::deserialization_error("payment event is not a JSON object");
  e.merchant_id = required_string(j, "merchant_id");
  e.payment_id = required_string(j, "payment_id");
  e.currency = required_string(j, "currency");
  const auto amount = j.find("amount_cents");
  if (amount == j.end() || !amount->is_number_integer()) {
    throw consumer::fatal_error("payment event has no integer amount_cents");
  }
  e.amount_cents = amount->get<std::int64_t>();
  return e;
}

std::string notification_body(const payment_event& e) {
  // nlohmann::json keeps object keys sorted: the same event always gives the same bytes.
  const nlohmann::json body = {{"notify_id", e.event_id},        {"event_type", "payment.succeeded"},
                               {"merchant_id", e.merchant_id},   {"payment_id", e.payment_id},
                               {"amount_cents", e.amount_cents}, {"currency", e.currency}};
  return body.dump();
}

notifier::notifier(const notify_settings& settings, std::vector<std::chrono::milliseconds> tiers, status_store& store,
                   metrics::registry& registry)
    : m_settings(settings),
      m_tiers(std::move(tiers)),
      m_store(store),
      m_guard(settings.breaker_failures, settings.breaker_cooldown, settings.max_in_flight),
      m_attempts(registry.add_counter("notify_attempts_total",
                                      "Delivery attempts by merchant and result (delivered, retry, retry_after, "
                                      "fatal, skipped: the circuit was open or the merchant at its limit)",
                                      {"merchant", "result"})),
      m_deliveries(registry.add_counter("notify_deliveries_total", "Notifications delivered", {"merchant"})),
      m_failures(registry.add_counter(
          "notify_failures_total", "Notifications that failed for good (dead-lettered, status failed)", {"merchant"})),
      m_resends(registry.add_counter("notify_resends_total",
                                     "Manual resends by merchant and result (delivered, "
                                     "not_accepted)",
                                     {"merchant", "result"})),
      m_request_seconds(registry.add_histogram("notify_request_seconds", "Duration of one POST to a merchant",
                                               {"merchant"}, metrics::latency_buckets())),
      m_delivery_seconds(registry.add_histogram("notify_delivery_latency_seconds",
                                                "From a notification's first attempt to its delivery", {"merchant"},
                                                delivery_buckets())),
      m_circuit_open(registry.add_gauge("notify_circuit_open", "1 while a merchant's circuit is open", {"merchant"})) {
  for (const auto& [id, m] : m_settings.merchants) {
    m_deliveries.with({id});
    m_failures.with({id});
    m_circuit_open.with({id}).set(0);
  }
}

std::pair<http_result, verdict> notifier::post(const merchant& m, const std::string& url, const std::string& event_id,
                                               const std::string& body) {
  const std::string timestamp = std::to_string(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  const std::string nonce = random_nonce();
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Type", "application/json"},
      {"Idempotency-Key", event_id},
      {"X-Notify-Merchant", m.id},
      {"X-Notify-Timestamp", timestamp},
      {"X-Notify-Nonce", nonce},
      {"X-Notify-Signature", signature_header(m.key, timestamp, nonce, body)}};
  const auto started = std::chrono::steady_clock::now();
  http_result r = http_post(url, headers, body, m_settings.connect_timeout, m_settings.request_timeout);
  m_request_seconds.with({m.id}).observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  verdict v = classify(r, m.expected_body);
  return {std::move(r), std::move(v)};
}

std::optional<std::chrono::milliseconds> notifier::next_attempt(const consumer::attempt_info& a,
                                                                std::chrono::milliseconds at_least) const {
  if (a.last) return std::nullopt;
  // A record leaving for the tiers goes to the first remaining one at least `at_least` long, else the last one.
  const auto first = static_cast<std::size_t>(std::max(a.tier + 1, 0));
  if (first >= m_tiers.size()) return std::nullopt;
  for (std::size_t i = first; i < m_tiers.size(); ++i) {
    if (m_tiers[i] >= at_least) return m_tiers[i];
  }
  return m_tiers.back();
}

consumer::outcome notifier::handle(const consumer::record& r, pqxx::work& tx) {
  const payment_event e = parse_event(r);
  const auto found = m_settings.merchants.find(e.merchant_id);
  if (found == m_settings.merchants.end()) {
    return outcome::fatal("unknown merchant '" + e.merchant_id + "' (not in notify.merchants)", "unknown_merchant");
  }
  const merchant& m = found->second;
  const std::string body = notification_body(e);

  // A merchant's own schedule: the delay after this failure, or the end of its attempts.
  const auto own_delay = [&]() -> std::optional<std::chrono::milliseconds> {
    if (m.schedule.empty()) return std::chrono::milliseconds(0);
    const auto n = static_cast<std::size_t>(r.attempt.number);
    if (n > m.schedule.size()) return std::nullopt;
    return m.schedule[n - 1];
  };
  const auto fail = [&](const std::string& result, long http_status, const std::string& reason,
                        std::chrono::milliseconds retry_after, bool sent) -> outcome {
    m_attempts.with({m.id, result}).inc();
    const auto own = own_delay();
    if (!own) {
      if (sent) m_store.attempt_failed(e.event_id, http_status, reason, std::nullopt);
      return outcome::fatal(
          "the merchant's schedule ended after " + std::to_string(r.attempt.number) + " attempts; last: " + reason,
          "retry_exhausted");
    }
    const auto delay = std::max(*own, retry_after);
    if (sent) {
      m_store.attempt_failed(e.event_id, http_status, reason, next_attempt(r.attempt, delay));
    } else {
      m_store.skipped(e.event_id, m.id, m.url, body, reason, next_attempt(r.attempt, delay));
    }
    return delay.count() > 0 ? outcome::retry_after(delay, reason) : outcome::retry(reason);
  };

  if (const auto refused = m_guard.admit(m.id)) {
    m_circuit_open.with({m.id}).set(m_guard.open(m.id) ? 1 : 0);
    // No Retry-After of our own: the next tier is tried as scheduled (the circuit may have closed by then).
    return fail("skipped", 0, refused->reason, std::chrono::milliseconds(0), false);
  }
  std::pair<http_result, verdict> sent;
  try {
    m_store.begin_attempt(e.event_id, m.id, m.url, body);
    sent = post(m, m.url, e.event_id, body);
  } catch (...) {
    m_guard.finish(m.id, false);
    throw;
  }
  const auto& [res, v] = sent;
  m_guard.finish(m.id, v.kind == verdict_kind::retry || v.kind == verdict_kind::retry_after);
  m_circuit_open.with({m.id}).set(m_guard.open(m.id) ? 1 : 0);
  switch (v.kind) {
    case verdict_kind::delivered: {
      const double since_first = m_store.delivered(tx, e.event_id, res.status);
      m_attempts.with({m.id, "delivered"}).inc();
      m_deliveries.with({m.id}).inc();
      if (since_first >= 0) m_delivery_seconds.with({m.id}).observe(since_first);
      return outcome::done();
    }
    case verdict_kind::fatal:
      m_attempts.with({m.id, "fatal"}).inc();
      m_store.attempt_failed(e.event_id, res.status, v.reason, std::nullopt);
      return outcome::fatal(v.reason, "merchant_refused");
    case verdict_kind::retry_after:
      return fail("retry_after", res.status, v.reason, v.delay, true);
    case verdict_kind::retry:
      break;
  }
  return fail("retry", res.status, v.reason, std::chrono::milliseconds(0), true);
}

void notifier::dead_lettered(const consumer::record& r, const consumer::dead_letter_info& dl, pqxx::work& tx) {
  std::string merchant = r.key.value_or("");
  try {
    merchant = parse_event(r).merchant_id;
  } catch (const std::exception&) {
    // a record that cannot be read is still marked failed, under its key
  }
  const std::string event_id(r.event_id());
  if (event_id.empty()) return;  // nothing to key a status row on
  m_store.failed(tx, event_id, merchant, dl.error_class + ": " + dl.reason);
  m_failures.with({merchant}).inc();
  log::warn("merchant-notify", "notification failed for good",
            {{"event_id", event_id}, {"merchant", merchant}, {"error_class", dl.error_class}, {"reason", dl.reason}});
}

resend_result notifier::resend(const std::string& event_id) {
  const auto row = m_store.for_resend(event_id);
  if (!row) return {404, {{"error", "no notification with event_id " + event_id}}};
  if (row->status != "delivered" && row->status != "failed") {
    return {409,
            {{"error", "notification " + event_id + " is " + row->status +
                           "; only a delivered or failed one is resent (the schedule still owns it)"}}};
  }
  const auto found = m_settings.merchants.find(row->merchant);
  if (found == m_settings.merchants.end() || row->body.empty()) {
    return {409,
            {{"error", "notification " + event_id + " cannot be resent: merchant '" + row->merchant +
                           "' is not configured or no body was stored"}}};
  }
  const auto [res, v] = post(found->second, row->url.empty() ? found->second.url : row->url, event_id, row->body);
  const bool ok = v.kind == verdict_kind::delivered;
  m_store.resent(event_id, ok, res.status, v.reason);
  m_resends.with({row->merchant, ok ? "delivered" : "not_accepted"}).inc();
  nlohmann::json out = {{"event_id", event_id}, {"delivered", ok}, {"http_status", res.status}};
  if (!ok) out["error"] = v.reason;
  return {ok ? 200 : 502, out};
}

}  // namespace outbox::notify
