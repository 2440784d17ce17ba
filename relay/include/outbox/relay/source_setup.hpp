#pragma once

#include "outbox/relay/lsn.hpp"
#include "outbox/relay/settings.hpp"

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace outbox::relay {

/// What the relay found on the PostgreSQL side, for `--check` and the start-up log.
struct source_report {
  std::vector<std::pair<std::string, std::string>> facts;  ///< ordered name/value lines
  std::vector<std::string> problems;                       ///< each names the thing and the fix
  std::optional<lsn_t> slot_confirmed_lsn;                 ///< when the slot exists
  std::vector<std::string> id_column_types;                ///< per table, SQL type of the id column ("" if missing)

  [[nodiscard]] bool ok() const { return problems.empty(); }
};

/// Checks wal_level, the role's REPLICATION right, every table, its mapped columns and privileges,
/// the publication and the slot. With `create_missing`, creates the publication and then the slot
/// (in that order: pgoutput needs the publication to exist for WAL it decodes). Throws a
/// retryable outbox_error when the server cannot be reached.
source_report prepare_source(const settings& s, bool create_missing);

}  // namespace outbox::relay
