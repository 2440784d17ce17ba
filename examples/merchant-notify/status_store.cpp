#include "status_store.hpp"

#include <algorithm>
#include <cctype>
#include <stdexcept>

namespace outbox::notify {
namespace {

constexpr std::size_t k_max_idle = 8;

bool plain_name(const std::string& t) {
  return !t.empty() &&
         std::all_of(t.begin(), t.end(), [](unsigned char c) { return std::isalnum(c) != 0 || c == '_' || c == '.'; });
}

constexpr const char* k_columns =
    "event_id, merchant, status, attempts, "
    "to_char(next_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), last_http_status, "
    "last_error, url, body, "
    "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "to_char(delivered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

nlohmann::json to_json(const pqxx::row& row) {
  static const char* const k_names[] = {"event_id",         "merchant",    "status", "attempts", "next_attempt_at",
                                        "last_http_status", "last_error",  "url",    "body",     "created_at",
                                        "updated_at",       "delivered_at"};
  nlohmann::json j = nlohmann::json::object();
  for (int i = 0; i < static_cast<int>(std::size(k_names)); ++i) {
    const auto& f = row[i];
    if (f.is_null()) {
      j[k_names[i]] = nullptr;
    } else if (i == 3 || i == 5) {
      j[k_names[i]] = f.as<long long>();
    } else {
      j[k_names[i]] = f.as<std::string>();
    }
  }
  return j;
}

}  // namespace

status_store::status_store(std::string dsn, std::string table) : m_dsn(std::move(dsn)), m_table(std::move(table)) {
  if (!plain_name(m_table)) {
    throw std::invalid_argument("notify.table: '" + m_table + "' is not a plain (optionally schema-qualified) name");
  }
}

template <typename Fn>
auto status_store::with_connection(Fn&& fn) {
  std::unique_ptr<pqxx::connection> c;
  {
    std::lock_guard lock(m_mutex);
    if (!m_idle.empty()) {
      c = std::move(m_idle.back());
      m_idle.pop_back();
    }
  }
  if (!c) c = std::make_unique<pqxx::connection>(m_dsn);
  pqxx::work tx(*c);
  auto result = fn(tx);
  tx.commit();
  std::lock_guard lock(m_mutex);
  if (c->is_open() && m_idle.size() < k_max_idle) m_idle.push_back(std::move(c));
  return result;
}

void status_store::create_if_missing() {
  with_connection([&](pqxx::work& tx) {
    const std::string index = m_table.substr(m_table.rfind('.') + 1) + "_merchant_status";
    tx.exec("CREATE TABLE IF NOT EXISTS " + m_table +
            " (event_id text PRIMARY KEY, merchant text NOT NULL, status text NOT NULL CHECK (status IN "
            "('pending', 'delivering', 'delivered', 'failed')), attempts integer NOT NULL DEFAULT 0, "
            "next_attempt_at timestamptz, last_http_status integer, last_error text, url text, body text, "
            "created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(), "
            "delivered_at timestamptz)");
    tx.exec("CREATE INDEX IF NOT EXISTS " + index + " ON " + m_table + " (merchant, status, updated_at DESC)");
    return 0;
  });
}

void status_store::begin_attempt(const std::string& event_id, const std::string& merchant, const std::string& url,
                                 const std::string& body) {
  with_connection([&](pqxx::work& tx) {
    // A delivered or failed row stays so: this run is a redelivery after a crash or a replay.
    tx.exec_params("INSERT INTO " + m_table +
                       " AS n (event_id, merchant, status, attempts, url, body) VALUES ($1, $2, 'delivering', 1, $3, "
                       "$4) ON CONFLICT (event_id) DO UPDATE SET status = CASE WHEN n.status IN ('delivered', "
                       "'failed') THEN n.status ELSE 'delivering' END, attempts = n.attempts + 1, url = $3, body = $4, "
                       "next_attempt_at = NULL, updated_at = now()",
                   event_id, merchant, url, body);
    return 0;
  });
}

void status_store::skipped(const std::string& event_id, const std::string& merchant, const std::string& url,
                           const std::string& body, const std::string& why,
                           std::optional<std::chrono::milliseconds> next_attempt) {
  with_connection([&](pqxx::work& tx) {
    const long long next_ms = next_attempt ? next_attempt->count() : -1;
    tx.exec_params("INSERT INTO " + m_table +
                       " AS n (event_id, merchant, status, url, body, last_error) VALUES ($1, $2, 'pending', $3, $4, "
                       "$5) ON CONFLICT (event_id) DO UPDATE SET status = CASE WHEN n.status IN ('delivered', "
                       "'failed') THEN n.status ELSE 'pending' END, last_error = $5, updated_at = now(), "
                       "next_attempt_at = CASE WHEN $6::bigint < 0 THEN NULL ELSE now() + $6::bigint * interval '1 "
                       "millisecond' END",
                   event_id, merchant, url, body, why, next_ms);
    return 0;
  });
}

void status_store::attempt_failed(const std::string& event_id, long http_status, const std::string& error,
                                  std::optional<std::chrono::milliseconds> next_attempt) {
  with_connection([&](pqxx::work& tx) {
    const long long next_ms = next_attempt ? next_attempt->count() : -1;
    tx.exec_params(
        "UPDATE " + m_table +
            " SET status = CASE WHEN status IN ('delivered', 'failed') THEN status ELSE 'pending' END, "
            "last_http_status = NULLIF($2, 0), last_error = $3, next_attempt_at = CASE WHEN $4::bigint < 0 THEN NULL "
            "ELSE now() + $4::bigint * interval '1 millisecond' END, updated_at = now() WHERE event_id = $1",
        event_id, http_status, error, next_ms);
    return 0;
  });
}

double status_store::delivered(pqxx::work& tx, const std::string& event_id, long http_status) const {
  const auto res =
      tx.exec_params("UPDATE " + m_table +
                         " SET status = 'delivered', last_http_status = $2, last_error = NULL, next_attempt_at = NULL, "
                         "delivered_at = now(), updated_at = now() WHERE event_id = $1 "
                         "RETURNING extract(epoch FROM now() - created_at)::float8",
                     event_id, http_status);
  return res.empty() ? -1.0 : res[0][0].as<double>();
}

void status_store::failed(pqxx::work& tx, const std::string& event_id, const std::string& merchant,
                          const std::string& error) const {
  tx.exec_params("INSERT INTO " + m_table +
                     " AS n (event_id, merchant, status, last_error) VALUES ($1, $2, 'failed', $3) ON CONFLICT "
                     "(event_id) DO UPDATE SET status = CASE WHEN n.status = 'delivered' THEN n.status ELSE 'failed' "
                     "END, last_error = $3, next_attempt_at = NULL, updated_at = now()",
                 event_id, merchant, error);
}

void status_store::resent(const std::string& event_id, bool ok, long http_status, const std::string& error) {
  with_connection([&](pqxx::work& tx) {
    if (ok) {
      tx.exec_params("UPDATE " + m_table +
                         " SET status = 'delivered', attempts = attempts + 1, last_http_status = NULLIF($2, 0), "
                         "last_error = NULL, delivered_at = now(), updated_at = now() WHERE event_id = $1",
                     event_id, http_status);
    } else {
      tx.exec_params("UPDATE " + m_table +
                         " SET attempts = attempts + 1, last_http_status = NULLIF($2, 0), last_error = $3, "
                         "updated_at = now() WHERE event_id = $1",
                     event_id, http_status, "resend: " + error);
    }
    return 0;
  });
}

std::optional<nlohmann::json> status_store::find(const std::string& event_id) {
  return with_connection([&](pqxx::work& tx) -> std::optional<nlohmann::json> {
    const auto res =
        tx.exec_params(std::string("SELECT ") + k_columns + " FROM " + m_table + " WHERE event_id = $1", event_id);
    if (res.empty()) return std::nullopt;
    return to_json(res[0]);
  });
}

nlohmann::json status_store::list(const std::string& merchant, const std::string& status, int limit) {
  return with_connection([&](pqxx::work& tx) {
    const auto res = tx.exec_params(std::string("SELECT ") + k_columns + " FROM " + m_table +
                                        " WHERE ($1 = '' OR merchant = $1) AND ($2 = '' OR status = $2) ORDER BY "
                                        "updated_at DESC, event_id LIMIT $3",
                                    merchant, status, limit);
    nlohmann::json out = nlohmann::json::array();
    for (const auto& row : res) out.push_back(to_json(row));
    return out;
  });
}

std::optional<stored_notification> status_store::for_resend(const std::string& event_id) {
  return with_connection([&](pqxx::work& tx) -> std::optional<stored_notification> {
    const auto res = tx.exec_params("SELECT event_id, merchant, status, coalesce(url, ''), coalesce(body, '') FROM " +
                                        m_table + " WHERE event_id = $1",
                                    event_id);
    if (res.empty()) return std::nullopt;
    return stored_notification{res[0][0].as<std::string>(), res[0][1].as<std::string>(), res[0][2].as<std::string>(),
                               res[0][3].as<std::string>(), res[0][4].as<std::string>()};
  });
}

}  // namespace outbox::notify
