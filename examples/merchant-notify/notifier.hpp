#pragma once
// The handler: turns a payment event into a signed POST to its merchant and the attempt's outcome.

#include "merchant_guard.hpp"
#include "merchants.hpp"
#include "response.hpp"
#include "status_store.hpp"

#include "outbox/consumer/consumer.hpp"
#include "outbox/metrics/registry.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace outbox::notify {

/// A payment event as merchant-notify reads it (README "Events").
struct payment_event {
  std::string event_id;
  std::string merchant_id;
  std::string payment_id;
  std::int64_t amount_cents = 0;
  std::string currency;
};

/// Reads the record's `event_id` header and JSON value; a bad one throws consumer::fatal_error.
payment_event parse_event(const consumer::record& r);

/// The notification body POSTed for `e`: the same bytes on every attempt.
std::string notification_body(const payment_event& e);

/// What a manual resend did.
struct resend_result {
  int http_code = 200;  ///< for the API's answer: 200 delivered, 404, 409, 502 the merchant did not accept
  nlohmann::json body;
};

/// Delivers notifications; every member function is safe to call from several threads at once.
class notifier {
 public:
  /// `tiers` are the consumer's retry.topics delays (to tell the status table when the next attempt is due).
  notifier(const notify_settings& settings, std::vector<std::chrono::milliseconds> tiers, status_store& store,
           metrics::registry& registry);

  /// The transactional handler: one attempt of one notification.
  consumer::outcome handle(const consumer::record& r, pqxx::work& tx);
  /// The dead-letter hook: the notification failed for good.
  void dead_lettered(const consumer::record& r, const consumer::dead_letter_info& dl, pqxx::work& tx);
  /// POST /notifications/{event_id}/resend: sends the stored body again, whatever dedupe says.
  resend_result resend(const std::string& event_id);

 private:
  /// One signed POST and its verdict, counted in the metrics.
  std::pair<http_result, verdict> post(const merchant& m, const std::string& url, const std::string& event_id,
                                       const std::string& body);
  /// When the next attempt is due, if there is one.
  std::optional<std::chrono::milliseconds> next_attempt(const consumer::attempt_info& a,
                                                        std::chrono::milliseconds at_least) const;

  const notify_settings& m_settings;
  std::vector<std::chrono::milliseconds> m_tiers;
  status_store& m_store;
  merchant_guard m_guard;
  metrics::family<metrics::counter>& m_attempts;
  metrics::family<metrics::counter>& m_deliveries;
  metrics::family<metrics::counter>& m_failures;
  metrics::family<metrics::counter>& m_resends;
  metrics::family<metrics::histogram>& m_request_seconds;
  metrics::family<metrics::histogram>& m_delivery_seconds;
  metrics::family<metrics::gauge>& m_circuit_open;
};

}  // namespace outbox::notify
