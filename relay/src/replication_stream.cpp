#include "outbox/relay/replication_stream.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/relay/copy_protocol.hpp"

#include <libpq-fe.h>

#include <chrono>
#include <memory>

namespace outbox::relay {
namespace {

struct result_deleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using result_ptr = std::unique_ptr<PGresult, result_deleter>;

/// A failed command's error, classified by its SQLSTATE (no SQLSTATE: the connection broke).
outbox_error replication_error(PGconn* conn, const PGresult* res, std::string_view what) {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  const retry_class retry = state != nullptr ? classify_sqlstate(state) : retry_class::retryable;
  std::string message = std::string(what) + ": " + PQerrorMessage(conn);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return {"replication", message, retry == retry_class::in_doubt ? retry_class::retryable : retry};
}

std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

std::string quote_literal(std::string_view value) {
  std::string out = "'";
  for (const char c : value) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + '\'';
}

}  // namespace

replication_stream::replication_stream(std::string dsn) : m_dsn(std::move(dsn)) {}

replication_stream::~replication_stream() { close(); }

system_identity replication_stream::connect() {
  close();
  // libpq takes the last value of a repeated keyword, so ours wins over one in the user's DSN.
  const bool is_uri = m_dsn.starts_with("postgres://") || m_dsn.starts_with("postgresql://");
  std::string conninfo = m_dsn;
  if (is_uri) {
    conninfo += (m_dsn.find('?') == std::string::npos ? "?" : "&");
    conninfo += "replication=database&application_name=outbox-relay";
  } else {
    conninfo += " replication=database application_name=outbox-relay";
  }
  m_conn = PQconnectdb(conninfo.c_str());
  if (PQstatus(m_conn) != CONNECTION_OK) {
    std::string message = PQerrorMessage(m_conn);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    close();
    const bool auth = message.find("authentication") != std::string::npos ||
                      message.find("no pg_hba.conf entry") != std::string::npos;
    throw outbox_error(
        "replication",
        "cannot open a replication connection (" + log::redact_dsn(m_dsn) + "): " + message +
            (auth ? "; the role needs the REPLICATION attribute and a pg_hba.conf `replication` entry" : ""),
        auth ? retry_class::fatal : retry_class::retryable);
  }
  result_ptr res(PQexec(m_conn, "IDENTIFY_SYSTEM"));
  if (PQresultStatus(res.get()) != PGRES_TUPLES_OK || PQntuples(res.get()) != 1 || PQnfields(res.get()) < 4) {
    throw replication_error(m_conn, res.get(), "IDENTIFY_SYSTEM failed");
  }
  system_identity id;
  id.system_id = PQgetvalue(res.get(), 0, 0);
  id.timeline = std::atoi(PQgetvalue(res.get(), 0, 1));
  id.wal_position = parse_lsn(PQgetvalue(res.get(), 0, 2)).value_or(0);
  id.database = PQgetvalue(res.get(), 0, 3);
  return id;
}

void replication_stream::start(std::string_view slot, std::string_view publication, lsn_t from) {
  const std::string sql = "START_REPLICATION SLOT " + quote_ident(slot) + " LOGICAL " + format_lsn(from) +
                          " (proto_version '1', publication_names " + quote_literal(quote_ident(publication)) +
                          ", messages 'true')";
  result_ptr res(PQexec(m_conn, sql.c_str()));
  if (PQresultStatus(res.get()) != PGRES_COPY_BOTH) {
    throw replication_error(m_conn, res.get(), "START_REPLICATION of slot " + std::string(slot) + " failed");
  }
  if (PQsetnonblocking(m_conn, 1) != 0) throw replication_error(m_conn, nullptr, "cannot set non-blocking mode");
}

int replication_stream::socket() const { return m_conn != nullptr ? PQsocket(m_conn) : -1; }

void replication_stream::free_buffer() {
  if (m_buffer != nullptr) {
    PQfreemem(m_buffer);
    m_buffer = nullptr;
  }
}

replication_stream::read_result replication_stream::read(std::string_view& out) {
  free_buffer();
  int n = PQgetCopyData(m_conn, &m_buffer, 1);
  if (n == 0) {
    if (PQconsumeInput(m_conn) == 0) throw replication_error(m_conn, nullptr, "replication connection lost");
    n = PQgetCopyData(m_conn, &m_buffer, 1);
  }
  if (n > 0) {
    out = std::string_view(m_buffer, static_cast<std::size_t>(n));
    return read_result::message;
  }
  if (n == 0) return read_result::would_block;
  if (n == -1) {
    result_ptr res(PQgetResult(m_conn));
    if (res != nullptr && PQresultStatus(res.get()) == PGRES_FATAL_ERROR) {
      throw replication_error(m_conn, res.get(), "replication stream ended");
    }
    return read_result::ended;
  }
  throw replication_error(m_conn, nullptr, "reading the replication stream failed");
}

void replication_stream::send_status(lsn_t written, lsn_t flushed, bool reply_requested) {
  if (m_conn == nullptr) return;
  const auto msg = make_standby_status_update(written, flushed, flushed,
                                              to_pg_epoch_us(std::chrono::system_clock::now()), reply_requested);
  if (PQputCopyData(m_conn, msg.data(), static_cast<int>(msg.size())) != 1) {
    throw replication_error(m_conn, nullptr, "sending a standby status update failed");
  }
  // Non-blocking: what does not fit now is sent by the next flush or read.
  if (PQflush(m_conn) == -1) throw replication_error(m_conn, nullptr, "sending a standby status update failed");
}

void replication_stream::close() {
  free_buffer();
  if (m_conn != nullptr) {
    PQfinish(m_conn);
    m_conn = nullptr;
  }
}

}  // namespace outbox::relay
