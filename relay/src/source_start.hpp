#pragma once

#include "outbox/config/relay_config.hpp"
#include "outbox/relay/relay.hpp"
#include "outbox/relay/replication_stream.hpp"
#include "outbox/relay/source_setup.hpp"

#include "backfill.hpp"
#include "checkpoint.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace outbox::relay {

/// How the relay starts streaming: a connected replication stream (started unless a backfill comes first).
struct source_plan {
  std::unique_ptr<replication_stream> stream;
  system_identity identity;
  source_report report;
  bool started = false;  ///< START_REPLICATION was sent
  lsn_t start_lsn = 0;
  std::optional<backfill_spec> backfill;
  std::vector<std::string> notes;  ///< what was decided, for the log
  std::int64_t epoch = 0;          ///< the leader epoch this relay took (0 with source.leader_lock off)
  std::optional<checkpoint> last_checkpoint;  ///< exactly_once: the last checkpoint in Kafka, if any
};

/// exactly_once, on the connector thread once the relay leads: init_transactions(), then the slot's last checkpoint.
using kafka_start = std::function<std::optional<checkpoint>()>;

/// Told once when another relay holds the slot's leader lock and this one waits as a standby (who holds it).
using standby_notice = std::function<void(const std::string& holder)>;

/// Connects to PostgreSQL and decides, from the state table and the slot, how to go on: adopt or create the slot
/// (with an exported snapshot for the backfill), resume a backfill, or refuse with the explanation and the ways out
/// (a slot that is gone, invalidated, from another system or from before a promotion). Blocking; runs on a thread of
/// its own and gives up when `*cancel` becomes true. Throws outbox_error: fatal when only an operator can help.
/// With source.leader_lock it first takes the slot's leader lock on the replication connection, waiting quietly (and
/// telling `on_standby`) while another relay holds it, and bumps the leader epoch. With `start_kafka` (exactly_once)
/// replication starts at the checkpoint, after checking it against the server and the slot (fail-closed).
source_plan open_source(const config::relay_config& c, const run_options& opts, lsn_t confirmable,
                        const std::atomic<bool>* cancel, const standby_notice& on_standby = {},
                        const kafka_start& start_kafka = {});

/// Sends START_REPLICATION on a plan's stream (after its backfill). Blocking, like open_source.
void start_streaming(const config::relay_config& c, source_plan& plan);

/// Marks the backfill done in the state table (so a restart streams at once).
void finish_backfill(pg_session& s, const config::relay_config& c, const system_identity& id, std::int64_t epoch);

}  // namespace outbox::relay
