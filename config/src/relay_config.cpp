#include "outbox/config/relay_config.hpp"

#include "common.hpp"
#include "validators.hpp"

#include <charconv>
#include <limits>
#include <optional>
#include <set>

namespace outbox::config {
namespace {

using detail::split_table_name;

key_spec column(const std::string& field, const std::string& what) {
  return string_key(field)
      .defaults(field)
      .check(detail::pg_identifier(), "1 to 63 bytes")
      .describe("Column holding " + what);
}

schema make_relay_schema() {
  schema s;
  s.title = "outbox-relay";
  s.keys = {
      section(
          "source",
          {
              string_key("dsn").required().describe(
                  "PostgreSQL connection: libpq `key=value` string or `postgresql://` URI; the relay adds "
                  "`replication=database` itself"),
              string_key("slot")
                  .defaults("outbox_relay")
                  .check(detail::slot_name(), "`a-z`, `0-9`, `_`, 1 to 63")
                  .describe("Logical replication slot; created with the `pgoutput` plugin if missing"),
              string_key("publication")
                  .defaults("outbox_pub")
                  .check(detail::pg_identifier(), "1 to 63 bytes")
                  .describe("Publication; created `FOR TABLE <tables> WITH (publish = 'insert')` if missing"),
              object_list_key("tables",
                              {
                                  string_key("name")
                                      .required()
                                      .check(detail::table_name(), "`schema.table` or `table`")
                                      .describe("Outbox table as `schema.table`; the schema is `public` when omitted"),
                                  section("columns",
                                          {
                                              column("id", "the event id (the `event_id` header)"),
                                              column("aggregate_type", "the aggregate type (routes to a topic)"),
                                              column("aggregate_id", "the aggregate id (the Kafka key)"),
                                              column("event_type", "the event type"),
                                              column("payload", "the Kafka value (`jsonb`, `json`, `text` or `bytea`)"),
                                              column("headers", "a JSON object of extra Kafka headers"),
                                          })
                                      .describe("Column names, when the table does not use the default ones"),
                                  bool_key("delete_after_publish")
                                      .defaults("false")
                                      .describe("Delete each row once Kafka has acknowledged it"),
                              })
                  .describe("Outbox tables to relay (only INSERTs are relayed)"),
              section("logical_messages",
                      {string_key("prefix")
                           .defaults("outbox")
                           .check(detail::not_empty())
                           .describe("Prefix passed to `pg_logical_emit_message(true, prefix, json)`")})
                  .optional()
                  .describe("Also relay logical decoding messages; absent means off"),
              duration_key("heartbeat_interval")
                  .defaults("10s")
                  .describe("How often to move the slot forward on an idle database; `0s` disables"),
              enum_key("initial_backfill", {"all", "none"})
                  .defaults("all")
                  .describe("When the relay creates its slot: `all` first publishes the rows already in the tables "
                            "(one consistent cut with the slot), `none` starts with the slot"),
              string_key("state_table")
                  .defaults("public.outbox_relay_state")
                  .check(detail::table_name(), "`schema.table` or `table`")
                  .describe("The relay's own table in the source database: which slot it publishes from, on which "
                            "system and timeline, and whether the backfill finished; created if missing"),
              duration_key("connect_timeout")
                  .defaults("10s")
                  .check(detail::positive(), "more than 0s")
                  .describe("Time allowed to open a connection to PostgreSQL (libpq `connect_timeout`)"),
              duration_key("tcp_user_timeout")
                  .defaults("30s")
                  .describe(
                      "Unacknowledged data on a PostgreSQL connection for this long breaks it (TCP_USER_TIMEOUT); "
                      "`0s` keeps the system default"),
              duration_key("statement_timeout")
                  .defaults("30s")
                  .check(detail::positive(), "more than 0s")
                  .describe("`statement_timeout` of the relay's side connections (state, slot statistics, deletes)"),
              duration_key("lock_timeout")
                  .defaults("5s")
                  .check(detail::positive(), "more than 0s")
                  .describe("`lock_timeout` of the relay's side connections, so a DDL lock never freezes a delete"),
              duration_key("stream_timeout")
                  .defaults("0s")
                  .describe("No message from the server for this long means the replication connection is dead: "
                            "reconnect; `0s` uses the server's `wal_sender_timeout`"),
              bool_key("leader_lock")
                  .defaults("true")
                  .describe("Hold an advisory lock on the replication connection while publishing, so that a second "
                            "relay with the same slot waits as a standby and takes over when the leader's "
                            "connection ends"),
              duration_key("wal_sender_timeout")
                  .defaults("0s")
                  .describe("`wal_sender_timeout` of the relay's replication connection: the server drops a relay "
                            "that stopped answering (paused, partitioned) after this long, and a standby takes over; "
                            "`0s` keeps the server's setting"),
          })
          .describe("PostgreSQL side"),
      section(
          "sink",
          {
              string_key("brokers")
                  .defaults("127.0.0.1:9092")
                  .check(detail::not_empty())
                  .describe("Kafka bootstrap servers, comma-separated `host:port`"),
              string_key("topic_template")
                  .defaults("{aggregate_type}")
                  .check(detail::topic_template({"aggregate_type", "event_type", "schema", "table"}))
                  .describe("Topic of each event; placeholders `{aggregate_type}`, `{event_type}`, `{schema}`, "
                            "`{table}`"),
              enum_key("delivery", {"at_least_once", "exactly_once"})
                  .defaults("at_least_once")
                  .describe("Delivery guarantee: `at_least_once` (idempotent producer; a crash publishes the "
                            "unconfirmed window again), or `exactly_once` (Kafka transactions cut on PostgreSQL "
                            "commit boundaries with a checkpoint in the same transaction; `read_committed` "
                            "consumers see each event once)"),
              string_key("checkpoint_topic")
                  .defaults("__outbox_relay_checkpoints")
                  .check(detail::topic_template({}))
                  .describe("Topic holding the relay's checkpoints for `exactly_once` (compacted, one partition, "
                            "key = slot; created if missing)"),
              string_key("transactional_id")
                  .defaults("")
                  .describe("`transactional.id` for `exactly_once`; empty derives `outbox-relay.<database>.<slot>` "
                            "from the DSN and the slot, the same for both relays of an HA pair"),
              int_key("transaction_max_records")
                  .defaults("50000")
                  .between(1, std::numeric_limits<std::int64_t>::max())
                  .in_unit("records")
                  .describe("`exactly_once`: a Kafka transaction is committed once it holds this many records (at "
                            "the next PostgreSQL commit, or inside a larger PostgreSQL transaction, which then "
                            "spans several Kafka transactions)"),
              size_key("transaction_max_bytes")
                  .defaults("32MiB")
                  .check(detail::positive(), "more than 0")
                  .in_unit("bytes")
                  .describe("`exactly_once`: a Kafka transaction is committed once it holds this many bytes"),
              duration_key("transaction_max_time")
                  .defaults("250ms")
                  .check(detail::positive(), "more than 0s")
                  .describe("`exactly_once`: a Kafka transaction is committed at the first PostgreSQL commit "
                            "after it has been open this long (the latency a read_committed consumer sees)"),
              duration_key("transaction_timeout")
                  .defaults("60s")
                  .check(detail::positive(), "more than 0s")
                  .describe("`exactly_once`: `transaction.timeout.ms` (also the records' delivery timeout); a "
                            "commit that takes longer recreates the producer and goes on from the checkpoint"),
              string_map_key("properties")
                  .secret_entries(detail::kafka_secret_properties())
                  .describe("librdkafka producer properties (`ssl.*`, `sasl.*`, `linger.ms`, ...), applied after the "
                            "relay's safety settings; ones that would weaken the guarantees are refused"),
              bool_key("allow_unsafe_properties")
                  .defaults("false")
                  .describe("Accept `properties` that weaken the guarantees (idempotence off, `acks` other than all, "
                            "a finite `message.timeout.ms`, gaps, another partitioner); `--check` reports them"),
              string_list_key("allowed_topics")
                  .check(detail::topic_patterns())
                  .describe("Topics a record may go to: names, or `^regex` patterns matched against the whole name; "
                            "empty allows any. A record for another topic is an invalid record"),
              enum_key("on_invalid_record", {"halt", "dead_letter"})
                  .defaults("halt")
                  .describe("A record the relay cannot publish (bad row or envelope, illegal, disallowed or "
                            "refused topic, too large): `halt` stops before it and waits for an operator; "
                            "`dead_letter` writes it to `dead_letter_topic` and goes on"),
              string_key("dead_letter_topic")
                  .defaults("__outbox_relay_dlq")
                  .check(detail::topic_template({}))
                  .describe("Topic of the relay's dead letters (`on_invalid_record: dead_letter`)"),
          })
          .describe("Kafka side"),
      section("relay",
              {
                  int_key("max_inflight_messages")
                      .defaults("100000")
                      .between(1, std::numeric_limits<std::int64_t>::max())
                      .in_unit("messages")
                      .describe("Events read but not yet acknowledged by Kafka; reading pauses above this"),
                  size_key("max_inflight_bytes")
                      .defaults("1MiB")
                      .check(detail::positive(), "more than 0")
                      .in_unit("bytes")
                      .describe("Bytes of events not yet acknowledged by Kafka; reading pauses above this. It needs "
                                "to hold what arrives while Kafka acknowledges: events/s x bytes per event x the "
                                "acknowledgement's latency (1MiB: 30 ms at 100,000 events/s of 330 B)"),
                  duration_key("status_interval")
                      .defaults("1s")
                      .check(detail::positive(), "more than 0s")
                      .describe("How often the confirmed LSN is reported to PostgreSQL"),
                  duration_key("shutdown_timeout")
                      .defaults("30s")
                      .describe("On SIGTERM, how long to wait for in-flight events to be acknowledged"),
                  duration_key("stall_timeout")
                      .defaults("2m")
                      .check(detail::positive(), "more than 0s")
                      .describe("WAL moving but nothing confirmed for this long: reported as stalled "
                                "(metric outbox_relay_stalled, /readyz)"),
                  int_key("max_delete_backlog")
                      .defaults("100000")
                      .between(1, std::numeric_limits<std::int64_t>::max())
                      .in_unit("rows")
                      .describe("Acknowledged rows waiting to be deleted (`delete_after_publish`); reading pauses "
                                "above this while deletes fail or lag"),
              })
          .describe("Memory bounds and timing"),
      detail::metrics_section("127.0.0.1:9187"),
      detail::log_section(),
  };
  s.rules = {
      {"At least one of `source.tables` (non-empty) or `source.logical_messages` is configured.",
       [](rule_context& ctx) {
         const auto* tables = ctx.loaded().find<std::vector<values>>("source.tables");
         const bool has_tables = tables == nullptr || !tables->empty();  // absent means it failed to load
         if (!has_tables && !ctx.loaded().contains("source.logical_messages")) {
           ctx.fail("source",
                    "nothing to relay; list outbox tables under `source.tables` or enable `source.logical_messages`");
         }
       }},
      {"`sink.properties` may not weaken the guarantees (`enable.idempotence=false`, `acks` other than `all`, "
       "`message.timeout.ms` above 0, `enable.gapless.guarantee=false`, a partitioner other than `murmur2_random`, "
       "more than 5 requests in flight, a `transactional.id`) unless `sink.allow_unsafe_properties` is true.",
       [](rule_context& ctx) {
         const auto* allow = ctx.loaded().find<bool>("sink.allow_unsafe_properties");
         const auto* props = ctx.loaded().find<std::map<std::string, std::string>>("sink.properties");
         if (props == nullptr || (allow != nullptr && *allow)) return;
         for (const auto& [key, value] : *props) {
           if (std::string why = unsafe_property(key, value); !why.empty()) {
             ctx.fail("sink.properties." + key,
                      why + "; remove it, or set sink.allow_unsafe_properties: true to accept weaker guarantees");
           }
         }
       }},
      {"`source.wal_sender_timeout`, when set, is at least twice `relay.status_interval`.",
       [](rule_context& ctx) {
         const auto* timeout = ctx.loaded().find<std::chrono::milliseconds>("source.wal_sender_timeout");
         const auto* status = ctx.loaded().find<std::chrono::milliseconds>("relay.status_interval");
         if (timeout == nullptr || status == nullptr || timeout->count() == 0) return;
         if (*timeout < 2 * *status) {
           ctx.fail("source.wal_sender_timeout",
                    "the server would drop a healthy relay between two status updates (relay.status_interval is " +
                        std::to_string(status->count()) + " ms); set it to at least twice relay.status_interval");
         }
       }},
      {"`sink.transaction_max_time` is at most a quarter of `sink.transaction_timeout`.",
       [](rule_context& ctx) {
         const auto* max_time = ctx.loaded().find<std::chrono::milliseconds>("sink.transaction_max_time");
         const auto* timeout = ctx.loaded().find<std::chrono::milliseconds>("sink.transaction_timeout");
         if (max_time == nullptr || timeout == nullptr) return;
         if (*max_time * 4 > *timeout) {
           ctx.fail("sink.transaction_max_time",
                    "a transaction open this long may run into sink.transaction_timeout (" +
                        std::to_string(timeout->count()) + " ms) before it commits; keep it under a quarter of it");
         }
       }},
      {"A table appears at most once in `source.tables`.",
       [](rule_context& ctx) {
         const auto* tables = ctx.loaded().find<std::vector<values>>("source.tables");
         if (tables == nullptr) return;
         std::set<std::string> seen;
         for (std::size_t i = 0; i < tables->size(); ++i) {
           const auto* name = (*tables)[i].find<std::string>("name");
           if (name == nullptr) continue;
           const auto [schema_name, table] = split_table_name(*name);
           if (!seen.insert(schema_name + "." + table).second) {
             ctx.fail("source.tables[" + std::to_string(i) + "].name",
                      "table " + schema_name + "." + table + " is listed twice; keep one entry");
           }
         }
       }},
  };
  return s;
}

table_source read_table(const values& item) {
  table_source t;
  std::tie(t.schema, t.table) = split_table_name(item.get<std::string>("name"));
  t.columns.id = item.get<std::string>("columns.id");
  t.columns.aggregate_type = item.get<std::string>("columns.aggregate_type");
  t.columns.aggregate_id = item.get<std::string>("columns.aggregate_id");
  t.columns.event_type = item.get<std::string>("columns.event_type");
  t.columns.payload = item.get<std::string>("columns.payload");
  t.columns.headers = item.get<std::string>("columns.headers");
  t.delete_after_publish = item.get<bool>("delete_after_publish");
  return t;
}

relay_config from_values(values v) {
  relay_config c;
  c.source.dsn = v.get<std::string>("source.dsn");
  c.source.slot = v.get<std::string>("source.slot");
  c.source.publication = v.get<std::string>("source.publication");
  for (const auto& item : v.get<std::vector<values>>("source.tables")) c.source.tables.push_back(read_table(item));
  if (v.contains("source.logical_messages")) {
    c.source.logical_messages = logical_messages_source{v.get<std::string>("source.logical_messages.prefix")};
  }
  c.source.heartbeat_interval = v.get<std::chrono::milliseconds>("source.heartbeat_interval");
  c.source.initial_backfill =
      v.get<std::string>("source.initial_backfill") == "none" ? backfill_mode::none : backfill_mode::all;
  std::tie(c.source.state_schema, c.source.state_table) = split_table_name(v.get<std::string>("source.state_table"));
  c.source.connect_timeout = v.get<std::chrono::milliseconds>("source.connect_timeout");
  c.source.tcp_user_timeout = v.get<std::chrono::milliseconds>("source.tcp_user_timeout");
  c.source.statement_timeout = v.get<std::chrono::milliseconds>("source.statement_timeout");
  c.source.lock_timeout = v.get<std::chrono::milliseconds>("source.lock_timeout");
  c.source.stream_timeout = v.get<std::chrono::milliseconds>("source.stream_timeout");
  c.source.leader_lock = v.get<bool>("source.leader_lock");
  c.source.wal_sender_timeout = v.get<std::chrono::milliseconds>("source.wal_sender_timeout");

  c.sink.brokers = v.get<std::string>("sink.brokers");
  c.sink.topic_template = v.get<std::string>("sink.topic_template");
  c.sink.delivery = v.get<std::string>("sink.delivery") == "exactly_once" ? delivery_mode::exactly_once
                                                                          : delivery_mode::at_least_once;
  c.sink.checkpoint_topic = v.get<std::string>("sink.checkpoint_topic");
  c.sink.transactional_id = v.get<std::string>("sink.transactional_id");
  c.sink.transaction_max_records = v.get<std::int64_t>("sink.transaction_max_records");
  c.sink.transaction_max_bytes = v.get<std::uint64_t>("sink.transaction_max_bytes");
  c.sink.transaction_max_time = v.get<std::chrono::milliseconds>("sink.transaction_max_time");
  c.sink.transaction_timeout = v.get<std::chrono::milliseconds>("sink.transaction_timeout");
  c.sink.properties = v.get<std::map<std::string, std::string>>("sink.properties");
  c.sink.allow_unsafe_properties = v.get<bool>("sink.allow_unsafe_properties");
  c.sink.allowed_topics = v.get<std::vector<std::string>>("sink.allowed_topics");
  c.sink.on_invalid_record = v.get<std::string>("sink.on_invalid_record") == "dead_letter"
                                 ? invalid_record_policy::dead_letter
                                 : invalid_record_policy::halt;
  c.sink.dead_letter_topic = v.get<std::string>("sink.dead_letter_topic");

  c.relay.max_inflight_messages = v.get<std::int64_t>("relay.max_inflight_messages");
  c.relay.max_inflight_bytes = v.get<std::uint64_t>("relay.max_inflight_bytes");
  c.relay.status_interval = v.get<std::chrono::milliseconds>("relay.status_interval");
  c.relay.shutdown_timeout = v.get<std::chrono::milliseconds>("relay.shutdown_timeout");
  c.relay.stall_timeout = v.get<std::chrono::milliseconds>("relay.stall_timeout");
  c.relay.max_delete_backlog = v.get<std::int64_t>("relay.max_delete_backlog");

  c.metrics = detail::read_metrics(v);
  c.log = detail::read_log(v);
  c.tree = std::move(v);
  return c;
}

}  // namespace

std::string unsafe_property(std::string_view key, std::string_view text) {
  auto number = [&]() -> std::optional<long long> {
    long long n = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
    return n;
  };
  auto is_false = [&] { return text == "false" || text == "False" || text == "FALSE" || text == "0"; };
  if (key == "enable.idempotence" && is_false()) {
    return "switches idempotence off, so retries can reorder or duplicate records within a key";
  }
  if (key == "acks" || key == "request.required.acks") {
    if (text != "all" && text != "-1") {
      return "acks=" + std::string(text) +
             " lets a leader failure drop records the relay already confirmed to "
             "PostgreSQL (only `all` is safe)";
    }
  }
  if (key == "message.timeout.ms" || key == "delivery.timeout.ms") {
    if (const auto n = number(); !n || *n != 0) {
      return std::string(key) + "=" + std::string(text) +
             " gives up on records during a broker outage; the relay then stops and republishes (0 waits forever)";
    }
  }
  if (key == "enable.gapless.guarantee" && is_false()) {
    return "lets a record refused by the broker leave a gap while later records of its key are written";
  }
  if (key == "partitioner" && text != "murmur2_random") {
    return "partitioner=" + std::string(text) +
           " puts keys on other partitions than the Java client "
           "(murmur2_random), so producers in other languages would not keep per-key order with the relay";
  }
  if (key == "max.in.flight.requests.per.connection" || key == "max.in.flight") {
    if (const auto n = number(); !n || *n > 5) {
      return std::string(key) + "=" + std::string(text) + " is more than the 5 in-flight requests idempotence allows";
    }
  }
  if (key == "transactional.id") return "the relay chooses its own transactional.id (sink.delivery: exactly_once)";
  return {};
}

std::string_view to_string(delivery_mode d) noexcept {
  return d == delivery_mode::exactly_once ? "exactly_once" : "at_least_once";
}

const schema& relay_schema() {
  static const schema s = make_relay_schema();
  return s;
}

relay_config load_relay_config(const std::string& path) { return from_values(load_values(relay_schema(), path)); }

relay_config parse_relay_config(std::string_view yaml_text, std::string_view file_name_for_messages) {
  return from_values(parse_values(relay_schema(), yaml_text, file_name_for_messages));
}

std::string dump_redacted(const relay_config& c) { return dump_redacted(c.tree); }

}  // namespace outbox::config
