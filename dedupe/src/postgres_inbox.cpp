#include "outbox/dedupe/postgres_inbox.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/record_format.hpp"
#include "outbox/base/text.hpp"
#include "outbox/dedupe/key_holds.hpp"

#include "event_id_check.hpp"

#include <pqxx/pqxx>

#include <algorithm>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace outbox::dedupe {
namespace {

/// Rows one cleanup statement deletes at most: bounds its lock time and the WAL it writes.
constexpr std::size_t k_cleanup_batch = 1000;

/// `schema.table` or `table`, each part quoted as an identifier.
std::string quote_table(pqxx::connection_base& c, const std::string& table) {
  std::string out;
  std::size_t start = 0;
  while (true) {
    const auto dot = table.find('.', start);
    const std::string part = table.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (part.empty()) {
      throw outbox_error("dedupe", "postgres inbox: table '" + table + "' is not a valid [schema.]table name",
                         retry_class::fatal);
    }
    if (!out.empty()) out += '.';
    out += c.quote_name(part);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return out;
}

/// An index name: `<table><suffix>` from the unqualified table name, in the table's schema.
std::string index_name(pqxx::connection_base& c, const std::string& table,
                       std::string_view suffix = "_processed_at_idx") {
  const auto dot = table.rfind('.');
  const std::string base = dot == std::string::npos ? table : table.substr(dot + 1);
  return c.quote_name(base.substr(0, 63 - suffix.size()) + std::string(suffix));
}

/// `outbox_dead_letters` in the schema of `inbox_table` (unqualified when the inbox is).
std::string default_dead_letter_table(const std::string& inbox_table) {
  const auto dot = inbox_table.rfind('.');
  return dot == std::string::npos ? "outbox_dead_letters" : inbox_table.substr(0, dot + 1) + "outbox_dead_letters";
}

/// With `create_tables` false: throws naming schema.sql unless every table in `tables` exists.
void require_tables(pqxx::connection& c, const std::vector<std::string>& tables) {
  pqxx::nontransaction look(c);
  for (const auto& t : tables) {
    if (look.exec_params1("SELECT to_regclass($1) IS NOT NULL", t)[0].as<bool>()) continue;
    throw outbox_error("dedupe",
                       "postgres inbox: table " + t +
                           " does not exist and inbox.create_table is false: create it in your migrations from "
                           "dedupe/schema.sql (installed as share/outbox/inbox_schema.sql), or let the SDK create it",
                       retry_class::fatal);
  }
}

}  // namespace

struct postgres_inbox::impl {
  std::string dsn;
  options opts;
  std::string quoted;      ///< the table, quoted for SQL
  std::string insert_sql;  ///< claim_in's statement
  std::string check_sql;   ///< still_claimed_in's statement
  std::string cleanup_sql;
  std::string dead_quoted;  ///< the dead-letter table, quoted for SQL
  std::string dead_insert_sql;
  std::string dead_replayed_sql;
  std::string dead_cleanup_sql;
  std::mutex mutex;  ///< guards `conn` (cleanup may run beside claim_in, which never touches it)
  std::unique_ptr<pqxx::connection> conn;

  [[noreturn]] void fail(const std::string& what, const std::exception& e) const {
    if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
      throw outbox_error(
          "dedupe",
          "postgres inbox " + opts.table + ": " + what + ": " + sql->what() + " (SQLSTATE " + sql->sqlstate() + ")",
          classify_sqlstate(sql->sqlstate()));
    }
    if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
      throw outbox_error("dedupe",
                         "postgres inbox " + opts.table + ": " + what + ": connection lost: " + e.what() +
                             "; check that PostgreSQL is up",
                         retry_class::retryable);
    }
    if (dynamic_cast<const pqxx::in_doubt_error*>(&e) != nullptr) {
      throw outbox_error("dedupe", "postgres inbox " + opts.table + ": " + what + ": " + e.what(),
                         retry_class::in_doubt);
    }
    throw outbox_error("dedupe", "postgres inbox " + opts.table + ": " + what + ": " + e.what(), retry_class::fatal);
  }

  pqxx::connection& connection() {
    if (!conn || !conn->is_open()) conn = std::make_unique<pqxx::connection>(dsn);
    return *conn;
  }
};

postgres_inbox::postgres_inbox(std::string dsn, options opts) : m_impl(std::make_unique<impl>()) {
  m_impl->dsn = std::move(dsn);
  m_impl->opts = std::move(opts);
  impl& d = *m_impl;
  if (d.opts.retention.count() <= 0) {
    throw outbox_error("dedupe", "postgres inbox " + d.opts.table + ": retention must be positive", retry_class::fatal);
  }
  if (d.opts.dead_letter_table.empty()) d.opts.dead_letter_table = default_dead_letter_table(d.opts.table);
  try {
    pqxx::connection& c = d.connection();
    d.quoted = quote_table(c, d.opts.table);
    d.dead_quoted = quote_table(c, d.opts.dead_letter_table);
    const std::string index = index_name(c, d.opts.table);
    const std::string dead_index = index_name(c, d.opts.dead_letter_table, "_dead_lettered_at_idx");
    if (!d.opts.create_tables) require_tables(c, {d.quoted, d.dead_quoted});
    // Two instances starting together may both try to create the table; the loser sees a unique violation
    // on the catalog and simply tries again (then IF NOT EXISTS holds).
    for (int attempt = 0; d.opts.create_tables; ++attempt) {
      try {
        pqxx::work tx(c);
        tx.exec0("CREATE TABLE IF NOT EXISTS " + d.quoted +
                 " (consumer_group text NOT NULL, event_id text NOT NULL,"
                 " processed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (consumer_group, event_id))");
        tx.exec0("CREATE INDEX IF NOT EXISTS " + index + " ON " + d.quoted + " (processed_at)");
        tx.exec0("CREATE TABLE IF NOT EXISTS " + d.dead_quoted +
                 " (consumer_group text NOT NULL, event_id text NOT NULL, topic text NOT NULL,"
                 " partition integer NOT NULL, \"offset\" bigint NOT NULL, error_class text NOT NULL,"
                 " error_message text NOT NULL, dead_lettered_at timestamptz NOT NULL DEFAULT now(),"
                 " replayed_at timestamptz, PRIMARY KEY (consumer_group, event_id))");
        tx.exec0("CREATE INDEX IF NOT EXISTS " + dead_index + " ON " + d.dead_quoted + " (dead_lettered_at)");
        tx.commit();
        break;
      } catch (const pqxx::unique_violation&) {
        if (attempt >= 2) throw;
      }
    }
  } catch (const outbox_error&) {
    throw;
  } catch (const std::exception& e) {
    d.fail("cannot create the inbox table", e);
  }
  d.insert_sql = "INSERT INTO " + d.quoted + " (consumer_group, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
  d.check_sql = "SELECT 1 FROM " + d.quoted + " WHERE consumer_group = $1 AND event_id = $2";
  d.cleanup_sql = "DELETE FROM " + d.quoted + " WHERE ctid IN (SELECT ctid FROM " + d.quoted +
                  " WHERE processed_at < now() - $1::bigint * interval '1 millisecond' LIMIT $2)";
  // A dead letter of a record that came back from a replay and failed again keeps when it was replayed.
  d.dead_insert_sql = "INSERT INTO " + d.dead_quoted +
                      " AS d (consumer_group, event_id, topic, partition, \"offset\", error_class, error_message,"
                      " replayed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $8 THEN now() END)"
                      " ON CONFLICT (consumer_group, event_id) DO UPDATE SET topic = excluded.topic,"
                      " partition = excluded.partition, \"offset\" = excluded.\"offset\","
                      " error_class = excluded.error_class, error_message = excluded.error_message,"
                      " dead_lettered_at = now(), replayed_at = coalesce(excluded.replayed_at, d.replayed_at)";
  d.dead_replayed_sql =
      "UPDATE " + d.dead_quoted + " SET replayed_at = now() WHERE consumer_group = $1 AND event_id = $2";
  d.dead_cleanup_sql = "DELETE FROM " + d.dead_quoted + " WHERE ctid IN (SELECT ctid FROM " + d.dead_quoted +
                       " WHERE dead_lettered_at < now() - $1::bigint * interval '1 millisecond' LIMIT $2)";
}

postgres_inbox::~postgres_inbox() = default;
postgres_inbox::postgres_inbox(postgres_inbox&&) noexcept = default;
postgres_inbox& postgres_inbox::operator=(postgres_inbox&&) noexcept = default;

bool postgres_inbox::claim_in(pqxx::transaction_base& tx, std::string_view group, std::string_view event_id,
                              std::string_view before) {
  detail::check_event_id(event_id);
  try {
    // A concurrent insert of the same key waits on the primary key until the other transaction ends: a commit
    // there makes this a conflict (nothing inserted), a rollback lets this insert through.
    if (before.empty())
      return tx.exec_params(m_impl->insert_sql, std::string(group), std::string(event_id)).affected_rows() == 1;
    return tx.exec(std::string(before) + "; INSERT INTO " + m_impl->quoted + " (consumer_group, event_id) VALUES (" +
                   tx.quote(std::string(group)) + ", " + tx.quote(std::string(event_id)) + ") ON CONFLICT DO NOTHING")
               .affected_rows() == 1;
  } catch (const std::exception& e) {
    m_impl->fail("claim of event " + std::string(event_id) + " for group " + std::string(group), e);
  }
}

bool postgres_inbox::still_claimed_in(pqxx::transaction_base& tx, std::string_view group, std::string_view event_id,
                                      std::string_view before) {
  try {
    if (before.empty()) return !tx.exec_params(m_impl->check_sql, std::string(group), std::string(event_id)).empty();
    return !tx.exec(std::string(before) + "; SELECT 1 FROM " + m_impl->quoted + " WHERE consumer_group = " +
                    tx.quote(std::string(group)) + " AND event_id = " + tx.quote(std::string(event_id)))
                .empty();
  } catch (const std::exception& e) {
    m_impl->fail("check of event " + std::string(event_id) + " for group " + std::string(group), e);
  }
}

postgres_inbox::claim_and_check postgres_inbox::claim_after_in(pqxx::transaction_base& tx, std::string_view group,
                                                               std::string_view event_id, std::string_view previous,
                                                               std::string_view before) {
  detail::check_event_id(event_id);
  try {
    const std::string g = tx.quote(std::string(group));
    std::string sql;
    if (!before.empty()) sql.append(before).append("; ");
    sql.append("WITH claim AS (INSERT INTO ")
        .append(m_impl->quoted)
        .append(" (consumer_group, event_id) VALUES (")
        .append(g)
        .append(", ")
        .append(tx.quote(std::string(event_id)))
        .append(") ON CONFLICT DO NOTHING RETURNING 1) SELECT (SELECT count(*) FROM claim), EXISTS (SELECT 1 FROM ")
        .append(m_impl->quoted)
        .append(" WHERE consumer_group = ")
        .append(g)
        .append(" AND event_id = ")
        .append(tx.quote(std::string(previous)))
        .append(")");
    const auto row = tx.exec1(sql);
    return {row[0].as<long>() == 1, row[1].as<bool>()};
  } catch (const std::exception& e) {
    m_impl->fail("claim of event " + std::string(event_id) + " for group " + std::string(group) +
                     " with the check of event " + std::string(previous),
                 e);
  }
}

void postgres_inbox::record_dead_letter(pqxx::transaction_base& tx, const dead_letter_entry& e) {
  detail::check_event_id(e.event_id);
  try {
    tx.exec_params(m_impl->dead_insert_sql, e.group, e.event_id, e.topic, e.partition, e.offset, e.error_class,
                   cut_utf8(e.error_message, record_format::k_max_error_message), e.replayed);
  } catch (const std::exception& ex) {
    m_impl->fail("recording the dead letter of event " + e.event_id + " for group " + e.group + " in " +
                     m_impl->opts.dead_letter_table,
                 ex);
  }
}

void postgres_inbox::note_replay_applied(pqxx::transaction_base& tx, std::string_view group,
                                         std::string_view event_id) {
  try {
    tx.exec_params(m_impl->dead_replayed_sql, std::string(group), std::string(event_id));
  } catch (const std::exception& e) {
    m_impl->fail("noting the replay of event " + std::string(event_id) + " in " + m_impl->opts.dead_letter_table, e);
  }
}

std::size_t postgres_inbox::cleanup(std::size_t limit) {
  impl& d = *m_impl;
  std::lock_guard lock(d.mutex);
  std::size_t deleted = 0;
  const auto keep = static_cast<long long>(std::max(d.opts.retention, d.opts.keep_at_least).count());
  try {
    for (const std::string* sql : {&d.cleanup_sql, &d.dead_cleanup_sql}) {
      while (deleted < limit) {
        const std::size_t batch = std::min(k_cleanup_batch, limit - deleted);
        pqxx::nontransaction tx(d.connection());  // each batch commits on its own: short locks, bounded WAL
        const pqxx::result r = tx.exec_params(*sql, keep, static_cast<long long>(batch));
        const auto n = static_cast<std::size_t>(r.affected_rows());
        deleted += n;
        if (n < batch) break;
      }
    }
  } catch (const std::exception& e) {
    if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) d.conn.reset();
    d.fail("retention cleanup", e);
  }
  return deleted;
}

const std::string& postgres_inbox::table() const { return m_impl->opts.table; }

const std::string& postgres_inbox::dead_letter_table() const { return m_impl->opts.dead_letter_table; }

std::chrono::milliseconds postgres_inbox::retention() const { return m_impl->opts.retention; }

namespace {

/// Key holds in `<inbox table>_parked`: `seq` keeps the order records were parked in.
class postgres_key_holds final : public key_holds {
 public:
  postgres_key_holds(std::string dsn, const std::string& inbox_table, std::chrono::milliseconds lapse,
                     bool create_table)
      : m_dsn(std::move(dsn)), m_lapse_ms(lapse.count()) {
    try {
      pqxx::connection& c = connection();
      m_quoted = quote_table(c, inbox_table + "_parked");
      if (!create_table) require_tables(c, {m_quoted});
      for (int attempt = 0; create_table; ++attempt) {
        try {
          pqxx::work tx(c);
          tx.exec0(
              "CREATE TABLE IF NOT EXISTS " + m_quoted +
              " (seq bigserial PRIMARY KEY, consumer_group text NOT NULL, topic text NOT NULL, key bytea NOT NULL,"
              " partition integer NOT NULL, \"offset\" bigint NOT NULL, parked_at timestamptz NOT NULL DEFAULT now(),"
              " UNIQUE (consumer_group, topic, key, partition, \"offset\"))");
          tx.commit();
          break;
        } catch (const pqxx::unique_violation&) {
          if (attempt >= 2) throw;
        }
      }
    } catch (const outbox_error&) {
      throw;
    } catch (const std::exception& e) {
      fail("cannot create the table of held keys", e);
    }
    m_add_sql =
        "INSERT INTO " + m_quoted +
        " (consumer_group, topic, key, partition, \"offset\") VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
    m_head_sql = "WITH lapsed AS (DELETE FROM " + m_quoted +
                 " WHERE consumer_group = $1 AND topic = $2 AND key = $3"
                 " AND parked_at < now() - $4::bigint * interval '1 millisecond')"
                 " SELECT partition, \"offset\" FROM " +
                 m_quoted +
                 " WHERE consumer_group = $1 AND topic = $2 AND key = $3"
                 " AND parked_at >= now() - $4::bigint * interval '1 millisecond' ORDER BY seq LIMIT 1";
    m_remove_sql = "DELETE FROM " + m_quoted +
                   " WHERE consumer_group = $1 AND topic = $2 AND key = $3 AND partition = $4 AND \"offset\" = $5";
  }

  void add(std::string_view group, std::string_view topic, std::string_view key, held_record r) override {
    run("hold", [&](pqxx::nontransaction& tx) {
      tx.exec_params(m_add_sql, std::string(group), std::string(topic), bytes(key), r.partition, r.offset);
    });
  }

  std::optional<held_record> head(std::string_view group, std::string_view topic, std::string_view key) override {
    std::optional<held_record> out;
    run("hold head", [&](pqxx::nontransaction& tx) {
      const pqxx::result res =
          tx.exec_params(m_head_sql, std::string(group), std::string(topic), bytes(key), m_lapse_ms);
      if (!res.empty()) out = held_record{res[0][0].as<std::int32_t>(), res[0][1].as<std::int64_t>()};
    });
    return out;
  }

  void remove(std::string_view group, std::string_view topic, std::string_view key, held_record r) override {
    run("hold release", [&](pqxx::nontransaction& tx) {
      tx.exec_params(m_remove_sql, std::string(group), std::string(topic), bytes(key), r.partition, r.offset);
    });
  }

 private:
  static pqxx::binarystring bytes(std::string_view key) { return pqxx::binarystring(key.data(), key.size()); }

  pqxx::connection& connection() {
    if (!m_conn || !m_conn->is_open()) m_conn = std::make_unique<pqxx::connection>(m_dsn);
    return *m_conn;
  }

  template <typename Fn>
  void run(const char* what, Fn&& fn) {
    std::lock_guard lock(m_mutex);
    try {
      pqxx::nontransaction tx(connection());
      fn(tx);
    } catch (const std::exception& e) {
      if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) m_conn.reset();
      fail(what, e);
    }
  }

  [[noreturn]] void fail(const std::string& what, const std::exception& e) const {
    if (const auto* sql = dynamic_cast<const pqxx::sql_error*>(&e)) {
      throw outbox_error(
          "dedupe", "held keys " + m_quoted + ": " + what + ": " + sql->what() + " (SQLSTATE " + sql->sqlstate() + ")",
          classify_sqlstate(sql->sqlstate()));
    }
    if (dynamic_cast<const pqxx::broken_connection*>(&e) != nullptr) {
      throw outbox_error(
          "dedupe",
          "held keys " + m_quoted + ": " + what + ": connection lost: " + e.what() + "; check that PostgreSQL is up",
          retry_class::retryable);
    }
    throw outbox_error("dedupe", "held keys " + m_quoted + ": " + what + ": " + e.what(), retry_class::retryable);
  }

  std::string m_dsn;
  long long m_lapse_ms;
  std::string m_quoted;
  std::string m_add_sql;
  std::string m_head_sql;
  std::string m_remove_sql;
  std::mutex m_mutex;
  std::unique_ptr<pqxx::connection> m_conn;
};

}  // namespace

std::unique_ptr<key_holds> make_postgres_key_holds(const std::string& dsn, const std::string& inbox_table,
                                                   std::chrono::milliseconds lapse, bool create_table) {
  return std::make_unique<postgres_key_holds>(dsn, inbox_table, lapse, create_table);
}

}  // namespace outbox::dedupe
