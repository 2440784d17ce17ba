#include "outbox/relay/replication_stream.hpp"

#include "outbox/base/error.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <cstdlib>

namespace outbox::relay {
namespace {

/// A broken replication connection: retryable, naming what failed and libpq's reason.
outbox_error broken(PGconn* conn, std::string_view what) {
  std::string message = std::string(what) + ": " + (conn != nullptr ? PQerrorMessage(conn) : "not connected");
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return {"replication", message, retry_class::retryable};
}

}  // namespace

std::int32_t leader_lock_key(std::string_view slot) {
  std::uint32_t h = 2166136261U;
  for (const char ch : slot) {
    h ^= static_cast<unsigned char>(ch);
    h *= 16777619U;
  }
  return static_cast<std::int32_t>(h & 0x7FFFFFFFU);
}

replication_stream::replication_stream(conn_params params) : m_session(std::move(params), "replication connection") {}

replication_stream::~replication_stream() { close(); }

system_identity replication_stream::connect(std::chrono::milliseconds timeout) {
  close();
  m_session.connect(timeout);
  const pg_rows r = m_session.exec("IDENTIFY_SYSTEM");
  if (r.size() != 1 || r.columns() < 4) throw outbox_error("replication", "IDENTIFY_SYSTEM gave an unexpected answer");
  system_identity id;
  id.system_id = std::string(r.text(0, 0));
  id.timeline = std::atoi(std::string(r.text(0, 1)).c_str());
  id.wal_position = parse_lsn(r.text(0, 2)).value_or(0);
  id.database = std::string(r.text(0, 3));
  return id;
}

created_slot replication_stream::create_slot(std::string_view slot, bool export_snapshot, bool failover) {
  std::string sql = "CREATE_REPLICATION_SLOT " + m_session.quote_ident(slot) + " LOGICAL pgoutput";
  if (m_session.server_version() >= 150000) {
    sql += export_snapshot ? " (SNAPSHOT 'export'" : " (SNAPSHOT 'nothing'";
    if (failover) sql += ", FAILOVER true";
    sql += ")";
  } else {
    sql += export_snapshot ? " EXPORT_SNAPSHOT" : " NOEXPORT_SNAPSHOT";
  }
  pg_rows r;
  try {
    r = m_session.exec(sql);
  } catch (const outbox_error& e) {
    throw outbox_error("replication", "cannot create replication slot " + std::string(slot) + ": " + e.what(),
                       e.value().retry);
  }
  created_slot out;
  if (r.size() == 1 && r.columns() >= 3) {
    out.consistent_point = parse_lsn(r.text(0, 1)).value_or(0);
    if (!r.is_null(0, 2)) out.snapshot_name = std::string(r.text(0, 2));
  }
  return out;
}

bool replication_stream::try_leader_lock(std::int32_t key) {
  // A replication connection takes simple queries only: the keys are numbers, so they go in as text.
  const pg_rows r = m_session.exec("SELECT pg_try_advisory_lock(" + std::to_string(k_leader_lock_class) + ", " +
                                   std::to_string(key) + ")");
  return r.size() == 1 && r.boolean(0, 0);
}

std::string replication_stream::leader_lock_holder(std::int32_t key) {
  const pg_rows r = m_session.exec(
      "SELECT a.pid::text, COALESCE(a.application_name, ''), COALESCE(host(a.client_addr), 'local'), "
      "COALESCE(to_char(a.backend_start, 'YYYY-MM-DD\"T\"HH24:MI:SSOF'), '') FROM pg_locks l JOIN pg_stat_activity a "
      "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.classid = " +
      std::to_string(k_leader_lock_class) + " AND l.objid = " + std::to_string(key) + " AND l.objsubid = 2");
  if (r.empty()) return {};
  return "pid " + std::string(r.text(0, 0)) + " (" + std::string(r.text(0, 1)) + " from " + std::string(r.text(0, 2)) +
         ", connected " + std::string(r.text(0, 3)) + ")";
}

void replication_stream::start(std::string_view slot, std::string_view publication, lsn_t from, bool messages) {
  PGconn* conn = m_session.raw();
  if (conn == nullptr) throw broken(conn, "START_REPLICATION");
  std::string options =
      "proto_version '1', publication_names " + m_session.quote_literal(m_session.quote_ident(publication));
  if (messages) options += ", messages 'true'";
  const std::string sql =
      "START_REPLICATION SLOT " + m_session.quote_ident(slot) + " LOGICAL " + format_lsn(from) + " (" + options + ")";
  // START_REPLICATION answers with CopyBoth, which pg_session::exec does not take: send it and wait here.
  if (PQsendQuery(conn, sql.c_str()) != 1) throw broken(conn, "sending START_REPLICATION failed");
  while (PQflush(conn) == 1) {
  }
  PGresult* res = nullptr;
  while (true) {
    if (PQconsumeInput(conn) == 0) throw broken(conn, "START_REPLICATION");
    if (PQisBusy(conn) == 0) {
      res = PQgetResult(conn);
      break;
    }
    if (m_session.abandoned()) throw broken(conn, "START_REPLICATION abandoned");
    pollfd p{PQsocket(conn), POLLIN, 0};
    ::poll(&p, 1, 100);
  }
  const auto status = PQresultStatus(res);
  if (status != PGRES_COPY_BOTH) {
    const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    std::string message = PQresultErrorMessage(res);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
    PQclear(res);
    while (PGresult* more = PQgetResult(conn)) PQclear(more);
    retry_class rc = state != nullptr ? classify_sqlstate(state) : retry_class::retryable;
    if (rc == retry_class::in_doubt) rc = retry_class::retryable;
    throw outbox_error("replication",
                       "START_REPLICATION of slot " + std::string(slot) + " failed: " + message +
                           (state != nullptr ? std::string(" (SQLSTATE ") + state + ")" : ""),
                       rc);
  }
  PQclear(res);
}

int replication_stream::socket() const { return m_session.raw() != nullptr ? PQsocket(m_session.raw()) : -1; }

void replication_stream::free_buffer() {
  if (m_buffer != nullptr) {
    PQfreemem(m_buffer);
    m_buffer = nullptr;
  }
}

replication_stream::read_result replication_stream::read(server_message& out) {
  free_buffer();
  PGconn* conn = m_session.raw();
  if (conn == nullptr) throw broken(conn, "reading the replication stream");
  int n = PQgetCopyData(conn, &m_buffer, 1);
  if (n == 0) {
    if (PQconsumeInput(conn) == 0) throw broken(conn, "replication connection lost");
    n = PQgetCopyData(conn, &m_buffer, 1);
  }
  if (n > 0) {
    out = parse_server_message(std::string_view(m_buffer, static_cast<std::size_t>(n)));
    return read_result::message;
  }
  if (n == 0) return read_result::would_block;
  if (n == -1) {
    PGresult* res = PQgetResult(conn);
    if (res != nullptr && PQresultStatus(res) == PGRES_FATAL_ERROR) {
      const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      std::string message = PQresultErrorMessage(res);
      while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
      retry_class rc = state != nullptr ? classify_sqlstate(state) : retry_class::retryable;
      if (rc == retry_class::in_doubt) rc = retry_class::retryable;
      PQclear(res);
      throw outbox_error(
          "replication",
          "replication stream ended: " + message + (state != nullptr ? std::string(" (SQLSTATE ") + state + ")" : ""),
          rc);
    }
    if (res != nullptr) PQclear(res);
    return read_result::ended;
  }
  throw broken(conn, "reading the replication stream failed");
}

void replication_stream::send_status(lsn_t written, lsn_t flushed, bool reply_requested) {
  PGconn* conn = m_session.raw();
  if (conn == nullptr) return;
  const auto msg = make_standby_status_update(written, flushed, flushed,
                                              to_pg_epoch_us(std::chrono::system_clock::now()), reply_requested);
  if (PQputCopyData(conn, msg.data(), static_cast<int>(msg.size())) != 1) {
    throw broken(conn, "sending a standby status update failed");
  }
  // Non-blocking: what does not fit now is sent by the next flush or read.
  if (PQflush(conn) == -1) throw broken(conn, "sending a standby status update failed");
}

void replication_stream::finish(std::chrono::milliseconds timeout) {
  PGconn* conn = m_session.raw();
  if (conn == nullptr) return;
  free_buffer();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto wait = [&](short events) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{PQsocket(conn), events, 0};
    return ::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 100))) >= 0;
  };
  auto flush = [&] {
    int r = 0;
    while ((r = PQflush(conn)) == 1) {
      if (!wait(POLLOUT)) return false;
    }
    return r == 0;
  };
  if (flush() && PQputCopyEnd(conn, nullptr) == 1 && flush()) {
    // The server answers CopyDone only after it processed every message before it, the status update included.
    while (std::chrono::steady_clock::now() < deadline) {
      char* buf = nullptr;
      const int n = PQgetCopyData(conn, &buf, 1);
      if (buf != nullptr) PQfreemem(buf);
      if (n > 0) continue;
      if (n == -1) {
        while (PGresult* r = PQgetResult(conn)) PQclear(r);
        break;
      }
      if (n < -1) break;
      if (!wait(POLLIN) || PQconsumeInput(conn) == 0) break;
    }
  }
  close();
}

void replication_stream::close() {
  free_buffer();
  m_session.close();
}

}  // namespace outbox::relay
