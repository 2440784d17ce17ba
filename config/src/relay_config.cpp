#include "outbox/config/relay_config.hpp"

#include "common.hpp"
#include "validators.hpp"

#include <limits>
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
                  .check(detail::reject("exactly_once",
                                        "exactly_once is not supported yet by this version; use at_least_once"))
                  .describe("Delivery guarantee; `exactly_once` (Kafka transactions) is not supported yet"),
              string_key("checkpoint_topic")
                  .defaults("__outbox_relay_checkpoints")
                  .check(detail::topic_template({}))
                  .describe("Topic holding the relay's checkpoints for `exactly_once`"),
              string_map_key("properties")
                  .describe("librdkafka producer properties, passed unchanged (`ssl.*`, `sasl.*`, `linger.ms`, ...)"),
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
                      .defaults("64MiB")
                      .check(detail::positive(), "more than 0")
                      .in_unit("bytes")
                      .describe("Bytes of events not yet acknowledged by Kafka; reading pauses above this"),
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

  c.sink.brokers = v.get<std::string>("sink.brokers");
  c.sink.topic_template = v.get<std::string>("sink.topic_template");
  c.sink.delivery = v.get<std::string>("sink.delivery") == "exactly_once" ? delivery_mode::exactly_once
                                                                          : delivery_mode::at_least_once;
  c.sink.checkpoint_topic = v.get<std::string>("sink.checkpoint_topic");
  c.sink.properties = v.get<std::map<std::string, std::string>>("sink.properties");

  c.relay.max_inflight_messages = v.get<std::int64_t>("relay.max_inflight_messages");
  c.relay.max_inflight_bytes = v.get<std::uint64_t>("relay.max_inflight_bytes");
  c.relay.status_interval = v.get<std::chrono::milliseconds>("relay.status_interval");
  c.relay.shutdown_timeout = v.get<std::chrono::milliseconds>("relay.shutdown_timeout");
  c.relay.stall_timeout = v.get<std::chrono::milliseconds>("relay.stall_timeout");

  c.metrics = detail::read_metrics(v);
  c.log = detail::read_log(v);
  c.tree = std::move(v);
  return c;
}

}  // namespace

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
