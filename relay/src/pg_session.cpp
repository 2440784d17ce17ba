#include "outbox/relay/pg_session.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cstdlib>

namespace outbox::relay {
namespace {

constexpr int k_poll_slice_ms = 100;

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

/// A refused login will be refused again: only an operator can help. (A certificate that does not verify is retried:
/// certificates are rotated, and the log says why each time.)
bool login_refused(std::string_view message) {
  return message.find("password authentication failed") != std::string_view::npos ||
         message.find("no pg_hba.conf entry") != std::string_view::npos ||
         message.find("authentication failed") != std::string_view::npos ||
         message.find("does not exist") != std::string_view::npos;
}

}  // namespace

conn_params conn_params::parse(std::string_view dsn) {
  char* err = nullptr;
  const std::string text(dsn);
  PQconninfoOption* opts = PQconninfoParse(text.c_str(), &err);
  if (opts == nullptr) {
    std::string why = err != nullptr ? trimmed(err) : "out of memory";
    if (err != nullptr) PQfreemem(err);
    throw outbox_error("config", "source.dsn is not a valid libpq connection string: " + log::redact_dsn(why));
  }
  conn_params p;
  p.m_original = text;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) p.m_entries.emplace_back(o->keyword, o->val);
  }
  PQconninfoFree(opts);
  return p;
}

void conn_params::set(std::string key, std::string value) {
  for (auto& [k, v] : m_entries) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  m_entries.emplace_back(std::move(key), std::move(value));
}

void conn_params::set_default(std::string key, std::string value) {
  if (!get(key)) m_entries.emplace_back(std::move(key), std::move(value));
}

void conn_params::add_option(std::string_view name, std::string_view value) {
  std::string opt = "-c " + std::string(name) + "=" + std::string(value);
  const auto existing = get("options");
  set("options", existing && !existing->empty() ? *existing + " " + opt : opt);
}

std::optional<std::string> conn_params::get(std::string_view key) const {
  for (const auto& [k, v] : m_entries) {
    if (k == key) return v;
  }
  return std::nullopt;
}

std::string conn_params::describe() const { return log::redact_dsn(m_original); }

pg_rows::pg_rows(pg_result* r) noexcept : m_res(r) {}
pg_rows::pg_rows(pg_rows&& o) noexcept : m_res(std::exchange(o.m_res, nullptr)) {}
pg_rows& pg_rows::operator=(pg_rows&& o) noexcept {
  if (this != &o) {
    if (m_res != nullptr) PQclear(m_res);
    m_res = std::exchange(o.m_res, nullptr);
  }
  return *this;
}
pg_rows::~pg_rows() {
  if (m_res != nullptr) PQclear(m_res);
}
int pg_rows::size() const noexcept { return m_res != nullptr ? PQntuples(m_res) : 0; }
int pg_rows::columns() const noexcept { return m_res != nullptr ? PQnfields(m_res) : 0; }
bool pg_rows::is_null(int row, int col) const noexcept { return PQgetisnull(m_res, row, col) != 0; }
std::string_view pg_rows::text(int row, int col) const noexcept {
  return {PQgetvalue(m_res, row, col), static_cast<std::size_t>(PQgetlength(m_res, row, col))};
}
std::optional<std::string> pg_rows::value(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return std::string(text(row, col));
}
long long pg_rows::affected() const noexcept {
  const char* n = m_res != nullptr ? PQcmdTuples(m_res) : nullptr;
  return n != nullptr && *n != '\0' ? std::atoll(n) : 0;
}

pg_session::pg_session(conn_params params, std::string what) : m_params(std::move(params)), m_what(std::move(what)) {}

pg_session::~pg_session() { close(); }

void pg_session::close() noexcept {
  if (m_conn != nullptr) {
    PQfinish(m_conn);
    m_conn = nullptr;
  }
}

void pg_session::abandon() noexcept { m_abandoned = true; }

bool pg_session::wait_socket(bool for_write, std::chrono::steady_clock::time_point deadline) {
  const int fd = PQsocket(m_conn);
  while (!abandoned()) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    const int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), k_poll_slice_ms)));
    if (n > 0) return true;
  }
  return false;
}

void pg_session::connect(std::chrono::milliseconds timeout) {
  close();
  std::vector<const char*> keys;
  std::vector<const char*> vals;
  for (const auto& [k, v] : m_params.entries()) {
    keys.push_back(k.c_str());
    vals.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  vals.push_back(nullptr);
  m_conn = PQconnectStartParams(keys.data(), vals.data(), 0);
  if (m_conn == nullptr)
    throw outbox_error("source", "cannot allocate a PostgreSQL connection", retry_class::retryable);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto fail = [&](const std::string& why, retry_class rc) {
    close();
    const bool replication = m_what == "replication connection";
    throw outbox_error("source",
                       "cannot connect to PostgreSQL (" + m_params.describe() + ", " + m_what + "): " + why +
                           (rc == retry_class::fatal && replication
                                ? "; the role needs the REPLICATION attribute and a pg_hba.conf entry for the database"
                                : ""),
                       rc);
  };
  if (PQstatus(m_conn) == CONNECTION_BAD) {
    const std::string why = trimmed(PQerrorMessage(m_conn));
    fail(why, login_refused(why) ? retry_class::fatal : retry_class::retryable);
  }
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (true) {
    if (st == PGRES_POLLING_OK) break;
    if (st == PGRES_POLLING_FAILED) {
      const std::string why = trimmed(PQerrorMessage(m_conn));
      fail(why, login_refused(why) ? retry_class::fatal : retry_class::retryable);
    }
    if (!wait_socket(st == PGRES_POLLING_WRITING, deadline)) {
      fail(abandoned() ? "abandoned while connecting" : "no answer within " + std::to_string(timeout.count()) + " ms",
           retry_class::retryable);
    }
    st = PQconnectPoll(m_conn);
  }
  PQsetnonblocking(m_conn, 1);
}

void pg_session::broken(const std::string& what) {
  std::string why = trimmed(m_conn != nullptr ? PQerrorMessage(m_conn) : "not connected");
  close();
  throw outbox_error("source", what + " on the " + m_what + ": " + why, retry_class::retryable);
}

pg_rows pg_session::exec(std::string_view sql) { return exec(sql, {}); }

pg_rows pg_session::exec(std::string_view sql, const std::vector<std::optional<std::string>>& params) {
  if (m_conn == nullptr) throw outbox_error("source", "the " + m_what + " is not open", retry_class::retryable);
  const std::string text(sql);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  const int sent = params.empty() ? PQsendQuery(m_conn, text.c_str())
                                  : PQsendQueryParams(m_conn, text.c_str(), static_cast<int>(values.size()), nullptr,
                                                      values.data(), nullptr, nullptr, 0);
  if (sent != 1) broken("sending a query failed");
  return finish_query(sql);
}

pg_rows pg_session::finish_query(std::string_view sql) {
  // No deadline of our own: statement_timeout bounds the server, tcp_user_timeout and keepalives the network.
  const auto forever = std::chrono::steady_clock::time_point::max();
  while (PQflush(m_conn) == 1) {
    if (!wait_socket(true, forever)) broken("abandoned while sending a query");
  }
  pg_rows last;
  PGresult* failed = nullptr;
  while (true) {
    while (PQisBusy(m_conn) != 0) {
      if (!wait_socket(false, forever)) {
        if (failed != nullptr) PQclear(failed);
        broken("abandoned while waiting for PostgreSQL");
      }
      if (PQconsumeInput(m_conn) == 0) {
        if (failed != nullptr) PQclear(failed);
        broken("the connection broke");
      }
    }
    PGresult* r = PQgetResult(m_conn);
    if (r == nullptr) break;
    const auto status = PQresultStatus(r);
    if (status == PGRES_FATAL_ERROR || status == PGRES_BAD_RESPONSE) {
      if (failed == nullptr) {
        failed = r;
      } else {
        PQclear(r);
      }
      continue;
    }
    last = pg_rows(r);
  }
  if (failed != nullptr) {
    const char* state = PQresultErrorField(failed, PG_DIAG_SQLSTATE);
    std::string message = trimmed(PQresultErrorMessage(failed));
    const std::string code = state != nullptr ? state : "";
    PQclear(failed);
    if (PQstatus(m_conn) == CONNECTION_BAD) close();
    retry_class rc = code.empty() ? retry_class::retryable : classify_sqlstate(code);
    if (rc == retry_class::in_doubt) rc = retry_class::retryable;
    const std::string shown = sql.size() > 120 ? std::string(sql.substr(0, 120)) + "…" : std::string(sql);
    throw outbox_error("source", message + (code.empty() ? "" : " (SQLSTATE " + code + ")") + " [" + shown + "]", rc);
  }
  return last;
}

int pg_session::server_version() const noexcept { return m_conn != nullptr ? PQserverVersion(m_conn) : 0; }

std::string pg_session::quote_ident(std::string_view name) const {
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

std::string pg_session::quote_literal(std::string_view text) const {
  std::string out = "'";
  bool backslash = false;
  for (const char c : text) {
    if (c == '\'') out += '\'';
    if (c == '\\') backslash = true;
    out += c;
  }
  out += '\'';
  return backslash ? "E" +
                         [&] {
                           std::string escaped;
                           for (const char c : out) {
                             if (c == '\\') escaped += '\\';
                             escaped += c;
                           }
                           return escaped;
                         }()
                   : out;
}

std::string quote_qualified(const pg_session& s, std::string_view schema, std::string_view table) {
  return s.quote_ident(schema) + "." + s.quote_ident(table);
}

}  // namespace outbox::relay
