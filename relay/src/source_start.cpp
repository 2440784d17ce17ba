#include "source_start.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"

#include <algorithm>
#include <chrono>
#include <thread>

namespace outbox::relay {
namespace {

std::string ways_out(const config::relay_config& c) {
  return " Ways out: (1) run the relay once with --recreate-slot: it makes a new slot and first publishes every row "
         "the outbox tables hold now (with delete_after_publish exactly the unpublished backlog; otherwise earlier "
         "rows are published again and consumers dedupe them on event_id), then streams; (2) set source.slot to a new "
         "name to start from now, accepting the gap (outboxctl verify lists what is missing). The state is in " +
         c.source.state_table_name() + ".";
}

std::string joined(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

source_state state_of(const config::relay_config& c, const system_identity& id) {
  source_state st;
  st.slot = c.source.slot;
  st.system_identifier = id.system_id;
  st.timeline = id.timeline;
  st.database = id.database;
  return st;
}

/// Takes the slot's leader lock, waiting while another relay holds it. True when it had to wait.
bool wait_for_leader_lock(const config::relay_config& c, replication_stream& stream, const std::atomic<bool>* cancel,
                          const standby_notice& on_standby) {
  const std::int32_t key = leader_lock_key(c.source.slot);
  if (stream.try_leader_lock(key)) return false;
  const std::string holder = stream.leader_lock_holder(key);
  log::info("source", "standby: another relay leads slot " + c.source.slot + "; waiting for its leader lock",
            {{"leader", holder.empty() ? std::string("not visible to this role") : holder},
             {"lock", std::to_string(k_leader_lock_class) + "," + std::to_string(key)}});
  if (on_standby) on_standby(holder);
  const auto since = std::chrono::steady_clock::now();
  while (true) {
    for (int i = 0; i < 5; ++i) {
      if (cancel != nullptr && cancel->load()) {
        throw outbox_error("source", "stopped while waiting for the leader lock", retry_class::retryable);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (stream.try_leader_lock(key)) break;
  }
  const auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - since).count();
  log::info("source", "took the leader lock of slot " + c.source.slot, {{"waited_ms", waited}});
  return true;
}

/// exactly_once: replication goes on from the checkpoint, unless it does not fit this server and slot.
void use_checkpoint(pg_session& side, const config::relay_config& c, std::optional<checkpoint> cp,
                    const slot_facts& slot, source_plan& plan) {
  const system_identity& id = plan.identity;
  const std::string& name = c.source.slot;
  const std::string topic = c.sink.checkpoint_topic;
  if (!cp) return;  // the first exactly_once start: from the slot
  if (cp->system_id != id.system_id) {
    throw outbox_error("source",
                       "the checkpoint of slot " + name + " in " + topic + " comes from PostgreSQL system " +
                           cp->system_id + ", but this server is system " + id.system_id +
                           ": going on from it would publish a fork. If the database was restored or moved on "
                           "purpose, write a tombstone for key " + name + " to " + topic +
                           " (kcat -P -b BROKERS -t " + topic + " -Z -K: <<< '" + name +
                           ":') and start with --recreate-slot.",
                       retry_class::fatal);
  }
  // Now, not at connect time: a standby that waited for the leader lock saw the leader's later checkpoints.
  const lsn_t flushed = parse_lsn(side.exec("SELECT pg_current_wal_flush_lsn()::text").text(0, 0)).value_or(0);
  if (cp->end_lsn > flushed) {
    throw outbox_error("source",
                       "the checkpoint of slot " + name + " reaches " + format_lsn(cp->end_lsn) +
                           ", past this server's WAL (" + format_lsn(flushed) +
                           "): it was written from a server that got further (a failover to a standby that lagged?). "
                           "Events up to the checkpoint are in Kafka but no longer in this database; point the relay "
                           "at the server that has them, or decide with outboxctl verify and start with "
                           "--recreate-slot.",
                       retry_class::fatal);
  }
  const bool created_now = !slot.exists;
  if (!created_now && slot.confirmed_flush && *slot.confirmed_flush > cp->end_lsn) {
    throw outbox_error("source",
                       "slot " + name + " is confirmed to " + format_lsn(*slot.confirmed_flush) +
                           ", past the checkpoint in " + topic + " (" + format_lsn(cp->end_lsn) +
                           "): what lies between was confirmed without a checkpoint (an at_least_once run, or the "
                           "slot moved by hand), so exactly_once cannot say what is in Kafka. If an at_least_once "
                           "run published it, write a tombstone for key " + name + " to " + topic +
                           " to start over from the slot; otherwise start with --recreate-slot.",
                       retry_class::fatal);
  }
  // A slot made just now, or a backfill (new or resumed), starts at the slot; the next checkpoint follows it.
  if (created_now || plan.backfill) return;
  plan.start_lsn = std::max(cp->end_lsn, slot.confirmed_flush.value_or(0));
  plan.last_checkpoint = std::move(cp);
}

}  // namespace

source_plan open_source(const config::relay_config& c, const run_options& opts, lsn_t confirmable,
                        const std::atomic<bool>* cancel, const standby_notice& on_standby,
                        const kafka_start& start_kafka) {
  source_plan plan;
  pg_session side(side_params(c.source), "side connection");
  side.abandon_with(cancel);
  side.connect(c.source.connect_timeout);
  plan.report = inspect_source(side, c, true);
  if (!plan.report.ok()) throw outbox_error("source", joined(plan.report.problems, "; "), retry_class::fatal);

  plan.stream = std::make_unique<replication_stream>(replication_params(c.source));
  plan.stream->abandon_with(cancel);
  plan.identity = plan.stream->connect(c.source.connect_timeout);
  const system_identity& id = plan.identity;
  if (c.source.leader_lock) {
    if (wait_for_leader_lock(c, *plan.stream, cancel, on_standby)) {
      plan.report = inspect_source(side, c, true);  // the leader changed things while this relay waited
      if (!plan.report.ok()) throw outbox_error("source", joined(plan.report.problems, "; "), retry_class::fatal);
    }
    plan.epoch = next_leader_epoch(side, c);
  } else {
    plan.epoch = plan.report.state ? plan.report.state->leader_epoch : 0;  // no lock, no new term
  }
  for (const auto& w : plan.report.warnings) log::warn("source", w);

  std::optional<source_state> state = plan.report.state;
  slot_facts slot = plan.report.slot;
  const std::string& slot_name = c.source.slot;

  if (opts.recreate_slot) {
    if (slot.exists) {
      if (slot.active) {
        throw outbox_error("source", "--recreate-slot: slot " + slot_name + " is in use by process " + slot.active_pid +
                                         "; stop the other relay first");
      }
      side.exec("SELECT pg_drop_replication_slot($1)", {slot_name});
      plan.notes.push_back("dropped slot " + slot_name + " (--recreate-slot)");
    }
    delete_state(side, c);
    state.reset();
    slot = slot_facts{};
  }

  if (state && state->system_identifier != id.system_id) {
    throw outbox_error("source",
                       "the relay published from slot " + slot_name + " on PostgreSQL system " +
                           state->system_identifier + ", but this server is system " + id.system_id +
                           " (a restore into another cluster, or a DSN pointing elsewhere?): the slot here cannot "
                           "hold what the old system's slot held, and the relay does not start from \"now\"." +
                           ways_out(c),
                       retry_class::fatal);
  }

  const bool want_backfill = c.source.initial_backfill == config::backfill_mode::all && !c.source.tables.empty();
  if (!slot.exists) {
    if (state && state->backfill == "done") {
      throw outbox_error("source",
                         "replication slot " + slot_name + " is gone, but the relay published from it before (system " +
                             state->system_identifier + ", timeline " + std::to_string(state->timeline) + ", since " +
                             state->updated_at +
                             "). A new slot would start at \"now\" and skip every event "
                             "committed since the old slot's last confirmed position, so the relay does not make "
                             "one." +
                             ways_out(c),
                         retry_class::fatal);
    }
    // First start (or a start that stopped before its slot existed): record intent first, then the slot.
    source_state st = state_of(c, id);
    st.backfill = want_backfill ? "pending" : "done";
    write_state(side, c, st, plan.epoch);
    // On PostgreSQL 17+ a failover slot: synchronized to standbys, so that it survives a promotion.
    const created_slot created = plan.stream->create_slot(slot_name, want_backfill, plan.report.server_version >= 170000);
    st.slot_created_lsn = created.consistent_point;
    if (want_backfill) {
      // Read the exported snapshot's bounds once, so that a backfill cut short can be resumed on the same cut.
      side.exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
      side.exec("SET TRANSACTION SNAPSHOT " + side.quote_literal(created.snapshot_name));
      st.backfill_snapshot = std::string(side.exec("SELECT pg_current_snapshot()::text").text(0, 0));
      side.exec("COMMIT");
      backfill_spec spec;
      for (std::size_t i = 0; i < c.source.tables.size(); ++i) spec.tables.push_back(i);
      spec.import_snapshot = created.snapshot_name;
      spec.commit_timestamps = plan.report.track_commit_timestamp;
      plan.backfill = std::move(spec);
    }
    write_state(side, c, st, plan.epoch);
    plan.start_lsn = created.consistent_point;
    plan.notes.push_back("created slot " + slot_name + " at " + format_lsn(created.consistent_point) +
                         (want_backfill ? " with an exported snapshot; the rows already in the tables come first"
                                        : " (initial_backfill: none)"));
  } else {
    if (slot.invalidated()) {
      throw outbox_error("source",
                         "replication slot " + slot_name + " was invalidated (wal_status " + slot.wal_status +
                             (slot.invalidation_reason.empty() ? "" : ", " + slot.invalidation_reason) +
                             "): PostgreSQL removed WAL it still needed, so events after its confirmed position are "
                             "lost to it." +
                             ways_out(c),
                         retry_class::fatal);
    }
    if (!state) {
      source_state st = state_of(c, id);
      st.backfill = "done";
      st.slot_created_lsn = slot.confirmed_flush;
      write_state(side, c, st, plan.epoch);
      plan.notes.push_back("adopted existing slot " + slot_name + " (no state recorded before)");
    } else if (state->timeline != id.timeline) {
      if (!slot.failover && !slot.synced) {
        throw outbox_error("source",
                           "this server is on timeline " + std::to_string(id.timeline) +
                               " but the relay last streamed from slot " + slot_name + " on timeline " +
                               std::to_string(state->timeline) + " (a promotion), and " + slot_name +
                               " is not a failover slot synchronized from the old primary: it was made here after the "
                               "promotion, so events committed on the old primary after its last confirmed position "
                               "are not in it." +
                               ways_out(c),
                           retry_class::fatal);
      }
      source_state st = *state;
      st.timeline = id.timeline;
      write_state(side, c, st, plan.epoch);
      plan.notes.push_back("followed failover slot " + slot_name + " to timeline " + std::to_string(id.timeline));
    }
    if (state && state->backfill == "pending") {
      backfill_spec spec;
      if (state->backfill_tables.empty()) {
        for (std::size_t i = 0; i < c.source.tables.size(); ++i) spec.tables.push_back(i);
      } else {
        for (std::size_t i = 0; i < c.source.tables.size(); ++i) {
          const std::string name = c.source.tables[i].qualified_name();
          std::size_t start = 0;
          const std::string& list = state->backfill_tables;
          while (start <= list.size()) {
            const std::size_t comma = std::min(list.find(',', start), list.size());
            if (list.substr(start, comma - start) == name) spec.tables.push_back(i);
            start = comma + 1;
          }
        }
      }
      spec.visible_in = state->backfill_snapshot;
      spec.commit_timestamps = plan.report.track_commit_timestamp;
      plan.backfill = std::move(spec);
      plan.notes.push_back("resuming a backfill that did not finish");
    }
    plan.start_lsn = std::max(confirmable, slot.confirmed_flush.value_or(0));
  }

  if (!opts.backfill_tables.empty()) {
    backfill_spec spec;
    std::string names;
    for (const auto& wanted : opts.backfill_tables) {
      std::size_t i = 0;
      for (; i < c.source.tables.size(); ++i) {
        if (c.source.tables[i].qualified_name() == wanted) break;
      }
      if (i == c.source.tables.size()) {
        throw outbox_error("config", "--backfill-table " + wanted + " is not one of source.tables");
      }
      spec.tables.push_back(i);
      names += (names.empty() ? "" : ",") + wanted;
    }
    spec.commit_timestamps = plan.report.track_commit_timestamp;
    source_state st = read_state(side, c).value_or(state_of(c, id));
    st.backfill = "pending";
    st.backfill_tables = names;
    st.backfill_snapshot.clear();
    write_state(side, c, st, plan.epoch);
    plan.backfill = std::move(spec);
    plan.notes.push_back("backfilling " + names + " (--backfill-table) before streaming");
  }

  if (start_kafka) use_checkpoint(side, c, start_kafka(), slot, plan);
  if (!plan.backfill) start_streaming(c, plan);
  return plan;
}

void start_streaming(const config::relay_config& c, source_plan& plan) {
  plan.stream->start(c.source.slot, c.source.publication, plan.start_lsn, c.source.logical_messages.has_value());
  plan.started = true;
}

void finish_backfill(pg_session& s, const config::relay_config& c, const system_identity& id, std::int64_t epoch) {
  source_state st = read_state(s, c).value_or(source_state{});
  st.slot = c.source.slot;
  st.system_identifier = id.system_id;
  st.timeline = id.timeline;
  st.database = id.database;
  st.backfill = "done";
  st.backfill_tables.clear();
  st.backfill_snapshot.clear();
  write_state(s, c, st, epoch);
}

}  // namespace outbox::relay
