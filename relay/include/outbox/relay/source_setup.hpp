#pragma once

#include "outbox/config/relay_config.hpp"
#include "outbox/relay/lsn.hpp"
#include "outbox/relay/pg_session.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace outbox::relay {

/// A configured outbox table as the catalog describes it.
struct table_facts {
  std::uint32_t oid = 0;
  bool partitioned = false;
  std::string id_type;  ///< SQL type of the mapped id column, for delete_after_publish
  std::vector<std::pair<std::string, std::uint32_t>> columns;  ///< published columns in attnum order: name, type
};

/// The replication slot as pg_replication_slots shows it.
struct slot_facts {
  bool exists = false;
  std::string plugin;
  std::string slot_type;
  std::string database;
  std::optional<lsn_t> confirmed_flush;
  std::optional<lsn_t> restart;
  bool active = false;
  std::string active_pid;
  std::string wal_status;  ///< reserved | extended | unreserved | lost (PostgreSQL 13+)
  std::optional<long long> safe_wal_size;
  bool conflicting = false;         ///< PostgreSQL 16+
  std::string invalidation_reason;  ///< PostgreSQL 17+
  bool failover = false;            ///< PostgreSQL 17+
  bool synced = false;              ///< PostgreSQL 17+
  /// PostgreSQL 17+ primary: a failover slot while synchronized_standby_slots is empty, so the relay may be sent
  /// (and publish) a transaction no standby has yet, which a promotion loses.
  bool failover_unprotected = false;

  /// True when PostgreSQL can no longer stream from the slot.
  [[nodiscard]] bool invalidated() const noexcept {
    return wal_status == "lost" || conflicting || !invalidation_reason.empty();
  }
};

/// What the relay recorded about its slot in the state table.
struct source_state {
  std::string slot;
  std::string system_identifier;
  int timeline = 0;
  std::string database;
  std::optional<lsn_t> slot_created_lsn;
  std::string backfill;           ///< "pending" | "done"
  std::string backfill_snapshot;  ///< pg_current_snapshot() of the slot's exported snapshot, for a resumed backfill
  std::string backfill_tables;    ///< comma-separated tables still to backfill ("" = every configured table)
  std::string updated_at;
  std::int64_t leader_epoch = 0;  ///< bumped by each relay that takes the lead of the slot
};

/// What the relay found on the PostgreSQL side, for the start-up decision, `--check` and the logs.
struct source_report {
  std::vector<std::pair<std::string, std::string>> facts;  ///< ordered name/value lines
  std::vector<std::string> problems;                       ///< each names the thing and the fix
  std::vector<std::string> warnings;                       ///< worth fixing, not blocking
  std::vector<table_facts> tables;                         ///< per configured table (oid 0 when missing)
  slot_facts slot;
  std::optional<source_state> state;
  bool state_table_exists = false;
  int server_version = 0;
  std::chrono::milliseconds wal_sender_timeout{60'000};
  bool track_commit_timestamp = false;

  [[nodiscard]] bool ok() const { return problems.empty(); }
};

/// Checks wal_level, the role's REPLICATION right, every table (existence, mapped and generated columns, privileges),
/// the publication (inserts, partition roots, extra tables, row filters, column lists), the slot and the state.
/// With `create_missing`, also creates the publication (`publish_via_partition_root = true`) and the state table.
/// Throws a retryable outbox_error when the server cannot be reached.
source_report inspect_source(pg_session& s, const config::relay_config& c, bool create_missing);

/// Reads the slot's row in pg_replication_slots.
slot_facts read_slot(pg_session& s, const config::relay_config& c);

/// The state table's row for the configured slot, if any.
std::optional<source_state> read_state(pg_session& s, const config::relay_config& c);
/// Inserts or replaces the state table's row for `st.slot` as the leader of `epoch`; throws a retryable
/// outbox_error ("lost the lead") when the row already holds a newer epoch.
void write_state(pg_session& s, const config::relay_config& c, const source_state& st, std::int64_t epoch);
/// Bumps the slot's leader epoch (the fencing token of a relay that just took the leader lock) and returns it; 1
/// when the slot has no row yet (the first write_state records it).
std::int64_t next_leader_epoch(pg_session& s, const config::relay_config& c);
/// Deletes the state table's row for the configured slot.
void delete_state(pg_session& s, const config::relay_config& c);

/// The DDL of the state table, for people who create it themselves.
std::string state_table_ddl(const config::relay_config& c);

/// Connection parameters for the relay's side connections: the DSN plus UTF-8, hex bytea, timeouts and keepalives.
conn_params side_params(const config::source_config& c);
/// The same for the replication connection (`replication=database`, no statement or lock timeout).
conn_params replication_params(const config::source_config& c);

}  // namespace outbox::relay
