#pragma once

#include "outbox/config/relay_config.hpp"
#include "outbox/relay/pg_session.hpp"
#include "outbox/relay/source_setup.hpp"

#include <optional>
#include <string>
#include <vector>

namespace outbox::relay {

/// What one look at the slot and the publication found.
struct slot_watch_result {
  slot_facts slot;
  double lag_bytes = 0;       ///< server WAL position minus the slot's confirmed_flush_lsn
  double retained_bytes = 0;  ///< server WAL position minus the slot's restart_lsn
  /// Set when a configured table left the publication or was replaced (dropped and recreated, swapped by a
  /// rename): the rows written to it are no longer in the stream. Names the table and the way out.
  std::optional<std::string> publication_problem;
};

/// Reads the slot's health and checks that every configured table is still the one the relay started with (same
/// OID) and still in the publication. Runs on a side connection; throws outbox_error when PostgreSQL does not answer.
slot_watch_result watch_slot(pg_session& s, const config::relay_config& c,
                             const std::vector<table_facts>& started_with);

/// Writes one heartbeat: a non-transactional logical message with prefix `<prefix>-heartbeat`, which moves the slot on
/// an idle database and is never published.
void write_heartbeat(pg_session& s, const config::relay_config& c);

/// The prefix of heartbeat messages.
std::string heartbeat_prefix(const config::relay_config& c);

}  // namespace outbox::relay
