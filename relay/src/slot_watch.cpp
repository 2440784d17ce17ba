#include "slot_watch.hpp"

#include "outbox/base/error.hpp"

#include <chrono>

namespace outbox::relay {

std::string heartbeat_prefix(const config::relay_config& c) {
  return (c.source.logical_messages ? c.source.logical_messages->prefix : std::string("outbox")) + "-heartbeat";
}

slot_watch_result watch_slot(pg_session& s, const config::relay_config& c,
                             const std::vector<table_facts>& started_with) {
  slot_watch_result out;
  out.slot = read_slot(s, c);
  if (out.slot.exists) {
    // pg_current_wal_lsn() fails on a standby; pg_last_wal_receive_lsn() is the position there.
    const auto r = s.exec(
        "SELECT COALESCE(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END "
        "- confirmed_flush_lsn, 0)::float8, COALESCE(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() "
        "ELSE pg_current_wal_lsn() END - restart_lsn, 0)::float8 FROM pg_replication_slots WHERE slot_name = $1",
        {c.source.slot});
    if (!r.empty()) {
      out.lag_bytes = std::strtod(std::string(r.text(0, 0)).c_str(), nullptr);
      out.retained_bytes = std::strtod(std::string(r.text(0, 1)).c_str(), nullptr);
    }
  }
  for (std::size_t i = 0; i < c.source.tables.size() && i < started_with.size(); ++i) {
    const auto& t = c.source.tables[i];
    const auto r = s.exec(
        "SELECT c.oid::text, EXISTS (SELECT 1 FROM pg_publication_tables pt WHERE pt.pubname = $1 AND pt.schemaname = "
        "$2 AND pt.tablename = $3) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $2 "
        "AND c.relname = $3",
        {c.source.publication, t.schema, t.table});
    const std::string started = std::to_string(started_with[i].oid);
    const std::string name = t.qualified_name();
    const std::string fix = " The rows written to it since are not in the slot's stream. ALTER PUBLICATION " +
                            c.source.publication + " ADD TABLE " + name +
                            " if it is missing there, then restart "
                            "with --backfill-table " +
                            name + " to publish the rows the table holds now.";
    if (r.empty()) {
      out.publication_problem = "outbox table " + name + " (OID " + started +
                                ") no longer exists: it was dropped or "
                                "renamed while the relay streamed." +
                                fix;
      break;
    }
    if (r.text(0, 0) != started) {
      std::string old_table;
      const auto old = s.exec("SELECT oid::regclass::text FROM pg_class WHERE oid = $1::oid", {started});
      if (!old.empty()) {
        old_table = " The table the relay started with is now called " + std::string(old.text(0, 0)) +
                    "; if it is still in the publication and no longer an outbox, ALTER PUBLICATION " +
                    c.source.publication + " DROP TABLE " + std::string(old.text(0, 0)) + ".";
      }
      out.publication_problem = "outbox table " + name + " is a new table (OID " + std::string(r.text(0, 0)) +
                                ", the relay started with OID " + started +
                                "): it was dropped and recreated, or swapped by a rename, while the relay streamed." +
                                fix + old_table;
      break;
    }
    if (!r.boolean(0, 1)) {
      out.publication_problem = "outbox table " + name + " was taken out of publication " + c.source.publication +
                                " while the relay streamed." + fix;
      break;
    }
  }
  return out;
}

void write_heartbeat(pg_session& s, const config::relay_config& c) {
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  s.exec("SELECT pg_logical_emit_message(false, $1, $2)",
         {heartbeat_prefix(c), "{\"ts_ms\":" + std::to_string(now_ms) + "}"});
}

}  // namespace outbox::relay
