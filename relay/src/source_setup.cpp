#include "outbox/relay/source_setup.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"

#include <pqxx/pqxx>

#include <set>

namespace outbox::relay {
namespace {

std::string qualified(const table_route& r) { return r.schema + "." + r.table; }

std::string quoted_table(pqxx::connection_base& c, const table_route& r) {
  return c.quote_name(r.schema) + "." + c.quote_name(r.table);
}

void check_tables(pqxx::nontransaction& tx, const settings& s, source_report& report) {
  for (std::size_t i = 0; i < s.tables.size(); ++i) {
    const auto& route = s.tables[i].route;
    const std::string name = qualified(route);
    const std::string key = "source.tables[" + std::to_string(i) + "]";
    const auto oid =
        tx.exec1("SELECT to_regclass(" +
                 tx.quote(tx.conn().quote_name(route.schema) + "." + tx.conn().quote_name(route.table)) + ")::oid")[0];
    report.id_column_types.emplace_back();
    if (oid.is_null()) {
      report.problems.push_back("table " + name + " (" + key + ".name) does not exist in database " +
                                tx.conn().dbname() + ": create it or fix the name");
      continue;
    }
    const std::string toid = oid.c_str();
    std::set<std::string> present;
    for (const auto& row :
         tx.exec("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = " + toid +
                 " AND attnum > 0 AND NOT attisdropped")) {
      present.insert(row[0].c_str());
      if (row[0].c_str() == route.columns.id) report.id_column_types.back() = row[1].c_str();
    }
    const std::pair<const char*, const std::string*> mapped[] = {{"id", &route.columns.id},
                                                                 {"aggregate_type", &route.columns.aggregate_type},
                                                                 {"aggregate_id", &route.columns.aggregate_id},
                                                                 {"event_type", &route.columns.event_type},
                                                                 {"payload", &route.columns.payload},
                                                                 {"headers", &route.columns.headers}};
    for (const auto& [what, column] : mapped) {
      // The headers column is optional: a table without it publishes no extra headers.
      if (present.count(*column) == 0 && std::string_view(what) != "headers") {
        report.problems.push_back("table " + name + " has no column " + *column + " (mapped from " + key + ".columns." +
                                  what + "): add it or map " + what + " to an existing column");
      }
    }
    if (!tx.exec1("SELECT has_table_privilege(" + toid + "::oid, 'SELECT')")[0].as<bool>()) {
      report.problems.push_back("role " + std::string(tx.exec1("SELECT current_user")[0].c_str()) +
                                " may not SELECT from " + name + ": GRANT SELECT ON " + name + " TO it");
    }
    if (s.tables[i].delete_after_publish &&
        !tx.exec1("SELECT has_table_privilege(" + toid + "::oid, 'DELETE')")[0].as<bool>()) {
      report.problems.push_back(key + ".delete_after_publish is on but the role may not DELETE from " + name +
                                ": GRANT DELETE ON " + name + " TO it");
    }
  }
}

void check_publication(pqxx::nontransaction& tx, const settings& s, bool create_missing, source_report& report) {
  auto pub = tx.exec("SELECT pubinsert FROM pg_publication WHERE pubname = " + tx.quote(s.publication));
  if (pub.empty()) {
    if (!create_missing || !report.ok()) {
      report.facts.emplace_back("publication", s.publication + " (missing; the relay creates it)");
      return;
    }
    std::string sql = "CREATE PUBLICATION " + tx.conn().quote_name(s.publication);
    if (!s.tables.empty()) {
      sql += " FOR TABLE ";
      for (std::size_t i = 0; i < s.tables.size(); ++i) {
        sql += (i > 0 ? ", " : "") + quoted_table(tx.conn(), s.tables[i].route);
      }
    }
    sql += " WITH (publish = 'insert')";
    try {
      tx.exec(sql);
    } catch (const pqxx::sql_error& e) {
      report.problems.push_back("cannot create publication " + s.publication + ": " + e.what() +
                                "; create it as the table owner: " + sql);
      return;
    }
    log::info("source", "publication created", {{"publication", s.publication}});
    report.facts.emplace_back("publication", s.publication + " (created)");
    return;
  }
  if (!pub[0][0].as<bool>()) {
    report.problems.push_back("publication " + s.publication + " does not publish inserts: ALTER PUBLICATION " +
                              s.publication + " SET (publish = 'insert')");
  }
  std::set<std::string> published;
  for (const auto& row : tx.exec("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = " +
                                 tx.quote(s.publication))) {
    published.insert(row[0].c_str());
  }
  for (const auto& t : s.tables) {
    if (published.count(qualified(t.route)) == 0) {
      report.problems.push_back("publication " + s.publication + " does not include table " + qualified(t.route) +
                                ": ALTER PUBLICATION " + s.publication + " ADD TABLE " + qualified(t.route));
    }
  }
  report.facts.emplace_back("publication",
                            s.publication + " (exists, " + std::to_string(published.size()) + " table(s))");
}

void check_slot(pqxx::nontransaction& tx, const settings& s, bool create_missing, source_report& report) {
  auto slot = tx.exec(
      "SELECT plugin, slot_type, database, confirmed_flush_lsn::text, active FROM pg_replication_slots "
      "WHERE slot_name = " +
      tx.quote(s.slot));
  if (slot.empty()) {
    if (!create_missing || !report.ok()) {
      report.facts.emplace_back("slot", s.slot + " (missing; the relay creates it with pgoutput)");
      return;
    }
    try {
      const auto row =
          tx.exec1("SELECT lsn::text FROM pg_create_logical_replication_slot(" + tx.quote(s.slot) + ", 'pgoutput')");
      report.slot_confirmed_lsn = parse_lsn(row[0].c_str());
    } catch (const pqxx::sql_error& e) {
      report.problems.push_back("cannot create replication slot " + s.slot + ": " + e.what());
      return;
    }
    log::info("source", "slot created", {{"slot", s.slot}, {"lsn", format_lsn(report.slot_confirmed_lsn.value_or(0))}});
    report.facts.emplace_back("slot",
                              s.slot + " (created at " + format_lsn(report.slot_confirmed_lsn.value_or(0)) + ")");
    return;
  }
  const auto row = slot[0];
  const std::string plugin = row[0].is_null() ? "" : row[0].c_str();
  const std::string database = row[2].is_null() ? "" : row[2].c_str();
  if (std::string_view(row[1].c_str()) != "logical" || plugin != "pgoutput") {
    report.problems.push_back("replication slot " + s.slot + " exists but is " + row[1].c_str() + " with plugin '" +
                              plugin + "', not logical with pgoutput: drop it (SELECT pg_drop_replication_slot('" +
                              s.slot + "')) or set source.slot to another name");
    return;
  }
  if (database != tx.conn().dbname()) {
    report.problems.push_back("replication slot " + s.slot + " belongs to database " + database + ", not " +
                              tx.conn().dbname() + ": set source.slot to another name");
    return;
  }
  if (!row[3].is_null()) report.slot_confirmed_lsn = parse_lsn(row[3].c_str());
  report.facts.emplace_back("slot", s.slot + " (pgoutput, confirmed " + (row[3].is_null() ? "-" : row[3].c_str()) +
                                        (row[4].as<bool>() ? ", active" : ", inactive") + ")");
}

}  // namespace

source_report prepare_source(const settings& s, bool create_missing) {
  std::unique_ptr<pqxx::connection> conn;
  try {
    conn = std::make_unique<pqxx::connection>(s.dsn);
  } catch (const pqxx::broken_connection& e) {
    std::string what = e.what();
    while (!what.empty() && what.back() == '\n') what.pop_back();
    const bool auth = what.find("authentication") != std::string::npos || what.find("password") != std::string::npos;
    throw outbox_error("source", "cannot connect to PostgreSQL (" + log::redact_dsn(s.dsn) + "): " + what,
                       auth ? retry_class::fatal : retry_class::retryable);
  }
  source_report report;
  pqxx::nontransaction tx(*conn);
  report.facts.emplace_back("server", tx.exec1("SELECT version()")[0].c_str());
  report.facts.emplace_back("database", conn->dbname());
  const std::string wal_level = tx.exec1("SHOW wal_level")[0].c_str();
  report.facts.emplace_back("wal_level", wal_level);
  if (wal_level != "logical") {
    report.problems.push_back("wal_level is '" + wal_level +
                              "' but logical replication needs 'logical': set wal_level = logical in "
                              "postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL");
  }
  const auto role =
      tx.exec1("SELECT current_user, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user");
  report.facts.emplace_back("role", std::string(role[0].c_str()) + (role[1].as<bool>() ? " (REPLICATION)" : ""));
  if (!role[1].as<bool>()) {
    report.problems.push_back(std::string("role ") + role[0].c_str() + " lacks the REPLICATION attribute: ALTER ROLE " +
                              role[0].c_str() + " WITH REPLICATION");
  }
  check_tables(tx, s, report);
  check_publication(tx, s, create_missing, report);
  check_slot(tx, s, create_missing, report);
  return report;
}

}  // namespace outbox::relay
