#include "outbox/relay/source_setup.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/relay/pg_types.hpp"

#include <algorithm>
#include <cstdlib>
#include <set>

namespace outbox::relay {
namespace {

using params = std::vector<std::optional<std::string>>;

std::string ms_text(std::chrono::milliseconds d) { return std::to_string(d.count()); }

const std::string& mapped(const config::column_map& m, std::size_t f) {
  switch (f) {
    case 0:
      return m.id;
    case 1:
      return m.aggregate_type;
    case 2:
      return m.aggregate_id;
    case 3:
      return m.event_type;
    case 4:
      return m.payload;
    default:
      return m.headers;
  }
}

constexpr const char* k_fields[] = {"id", "aggregate_type", "aggregate_id", "event_type", "payload", "headers"};

void check_tables(pg_session& s, const config::relay_config& c, source_report& report) {
  const std::string user(s.exec("SELECT current_user").text(0, 0));
  for (std::size_t i = 0; i < c.source.tables.size(); ++i) {
    const auto& t = c.source.tables[i];
    const std::string name = t.qualified_name();
    const std::string key = "source.tables[" + std::to_string(i) + "]";
    table_facts facts;
    const auto rel = s.exec(
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2",
        params{t.schema, t.table});
    if (rel.empty()) {
      report.problems.push_back("table " + name + " (" + key + ".name) does not exist in database " +
                                std::string(s.exec("SELECT current_database()").text(0, 0)) +
                                ": create it or fix the name");
      report.tables.push_back(facts);
      continue;
    }
    facts.oid = static_cast<std::uint32_t>(std::strtoul(std::string(rel.text(0, 0)).c_str(), nullptr, 10));
    facts.partitioned = rel.text(0, 1) == "p";
    const std::string oid(rel.text(0, 0));
    const auto cols = s.exec(
        "SELECT attname, atttypid, format_type(atttypid, atttypmod), attgenerated <> '' FROM pg_attribute "
        "WHERE attrelid = $1::oid AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        params{oid});
    std::set<std::string> present;
    std::set<std::string> generated;
    for (int r = 0; r < cols.size(); ++r) {
      const std::string col(cols.text(r, 0));
      present.insert(col);
      if (cols.boolean(r, 3)) {
        generated.insert(col);
      } else {
        facts.columns.emplace_back(
            col, static_cast<std::uint32_t>(std::strtoul(std::string(cols.text(r, 1)).c_str(), nullptr, 10)));
      }
      if (col == t.columns.id) facts.id_type = std::string(cols.text(r, 2));
    }
    for (std::size_t f = 0; f < 6; ++f) {
      const std::string& col = mapped(t.columns, f);
      const bool optional = f == 5;  // a table without a headers column publishes no extra headers
      if (present.count(col) == 0) {
        if (!optional) {
          report.problems.push_back("table " + name + " has no column " + col + " (mapped from " + key + ".columns." +
                                    k_fields[f] + "): add it or map " + k_fields[f] + " to an existing column");
        }
        continue;
      }
      if (generated.count(col) != 0 && s.server_version() < 180000) {
        report.problems.push_back("column " + col + " of " + name + " (" + k_fields[f] +
                                  ") is a generated column, which pgoutput does not publish before PostgreSQL 18: "
                                  "make it a plain column filled by the application or a trigger");
      }
    }
    if (!s.exec("SELECT has_table_privilege($1::oid, 'SELECT')", params{oid}).boolean(0, 0)) {
      report.problems.push_back("role " + user + " may not SELECT from " + name + ": GRANT SELECT ON " + name + " TO " +
                                user);
    }
    if (t.delete_after_publish && !s.exec("SELECT has_table_privilege($1::oid, 'DELETE')", params{oid}).boolean(0, 0)) {
      report.problems.push_back(key + ".delete_after_publish is on but the role may not DELETE from " + name +
                                ": GRANT DELETE ON " + name + " TO " + user);
    }
    report.tables.push_back(std::move(facts));
  }
}

std::string create_publication_sql(pg_session& s, const config::relay_config& c) {
  std::string sql = "CREATE PUBLICATION " + s.quote_ident(c.source.publication);
  if (!c.source.tables.empty()) {
    sql += " FOR TABLE ";
    for (std::size_t i = 0; i < c.source.tables.size(); ++i) {
      sql += (i > 0 ? ", " : "") + quote_qualified(s, c.source.tables[i].schema, c.source.tables[i].table);
    }
  }
  // Partitioned outboxes: every partition's rows, also of partitions attached later, come under the parent's name.
  sql += " WITH (publish = 'insert', publish_via_partition_root = true)";
  return sql;
}

void check_publication(pg_session& s, const config::relay_config& c, bool create_missing, source_report& report) {
  const std::string& pub_name = c.source.publication;
  const auto pub =
      s.exec("SELECT pubinsert, puballtables, pubviaroot FROM pg_publication WHERE pubname = $1", params{pub_name});
  if (pub.empty()) {
    const std::string sql = create_publication_sql(s, c);
    if (!create_missing || !report.ok()) {
      report.facts.emplace_back("publication", pub_name + " (missing; the relay creates it: " + sql + ")");
      return;
    }
    try {
      s.exec(sql);
    } catch (const outbox_error& e) {
      report.problems.push_back("cannot create publication " + pub_name + ": " + e.what() +
                                "; create it as the table owner: " + sql);
      return;
    }
    log::info("source", "publication created", {{"publication", pub_name}});
    report.facts.emplace_back("publication", pub_name + " (created, publish_via_partition_root)");
    return;
  }
  const std::string alter = "ALTER PUBLICATION " + s.quote_ident(pub_name);
  if (!pub.boolean(0, 0)) {
    report.problems.push_back("publication " + pub_name + " does not publish inserts: " + alter +
                              " SET (publish = 'insert')");
  }
  if (pub.boolean(0, 1)) {
    report.problems.push_back("publication " + pub_name +
                              " is FOR ALL TABLES: the relay would receive the rows of every table and stops at the "
                              "first row of a table that is not in source.tables (it never drops one); give the relay "
                              "a publication of its own: " +
                              create_publication_sql(s, c));
    return;
  }
  const bool via_root = pub.boolean(0, 2);
  const bool pg15 = s.server_version() >= 150000;
  const auto published = s.exec(
      pg15 ? "SELECT schemaname, tablename, array_to_string(attnames, ','), rowfilter FROM pg_publication_tables "
             "WHERE pubname = $1"
           : "SELECT schemaname, tablename, NULL::text, NULL::text FROM pg_publication_tables WHERE pubname = $1",
      params{pub_name});
  std::set<std::string> names;
  for (int r = 0; r < published.size(); ++r) {
    const std::string name = std::string(published.text(r, 0)) + "." + std::string(published.text(r, 1));
    names.insert(name);
    const auto configured = std::find_if(c.source.tables.begin(), c.source.tables.end(),
                                         [&](const config::table_source& t) { return t.qualified_name() == name; });
    if (configured == c.source.tables.end()) continue;
    if (!published.is_null(r, 3)) {
      report.problems.push_back("publication " + pub_name + " filters the rows of " + name + " (WHERE " +
                                std::string(published.text(r, 3)) + "): filtered rows would never reach Kafka; " +
                                alter +
                                " SET TABLE without the WHERE, "
                                "or give the relay a publication of its own");
    }
    if (!published.is_null(r, 2)) {
      std::set<std::string> cols;
      std::string list(published.text(r, 2));
      for (std::size_t start = 0; start <= list.size();) {
        const std::size_t comma = std::min(list.find(',', start), list.size());
        cols.insert(list.substr(start, comma - start));
        start = comma + 1;
      }
      for (std::size_t f = 0; f < 6; ++f) {
        const std::string& col = mapped(configured->columns, f);
        const bool in_table = std::any_of(report.tables.begin(), report.tables.end(), [&](const table_facts& t) {
          return std::any_of(t.columns.begin(), t.columns.end(), [&](const auto& c2) { return c2.first == col; });
        });
        if (in_table && cols.count(col) == 0) {
          report.problems.push_back("publication " + pub_name + " publishes only some columns of " + name + ", not " +
                                    col + " (" + k_fields[f] + "): add it to the column list (" + alter +
                                    " SET TABLE " + name + " (...)) or publish every column");
        }
      }
    }
  }
  for (std::size_t i = 0; i < c.source.tables.size(); ++i) {
    const auto& t = c.source.tables[i];
    const bool partitioned = i < report.tables.size() && report.tables[i].partitioned;
    if (partitioned && !via_root) {
      report.problems.push_back("table " + t.qualified_name() + " is partitioned and publication " + pub_name +
                                " publishes partitions under their own names, which the relay would not recognise: " +
                                alter + " SET (publish_via_partition_root = true)");
      continue;
    }
    if (names.count(t.qualified_name()) == 0) {
      report.problems.push_back("publication " + pub_name + " does not include table " + t.qualified_name() + ": " +
                                alter + " ADD TABLE " + t.qualified_name() +
                                " (add a table to the publication before the application first writes to it)");
    }
  }
  if (via_root || report.tables.empty() ||
      std::none_of(report.tables.begin(), report.tables.end(), [](const table_facts& t) { return t.partitioned; })) {
    for (const auto& name : names) {
      const bool configured = std::any_of(c.source.tables.begin(), c.source.tables.end(),
                                          [&](const config::table_source& t) { return t.qualified_name() == name; });
      if (!configured) {
        report.problems.push_back("publication " + pub_name + " also publishes table " + name +
                                  ", which is not in source.tables: the relay would stop at its first row (it never "
                                  "drops one). Add it to source.tables, or " +
                                  alter + " DROP TABLE " + name);
      }
    }
  }
  report.facts.emplace_back("publication", pub_name + " (exists, " + std::to_string(names.size()) + " table(s)" +
                                               (via_root ? ", publish_via_partition_root" : "") + ")");
}

}  // namespace

conn_params side_params(const config::source_config& c) {
  conn_params p = conn_params::parse(c.dsn);
  p.set("client_encoding", "UTF8");
  p.add_option("bytea_output", "hex");
  p.add_option("statement_timeout", ms_text(c.statement_timeout));
  p.add_option("lock_timeout", ms_text(c.lock_timeout));
  p.set_default("connect_timeout", std::to_string(std::max<long long>(2, (c.connect_timeout.count() + 999) / 1000)));
  p.set_default("keepalives", "1");
  p.set_default("keepalives_idle", "10");
  p.set_default("keepalives_interval", "5");
  p.set_default("keepalives_count", "3");
  if (c.tcp_user_timeout.count() > 0) p.set_default("tcp_user_timeout", ms_text(c.tcp_user_timeout));
  p.set_default("application_name", "outbox-relay");
  return p;
}

conn_params replication_params(const config::source_config& c) {
  conn_params p = conn_params::parse(c.dsn);
  p.set("replication", "database");
  p.set("client_encoding", "UTF8");
  p.add_option("bytea_output", "hex");
  if (c.wal_sender_timeout.count() > 0) p.add_option("wal_sender_timeout", ms_text(c.wal_sender_timeout));
  p.set_default("connect_timeout", std::to_string(std::max<long long>(2, (c.connect_timeout.count() + 999) / 1000)));
  p.set_default("keepalives", "1");
  p.set_default("keepalives_idle", "10");
  p.set_default("keepalives_interval", "5");
  p.set_default("keepalives_count", "3");
  if (c.tcp_user_timeout.count() > 0) p.set_default("tcp_user_timeout", ms_text(c.tcp_user_timeout));
  p.set_default("application_name", "outbox-relay");
  return p;
}

std::string state_table_ddl(const config::relay_config& c) {
  return "CREATE TABLE " + c.source.state_table_name() +
         " (slot_name text PRIMARY KEY, system_identifier text NOT NULL, timeline integer NOT NULL, database text NOT "
         "NULL, slot_created_lsn pg_lsn, backfill text NOT NULL, backfill_snapshot text, backfill_tables text NOT NULL "
         "DEFAULT '', relay_version text, updated_at timestamptz NOT NULL DEFAULT now(), leader_epoch bigint NOT NULL "
         "DEFAULT 0)";
}

slot_facts read_slot(pg_session& s, const config::relay_config& c) {
  const int v = s.server_version();
  std::string sql =
      "SELECT plugin, slot_type, database, confirmed_flush_lsn::text, restart_lsn::text, active, active_pid::text, "
      "COALESCE(wal_status, ''), safe_wal_size::text, ";
  sql += v >= 160000 ? "COALESCE(conflicting, false), " : "false, ";
  sql += v >= 170000 ? "COALESCE(invalidation_reason, ''), failover, synced, "
                       "COALESCE(current_setting('synchronized_standby_slots', true), '') "
                     : "'', false, false, '' ";
  sql += "FROM pg_replication_slots WHERE slot_name = $1";
  const auto r = s.exec(sql, params{c.source.slot});
  slot_facts f;
  if (r.empty()) return f;
  f.exists = true;
  f.plugin = std::string(r.text(0, 0));
  f.slot_type = std::string(r.text(0, 1));
  f.database = std::string(r.text(0, 2));
  if (!r.is_null(0, 3)) f.confirmed_flush = parse_lsn(r.text(0, 3));
  if (!r.is_null(0, 4)) f.restart = parse_lsn(r.text(0, 4));
  f.active = r.boolean(0, 5);
  f.active_pid = std::string(r.text(0, 6));
  f.wal_status = std::string(r.text(0, 7));
  if (!r.is_null(0, 8)) f.safe_wal_size = std::atoll(std::string(r.text(0, 8)).c_str());
  f.conflicting = r.boolean(0, 9);
  f.invalidation_reason = std::string(r.text(0, 10));
  f.failover = r.boolean(0, 11);
  f.synced = r.boolean(0, 12);
  f.failover_unprotected = f.failover && !f.synced && r.text(0, 13).empty();
  return f;
}

std::string state_epoch_ddl(const config::relay_config& c) {
  return "ALTER TABLE " + c.source.state_table_name() +
         " ADD COLUMN IF NOT EXISTS leader_epoch bigint NOT NULL DEFAULT 0";
}

std::optional<source_state> read_state(pg_session& s, const config::relay_config& c) {
  // leader_epoch through to_jsonb: a table made by an earlier version lacks the column until the relay adds it.
  const auto r = s.exec(
      "SELECT system_identifier, timeline, database, slot_created_lsn::text, backfill, "
      "COALESCE(backfill_snapshot, ''), backfill_tables, updated_at::text, "
      "COALESCE(to_jsonb(st) ->> 'leader_epoch', '0') FROM " +
          quote_qualified(s, c.source.state_schema, c.source.state_table) + " st WHERE slot_name = $1",
      params{c.source.slot});
  if (r.empty()) return std::nullopt;
  source_state st;
  st.slot = c.source.slot;
  st.system_identifier = std::string(r.text(0, 0));
  st.timeline = std::atoi(std::string(r.text(0, 1)).c_str());
  st.database = std::string(r.text(0, 2));
  if (!r.is_null(0, 3)) st.slot_created_lsn = parse_lsn(r.text(0, 3));
  st.backfill = std::string(r.text(0, 4));
  st.backfill_snapshot = std::string(r.text(0, 5));
  st.backfill_tables = std::string(r.text(0, 6));
  st.updated_at = std::string(r.text(0, 7));
  st.leader_epoch = std::atoll(std::string(r.text(0, 8)).c_str());
  return st;
}

std::int64_t next_leader_epoch(pg_session& s, const config::relay_config& c) {
  const auto r = s.exec("UPDATE " + quote_qualified(s, c.source.state_schema, c.source.state_table) +
                            " SET leader_epoch = leader_epoch + 1 WHERE slot_name = $1 RETURNING leader_epoch::text",
                        params{c.source.slot});
  return r.empty() ? 1 : std::atoll(std::string(r.text(0, 0)).c_str());
}

void write_state(pg_session& s, const config::relay_config& c, const source_state& st, std::int64_t epoch) {
  const std::string table = quote_qualified(s, c.source.state_schema, c.source.state_table);
  // Written only by the leader of the newest epoch: a relay that lost the lead while paused changes nothing.
  const auto r = s.exec(
      "INSERT INTO " + table +
          " AS cur (slot_name, system_identifier, timeline, database, slot_created_lsn, backfill, backfill_snapshot, "
          "backfill_tables, relay_version, updated_at, leader_epoch) VALUES ($1, $2, $3::int, $4, $5::pg_lsn, $6, $7, "
          "$8, $9, now(), $10::bigint) ON CONFLICT (slot_name) DO UPDATE SET system_identifier = "
          "EXCLUDED.system_identifier, timeline = EXCLUDED.timeline, database = EXCLUDED.database, slot_created_lsn = "
          "EXCLUDED.slot_created_lsn, backfill = EXCLUDED.backfill, backfill_snapshot = EXCLUDED.backfill_snapshot, "
          "backfill_tables = EXCLUDED.backfill_tables, relay_version = EXCLUDED.relay_version, updated_at = now(), "
          "leader_epoch = EXCLUDED.leader_epoch WHERE cur.leader_epoch <= EXCLUDED.leader_epoch RETURNING 1",
      params{st.slot, st.system_identifier, std::to_string(st.timeline), st.database,
             st.slot_created_lsn ? std::optional<std::string>(format_lsn(*st.slot_created_lsn)) : std::nullopt,
             st.backfill,
             st.backfill_snapshot.empty() ? std::nullopt : std::optional<std::string>(st.backfill_snapshot),
             st.backfill_tables, std::string(OUTBOX_RELAY_VERSION), std::to_string(epoch)});
  if (r.empty()) {
    throw outbox_error("source",
                       "lost the lead of slot " + c.source.slot + ": another relay took over (this relay's epoch " +
                           std::to_string(epoch) + " is older than the one in " + c.source.state_table_name() + ")",
                       retry_class::retryable);
  }
}

void delete_state(pg_session& s, const config::relay_config& c) {
  s.exec("DELETE FROM " + quote_qualified(s, c.source.state_schema, c.source.state_table) + " WHERE slot_name = $1",
         params{c.source.slot});
}

source_report inspect_source(pg_session& s, const config::relay_config& c, bool create_missing) {
  source_report report;
  report.server_version = s.server_version();
  report.facts.emplace_back("server", std::string(s.exec("SELECT version()").text(0, 0)));
  report.facts.emplace_back("database", std::string(s.exec("SELECT current_database()").text(0, 0)));
  const std::string wal_level(s.exec("SHOW wal_level").text(0, 0));
  report.facts.emplace_back("wal_level", wal_level);
  if (wal_level != "logical") {
    report.problems.push_back("wal_level is '" + wal_level +
                              "' but logical replication needs 'logical': set wal_level = logical in "
                              "postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL");
  }
  const auto settings = s.exec(
      "SELECT (SELECT setting FROM pg_settings WHERE name = 'wal_sender_timeout'), "
      "(SELECT setting FROM pg_settings WHERE name = 'track_commit_timestamp')");
  report.wal_sender_timeout = std::chrono::milliseconds(std::atoll(std::string(settings.text(0, 0)).c_str()));
  if (c.source.wal_sender_timeout.count() > 0) report.wal_sender_timeout = c.source.wal_sender_timeout;
  report.track_commit_timestamp = settings.text(0, 1) == "on";
  const auto role =
      s.exec("SELECT current_user, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user");
  const std::string user(role.text(0, 0));
  report.facts.emplace_back("role", user + (role.boolean(0, 1) ? " (REPLICATION)" : ""));
  if (!role.boolean(0, 1)) {
    report.problems.push_back("role " + user + " lacks the REPLICATION attribute: ALTER ROLE " + user +
                              " WITH REPLICATION");
  }
  check_tables(s, c, report);
  check_publication(s, c, create_missing, report);

  // The state table: which slot this relay publishes from, so that a lost slot is never silently recreated.
  const auto exists = s.exec("SELECT to_regclass($1) IS NOT NULL",
                             params{quote_qualified(s, c.source.state_schema, c.source.state_table)});
  report.state_table_exists = exists.boolean(0, 0);
  if (!report.state_table_exists && create_missing && report.ok()) {
    try {
      s.exec(state_table_ddl(c));
      report.state_table_exists = true;
      log::info("source", "state table created", {{"table", c.source.state_table_name()}});
    } catch (const outbox_error& e) {
      report.problems.push_back("cannot create the relay's state table " + c.source.state_table_name() + " (" +
                                e.what() +
                                "): create it once as a role that may, and grant the relay's role SELECT, "
                                "INSERT, UPDATE, DELETE on it: " +
                                state_table_ddl(c) +
                                "; or set source.state_table "
                                "to a schema where the relay may create tables");
    }
  }
  if (report.state_table_exists && create_missing && report.ok()) {
    const auto has_epoch = s.exec(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'leader_epoch' AND "
        "NOT attisdropped)",
        params{quote_qualified(s, c.source.state_schema, c.source.state_table)});
    if (!has_epoch.boolean(0, 0)) {
      try {
        s.exec(state_epoch_ddl(c));
        log::info("source", "state table given its leader_epoch column", {{"table", c.source.state_table_name()}});
      } catch (const outbox_error& e) {
        report.problems.push_back("cannot add the leader_epoch column to the relay's state table " +
                                  c.source.state_table_name() + " (" + e.what() +
                                  "): run once as its owner: " + state_epoch_ddl(c));
      }
    }
  }
  if (report.state_table_exists) {
    try {
      report.state = read_state(s, c);
      const auto may_write = s.exec("SELECT has_table_privilege($1, 'INSERT, UPDATE, DELETE')",
                                    params{quote_qualified(s, c.source.state_schema, c.source.state_table)});
      if (!may_write.boolean(0, 0)) {
        report.problems.push_back("role " + user + " may not write the relay's state table " +
                                  c.source.state_table_name() + ": GRANT SELECT, INSERT, UPDATE, DELETE ON " +
                                  c.source.state_table_name() + " TO " + user);
      }
    } catch (const outbox_error& e) {
      report.problems.push_back("cannot read the relay's state table " + c.source.state_table_name() + " (" + e.what() +
                                "): GRANT SELECT, INSERT, UPDATE, DELETE ON " + c.source.state_table_name() + " TO " +
                                user);
    }
    report.facts.emplace_back(
        "state", report.state
                     ? c.source.state_table_name() + " (slot " + report.state->slot + " on system " +
                           report.state->system_identifier + ", timeline " + std::to_string(report.state->timeline) +
                           ", backfill " + report.state->backfill + ", since " + report.state->updated_at + ")"
                     : c.source.state_table_name() + " (no row for slot " + c.source.slot + " yet)");
  } else {
    report.facts.emplace_back("state", c.source.state_table_name() + " (missing; the relay creates it)");
  }

  report.slot = read_slot(s, c);
  const slot_facts& slot = report.slot;
  const std::string& slot_name = c.source.slot;
  if (!slot.exists) {
    report.facts.emplace_back("slot", slot_name + " (missing)");
  } else if (slot.slot_type != "logical" || slot.plugin != "pgoutput") {
    report.problems.push_back("replication slot " + slot_name + " exists but is " + slot.slot_type + " with plugin '" +
                              slot.plugin + "', not logical with pgoutput: drop it (SELECT pg_drop_replication_slot('" +
                              slot_name + "')) or set source.slot to another name");
  } else if (slot.database != std::string(s.exec("SELECT current_database()").text(0, 0))) {
    report.problems.push_back("replication slot " + slot_name + " belongs to database " + slot.database +
                              ", not this one: set source.slot to another name");
  } else {
    std::string line = slot_name + " (pgoutput, confirmed " +
                       (slot.confirmed_flush ? format_lsn(*slot.confirmed_flush) : std::string("-")) +
                       (slot.active ? ", active (pid " + slot.active_pid + ")" : ", inactive");
    if (!slot.wal_status.empty()) line += ", wal_status " + slot.wal_status;
    if (slot.safe_wal_size) line += ", safe_wal_size " + std::to_string(*slot.safe_wal_size);
    if (slot.failover) line += ", failover";
    if (slot.synced) line += ", synced";
    report.facts.emplace_back("slot", line + ")");
    if (slot.wal_status == "unreserved") {
      report.warnings.push_back("slot " + slot_name +
                                " is about to lose WAL it needs (wal_status unreserved, "
                                "max_slot_wal_keep_size reached): the relay must catch up now");
    }
  }
  if (report.server_version >= 170000) {
    // A failover slot is only as good as the standby that syncs it: without synchronized_standby_slots the relay
    // may publish a transaction the standby never received, and after a promotion Kafka holds an event the new
    // primary does not.
    const std::string standbys(s.exec("SHOW synchronized_standby_slots").text(0, 0));
    report.facts.emplace_back("synchronized_standby_slots", standbys.empty() ? std::string("(empty)") : standbys);
    if (standbys.empty() && (!slot.exists || slot.failover)) {
      report.warnings.push_back(
          "slot " + slot_name +
          " is a failover slot, but synchronized_standby_slots is empty: the relay may publish transactions a standby "
          "has not received yet, which a promotion of that standby loses. Set synchronized_standby_slots on the "
          "primary to the physical slot of each standby that syncs slots (sync_replication_slots = on)");
    }
  }
  return report;
}

}  // namespace outbox::relay
