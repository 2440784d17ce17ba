#include "backfill.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"

namespace outbox::relay {
namespace {

/// The row's xmin widened to the 64-bit xid8 that pg_visible_in_snapshot takes, relative to the current snapshot's
/// xmax (exact for every transaction of the last 2^31, i.e. every row not frozen long ago).
constexpr const char* k_xid8_of_xmin =
    "(CASE WHEN ((ref.r >> 32) << 32 | t.xmin::text::bigint) > ref.r "
    "THEN (((ref.r >> 32) << 32) | t.xmin::text::bigint) - 4294967296 "
    "ELSE ((ref.r >> 32) << 32) | t.xmin::text::bigint END)::text::xid8";

}  // namespace

backfill_reader::backfill_reader(conn_params params, std::chrono::milliseconds connect_timeout,
                                 const config::relay_config& c, std::vector<table_facts> facts, backfill_spec spec,
                                 std::size_t batch_rows, batch_handler on_batch, error_handler on_error)
    : m_session(std::move(params), "backfill connection"),
      m_connect_timeout(connect_timeout),
      m_config(c),
      m_facts(std::move(facts)),
      m_spec(std::move(spec)),
      m_batch_rows(batch_rows),
      m_on_batch(std::move(on_batch)),
      m_on_error(std::move(on_error)) {
  m_thread = std::thread([this] { run(); });
}

backfill_reader::~backfill_reader() { stop(); }

void backfill_reader::request() {
  {
    const std::lock_guard lock(m_mutex);
    ++m_requests;
  }
  m_wake.notify_one();
}

void backfill_reader::stop() noexcept {
  {
    const std::lock_guard lock(m_mutex);
    m_stopping = true;
  }
  m_session.abandon();
  m_wake.notify_all();
  if (m_thread.joinable()) m_thread.join();
}

void backfill_reader::open_table(std::size_t i) {
  const auto& t = m_config.source.tables[m_spec.tables[i]];
  const auto& facts = m_facts[m_spec.tables[i]];
  std::string cols;
  for (const auto& [name, type] : facts.columns) cols += "t." + m_session.quote_ident(name) + "::text, ";
  std::string sql =
      "DECLARE outbox_backfill_" + std::to_string(i) + " NO SCROLL CURSOR FOR SELECT " + cols + "t.xmin::text, ";
  sql += m_spec.commit_timestamps ? "(extract(epoch FROM pg_xact_commit_timestamp(t.xmin)) * 1000)::bigint::text "
                                  : "NULL::text ";
  sql += "FROM " + quote_qualified(m_session, t.schema, t.table) +
         " t, (SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS r) ref";
  if (!m_spec.visible_in.empty()) {
    sql += " WHERE pg_visible_in_snapshot(" + std::string(k_xid8_of_xmin) + ", " +
           m_session.quote_literal(m_spec.visible_in) + "::pg_snapshot)";
  }
  sql += " ORDER BY ";
  if (m_spec.commit_timestamps) sql += "pg_xact_commit_timestamp(t.xmin) NULLS FIRST, ";
  sql += "age(t.xmin) DESC, t.ctid";
  m_session.exec(sql);
}

void backfill_reader::run() {
  try {
    m_session.connect(m_connect_timeout);
    m_session.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (!m_spec.import_snapshot.empty()) {
      m_session.exec("SET TRANSACTION SNAPSHOT " + m_session.quote_literal(m_spec.import_snapshot));
    }
    // The cursor's statement may take long on a big table; it runs once, the FETCHes are short.
    m_session.exec("SET LOCAL statement_timeout = 0");
    for (std::size_t i = 0; i < m_spec.tables.size(); ++i) {
      const auto& t = m_config.source.tables[m_spec.tables[i]];
      const auto& facts = m_facts[m_spec.tables[i]];
      auto rel = std::make_shared<relation>();
      rel->oid = facts.oid;
      rel->schema = t.schema;
      rel->name = t.table;
      rel->replica_identity = 'd';
      for (const auto& [name, type] : facts.columns) rel->columns.push_back(column{name, type, -1, false});
      open_table(i);
      log::info("relay", "backfill: reading table", {{"table", t.qualified_name()}});
      while (true) {
        {
          std::unique_lock lock(m_mutex);
          m_wake.wait(lock, [this] { return m_stopping || m_requests > 0; });
          if (m_stopping) return;
          --m_requests;
        }
        pg_rows rows =
            m_session.exec("FETCH " + std::to_string(m_batch_rows) + " FROM outbox_backfill_" + std::to_string(i));
        const bool table_done = static_cast<std::size_t>(rows.size()) < m_batch_rows;
        const bool last = table_done && i + 1 == m_spec.tables.size();
        m_on_batch(backfill_batch{m_spec.tables[i], rel, std::move(rows), last});
        if (table_done) {
          if (!last) {
            // The next table's first batch comes without another request: this one was empty or short.
            const std::lock_guard lock(m_mutex);
            ++m_requests;
          }
          break;
        }
      }
    }
    m_session.exec("COMMIT");
    m_session.close();
  } catch (const outbox_error& e) {
    if (!m_session.abandoned()) m_on_error(e);
  }
}

}  // namespace outbox::relay
