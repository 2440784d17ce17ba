#include "outbox/relay/router.hpp"

#include "outbox/base/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>

namespace outbox::relay {

namespace {

using ordered_json = nlohmann::ordered_json;

constexpr std::uint32_t oid_bytea = 17;
constexpr std::uint32_t oid_name = 19;
constexpr std::uint32_t oid_text = 25;
constexpr std::uint32_t oid_json = 114;
constexpr std::uint32_t oid_bpchar = 1042;
constexpr std::uint32_t oid_varchar = 1043;
constexpr std::uint32_t oid_uuid = 2950;
constexpr std::uint32_t oid_jsonb = 3802;

constexpr std::size_t max_topic_length = 249;
constexpr std::size_t max_quoted = 200;

std::string type_name(std::uint32_t oid) {
  switch (oid) {
    case 16:
      return "boolean";
    case oid_bytea:
      return "bytea";
    case 18:
      return "\"char\"";
    case oid_name:
      return "name";
    case 20:
      return "bigint";
    case 21:
      return "smallint";
    case 23:
      return "integer";
    case oid_text:
      return "text";
    case 26:
      return "oid";
    case oid_json:
      return "json";
    case 142:
      return "xml";
    case 700:
      return "real";
    case 701:
      return "double precision";
    case oid_bpchar:
      return "character";
    case oid_varchar:
      return "character varying";
    case 1082:
      return "date";
    case 1083:
      return "time";
    case 1114:
      return "timestamp";
    case 1184:
      return "timestamptz";
    case 1186:
      return "interval";
    case 1700:
      return "numeric";
    case oid_uuid:
      return "uuid";
    case oid_jsonb:
      return "jsonb";
    default:
      return "type oid " + std::to_string(oid);
  }
}

/// A value quoted for an error message, cut so one huge value cannot flood the log.
std::string in_quotes(std::string_view s) {
  std::string out = "\"";
  if (s.size() > max_quoted) {
    out.append(s.substr(0, max_quoted)).append("…");
  } else {
    out.append(s);
  }
  out += '"';
  return out;
}

bool legal_topic_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

bool legal_topic(std::string_view t) noexcept {
  if (t.empty() || t.size() > max_topic_length || t == "." || t == "..") return false;
  return std::all_of(t.begin(), t.end(), legal_topic_char);
}

bool reserved_header(std::string_view name) noexcept {
  return name == "event_id" || name == "event_type" || name == "aggregate_type" || name.starts_with("outbox_");
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/// Decodes bytea's hex output (`\x0aff…`); on failure says why in `why`.
bool decode_bytea_hex(std::string_view text, std::string& out, std::string& why) {
  if (!text.starts_with("\\x")) {
    why =
        "is not in bytea hex form (\\x…); the walsender uses bytea_output = 'escape'. Set it back to 'hex' "
        "(ALTER ROLE <replication role> SET bytea_output = 'hex') and restart the relay";
    return false;
  }
  const std::string_view hex = text.substr(2);
  if (hex.size() % 2 != 0) {
    why = "has an odd number of hex digits (" + std::to_string(hex.size()) + ")";
    return false;
  }
  out.resize(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = hex_value(hex[2 * i]);
    const int lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      why = "has a character that is not a hex digit at offset " + std::to_string(2 * i + (hi < 0 ? 2 : 3));
      return false;
    }
    out[i] = static_cast<char>((hi << 4) | lo);
  }
  return true;
}

}  // namespace

/// One event, from a row or an envelope, with what error messages need to say where it came from.
struct router::event_fields {
  bool from_message = false;
  std::string_view schema;  ///< row: the relation's schema
  std::string_view source;  ///< row: the relation's name; message: the prefix
  lsn_t message_lsn = 0;
  const tx_context* tx = nullptr;
  std::string_view id;
  std::string_view aggregate_type;
  std::string_view aggregate_id;
  std::string_view event_type;
  std::optional<std::string> payload;
  const ordered_json* headers = nullptr;  ///< an object, or nullptr for none
  std::string_view headers_column;        ///< row: the mapped column's name, for errors

  /// "outbox table public.outbox (commit LSN …, xid …), row id "…"" for error messages.
  [[nodiscard]] std::string where() const {
    std::string out;
    if (from_message) {
      out = "logical message with prefix " + in_quotes(source) + " at LSN " + format_lsn(message_lsn) +
            " (commit LSN " + format_lsn(tx->commit_lsn) + ", xid " + std::to_string(tx->xid) + ")";
    } else {
      out = "outbox table " + std::string(schema) + "." + std::string(source) + " (commit LSN " +
            format_lsn(tx->commit_lsn) + ", xid " + std::to_string(tx->xid) + ")";
    }
    if (!id.empty()) out += ", event id " + in_quotes(id);
    return out;
  }
};

namespace {

constexpr std::array<std::string_view, 6> field_names = {"id",         "aggregate_type", "aggregate_id",
                                                         "event_type", "payload",        "headers"};

}  // namespace

std::size_t kafka_record::byte_size() const noexcept {
  std::size_t n = key.size() + (value ? value->size() : 0);
  for (const auto& [name, v] : headers) n += name.size() + v.size();
  return n;
}

router::router(std::string topic_template, std::vector<table_route> tables, std::optional<std::string> message_prefix)
    : m_topic_template(std::move(topic_template)),
      m_tables(std::move(tables)),
      m_message_prefix(std::move(message_prefix)) {
  auto bad_template = [&](const std::string& why) {
    return outbox_error("config", "sink.topic_template " + in_quotes(m_topic_template) + " " + why +
                                      "; use literal characters a-z A-Z 0-9 . _ - and the placeholders "
                                      "{aggregate_type}, {event_type}, {schema}, {table}");
  };
  if (m_topic_template.empty()) throw bad_template("is empty");
  std::size_t literal_length = 0;
  for (std::size_t i = 0; i < m_topic_template.size();) {
    const char c = m_topic_template[i];
    if (c == '{') {
      const std::size_t close = m_topic_template.find('}', i);
      if (close == std::string::npos) throw bad_template("has a '{' without a closing '}'");
      const std::string_view name = std::string_view(m_topic_template).substr(i + 1, close - i - 1);
      placeholder p{};
      if (name == "aggregate_type") {
        p = placeholder::aggregate_type;
      } else if (name == "event_type") {
        p = placeholder::event_type;
      } else if (name == "schema") {
        p = placeholder::schema;
      } else if (name == "table") {
        p = placeholder::table;
      } else {
        throw bad_template("has an unknown placeholder {" + std::string(name) + "}");
      }
      m_template_parts.push_back({p, {}});
      i = close + 1;
      continue;
    }
    if (!legal_topic_char(c)) {
      throw bad_template("has the character '" + std::string(1, c) + "', which a Kafka topic name cannot contain");
    }
    if (m_template_parts.empty() || m_template_parts.back().kind != placeholder::literal) {
      m_template_parts.push_back({placeholder::literal, {}});
    }
    m_template_parts.back().text += c;
    ++literal_length;
    ++i;
  }
  if (literal_length > max_topic_length) throw bad_template("is longer than a Kafka topic name may be (249)");

  for (std::size_t i = 0; i < m_tables.size(); ++i) {
    if (m_tables[i].schema.empty()) m_tables[i].schema = "public";
    for (std::size_t j = 0; j < i; ++j) {
      if (m_tables[j].schema == m_tables[i].schema && m_tables[j].table == m_tables[i].table) {
        throw outbox_error(
            "config", "source.tables lists " + m_tables[i].schema + "." + m_tables[i].table + " twice; keep one entry");
      }
    }
  }
}

const table_route* router::find_route(const relation& rel) const {
  for (const auto& t : m_tables) {
    if (t.table == rel.name && t.schema == rel.schema) return &t;
  }
  return nullptr;
}

namespace {

const std::string& mapped_name(const column_map& m, std::size_t f) {
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

bool key_like(std::uint32_t oid) noexcept {
  return oid == oid_text || oid == oid_varchar || oid == oid_bpchar || oid == oid_name || oid == oid_uuid;
}

/// Whether field `f` (index into field_names) may have a column of type `oid`.
bool accepts(std::size_t f, std::uint32_t oid) noexcept {
  if (f < 4) return key_like(oid);
  if (f == 4) return oid == oid_jsonb || oid == oid_json || oid == oid_text || oid == oid_varchar || oid == oid_bytea;
  return oid == oid_jsonb || oid == oid_json || oid == oid_text;
}

std::string_view accepted_types(std::size_t f) noexcept {
  if (f < 4) return "text, varchar, char, name or uuid";
  if (f == 4) return "jsonb, json, text, varchar or bytea";
  return "jsonb, json or text";
}

}  // namespace

void router::validate(const relation& rel) const {
  const table_route* route = find_route(rel);
  if (route == nullptr) return;
  const std::string table = rel.schema + "." + rel.name;
  for (std::size_t f = 0; f < field_count; ++f) {
    const std::string& name = mapped_name(route->columns, f);
    const auto col =
        std::find_if(rel.columns.begin(), rel.columns.end(), [&](const column& c) { return c.name == name; });
    const std::string key = "source.tables[" + table + "].columns." + std::string(field_names[f]);
    if (col == rel.columns.end()) {
      if (f == static_cast<std::size_t>(field::headers)) continue;
      throw outbox_error("config", "outbox table " + table + " has no column " + in_quotes(name) + " (mapped by " +
                                       key + "); add the column to the table or map " + key + " to an existing column");
    }
    if (!accepts(f, col->type_oid)) {
      const std::string mapped = name != field_names[f] ? " (" + std::string(field_names[f]) + ")" : std::string();
      throw outbox_error("config", "outbox table " + table + ": column " + in_quotes(name) + mapped + " has type " +
                                       type_name(col->type_oid) + ", which the relay cannot publish as " +
                                       std::string(field_names[f]) + "; change the column to " +
                                       std::string(accepted_types(f)) + ", or map " + key +
                                       " to a column of such a type");
    }
  }
}

bool router::still_matches(const resolved_relation& r, const relation& rel) const {
  if (r.source != &rel || r.column_count != rel.columns.size()) return false;
  if (r.route_index == no_column) return find_route(rel) == nullptr;
  const table_route& route = m_tables[r.route_index];
  if (route.table != rel.name || route.schema != rel.schema) return false;
  for (std::size_t f = 0; f < field_count; ++f) {
    if (r.index[f] == no_column) continue;
    const column& c = rel.columns[r.index[f]];
    if (c.type_oid != r.type_oid[f] || c.name != mapped_name(route.columns, f)) return false;
  }
  return true;
}

const router::resolved_relation& router::resolve(const relation& rel) const {
  if (const auto it = m_resolved.find(rel.oid); it != m_resolved.end() && still_matches(it->second, rel)) {
    return it->second;
  }
  resolved_relation r;
  r.source = &rel;
  r.column_count = rel.columns.size();
  if (const table_route* route = find_route(rel); route != nullptr) {
    validate(rel);
    r.route_index = static_cast<std::size_t>(route - m_tables.data());
    for (std::size_t f = 0; f < field_count; ++f) {
      r.index[f] = no_column;
      const std::string& name = mapped_name(route->columns, f);
      for (std::size_t i = 0; i < rel.columns.size(); ++i) {
        if (rel.columns[i].name == name) {
          r.index[f] = i;
          r.type_oid[f] = rel.columns[i].type_oid;
          break;
        }
      }
    }
  }
  return m_resolved.insert_or_assign(rel.oid, r).first->second;
}

std::string router::render_topic(std::string_view aggregate_type, std::string_view event_type, std::string_view schema,
                                 std::string_view table) const {
  std::string topic;
  topic.reserve(m_topic_template.size() + aggregate_type.size());
  for (const auto& part : m_template_parts) {
    switch (part.kind) {
      case placeholder::literal:
        topic += part.text;
        break;
      case placeholder::aggregate_type:
        topic += aggregate_type;
        break;
      case placeholder::event_type:
        topic += event_type;
        break;
      case placeholder::schema:
        topic += schema;
        break;
      case placeholder::table:
        topic += table;
        break;
    }
  }
  return topic;
}

kafka_record router::build(event_fields& ev, std::string_view schema, std::string_view table) const {
  kafka_record rec;
  rec.topic = render_topic(ev.aggregate_type, ev.event_type, schema, table);
  if (!legal_topic(rec.topic)) {
    throw outbox_error("decode", ev.where() + ": sink.topic_template " + in_quotes(m_topic_template) + " gives topic " +
                                     in_quotes(rec.topic) +
                                     ", which is not a legal Kafka topic name (1 to 249 characters of a-z A-Z 0-9 . _ "
                                     "-, not \".\" or \"..\"); fix the event's aggregate_type/event_type or the "
                                     "template");
  }
  rec.key.assign(ev.aggregate_id);
  rec.value = std::move(ev.payload);

  const std::size_t extra = ev.headers != nullptr ? ev.headers->size() : 0;
  rec.headers.reserve(7 + extra);
  rec.headers.emplace_back("event_id", ev.id);
  rec.headers.emplace_back("event_type", ev.event_type);
  rec.headers.emplace_back("aggregate_type", ev.aggregate_type);
  if (ev.headers != nullptr) {
    for (const auto& [name, value] : ev.headers->items()) {
      if (reserved_header(name)) {
        const std::string from =
            ev.from_message ? std::string("the envelope's \"headers\"") : "column " + in_quotes(ev.headers_column);
        throw outbox_error("decode", ev.where() + ": header " + in_quotes(name) + " in " + from +
                                         " collides with a header the relay sets (event_id, event_type, "
                                         "aggregate_type, outbox_*); rename it in the producing application");
      }
      if (value.is_string()) {
        rec.headers.emplace_back(name, value.get_ref<const std::string&>());
      } else {
        rec.headers.emplace_back(name, value.dump(-1, ' ', false, ordered_json::error_handler_t::strict));
      }
    }
  }
  const tx_context& tx = *ev.tx;
  rec.headers.emplace_back("outbox_lsn", format_lsn(tx.commit_lsn));
  rec.headers.emplace_back("outbox_xid", std::to_string(tx.xid));
  rec.headers.emplace_back("outbox_commit_ts_ms", std::to_string(tx.commit_time_ms));
  if (ev.from_message) {
    rec.headers.emplace_back("outbox_table", "message:" + std::string(ev.source));
  } else {
    std::string t;
    t.reserve(ev.schema.size() + 1 + ev.source.size());
    t.append(ev.schema).append(".").append(ev.source);
    rec.headers.emplace_back("outbox_table", std::move(t));
  }
  return rec;
}

std::optional<kafka_record> router::route_insert(const relation& rel, const std::vector<tuple_value>& values,
                                                 const tx_context& tx) const {
  return route_row(rel, values, nullptr, tx);
}

std::optional<kafka_record> router::route_insert(const relation& rel, std::vector<tuple_value>&& values,
                                                 const tx_context& tx) const {
  return route_row(rel, values, &values, tx);
}

std::optional<kafka_record> router::route_row(const relation& rel, const std::vector<tuple_value>& values,
                                              std::vector<tuple_value>* owned, const tx_context& tx) const {
  const resolved_relation& r = resolve(rel);
  if (r.route_index == no_column) return std::nullopt;
  const table_route& route = m_tables[r.route_index];

  event_fields ev;
  ev.schema = rel.schema;
  ev.source = rel.name;
  ev.tx = &tx;
  if (values.size() != rel.columns.size()) {
    throw outbox_error("decode", ev.where() + ": the row has " + std::to_string(values.size()) +
                                     " values but the relation has " + std::to_string(rel.columns.size()) +
                                     " columns; the stream and its Relation message disagree (a relay bug: report "
                                     "it with this message)");
  }

  auto bad = [&](std::size_t f, const std::string& why) {
    const std::string& name = mapped_name(route.columns, f);
    std::string what = "column " + in_quotes(name);
    if (name != field_names[f]) what += " (" + std::string(field_names[f]) + ")";
    return outbox_error("decode", ev.where() + ": " + what + " " + why);
  };
  auto value_of = [&](std::size_t f) -> const tuple_value& {
    const tuple_value& v = values[r.index[f]];
    switch (v.k) {
      case tuple_value::kind::null:
      case tuple_value::kind::text:
        break;
      case tuple_value::kind::unchanged_toast:
        throw bad(f, "arrived as an unchanged TOAST value, which an INSERT cannot carry; only INSERTs are relayed");
      case tuple_value::kind::binary:
        throw bad(f, "arrived in binary format; the relay reads pgoutput in text format (do not set binary 'true')");
    }
    return v;
  };
  auto text_of = [&](std::size_t f) -> std::string_view {
    const tuple_value& v = value_of(f);
    if (v.k == tuple_value::kind::null) {
      throw bad(f, "is NULL; every outbox row needs it: make the column NOT NULL and fix the producing application");
    }
    return v.data;
  };

  ev.id = text_of(static_cast<std::size_t>(field::id));
  ev.aggregate_type = text_of(static_cast<std::size_t>(field::aggregate_type));
  ev.aggregate_id = text_of(static_cast<std::size_t>(field::aggregate_id));
  ev.event_type = text_of(static_cast<std::size_t>(field::event_type));

  constexpr auto payload_f = static_cast<std::size_t>(field::payload);
  if (const tuple_value& p = value_of(payload_f); p.k == tuple_value::kind::text) {
    if (r.type_oid[payload_f] == oid_bytea) {
      std::string bytes;
      std::string why;
      if (!decode_bytea_hex(p.data, bytes, why)) throw bad(payload_f, why);
      ev.payload = std::move(bytes);
    } else if (owned != nullptr) {
      ev.payload = std::move((*owned)[r.index[payload_f]].data);
    } else {
      ev.payload = p.data;
    }
  }

  constexpr auto headers_f = static_cast<std::size_t>(field::headers);
  ordered_json headers;
  if (r.index[headers_f] != no_column) {
    ev.headers_column = rel.columns[r.index[headers_f]].name;
    const tuple_value& h = value_of(headers_f);
    if (h.k == tuple_value::kind::text && h.data != "{}") {
      try {
        headers = ordered_json::parse(h.data);
      } catch (const nlohmann::json::exception& e) {
        throw bad(headers_f, std::string("is not valid JSON (") + e.what() + "); store a JSON object of headers");
      }
      if (!headers.is_object()) {
        throw bad(headers_f, "holds a JSON " + std::string(headers.type_name()) +
                                 ", not an object; store a JSON object of headers such as {\"trace_id\": \"…\"}");
      }
      ev.headers = &headers;
    }
  }
  return build(ev, rel.schema, rel.name);
}

std::optional<kafka_record> router::route_message(const logical_message& msg, const tx_context& tx) const {
  if (!m_message_prefix || msg.prefix != *m_message_prefix) return std::nullopt;
  event_fields ev;
  ev.from_message = true;
  ev.source = msg.prefix;
  ev.message_lsn = msg.lsn;
  ev.tx = &tx;

  auto bad = [&](const std::string& why) {
    return outbox_error("decode", ev.where() + ": " + why +
                                      "; emit an envelope {\"id\", \"aggregate_type\", \"aggregate_id\", "
                                      "\"event_type\", \"payload\", \"headers\"} with pg_logical_emit_message");
  };
  ordered_json envelope;
  try {
    envelope = ordered_json::parse(msg.content);
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("the content is not valid JSON (") + e.what() + ")");
  }
  if (!envelope.is_object())
    throw bad("the content is a JSON " + std::string(envelope.type_name()) + ", not an object");

  auto required = [&](std::string_view name) -> std::string_view {
    const auto it = envelope.find(name);
    if (it == envelope.end()) throw bad("the envelope has no " + in_quotes(name) + " field");
    if (!it->is_string()) {
      throw bad("the envelope's " + in_quotes(name) + " field is a JSON " + std::string(it->type_name()) +
                ", not a string");
    }
    return it->get_ref<const std::string&>();
  };
  ev.id = required("id");
  ev.aggregate_type = required("aggregate_type");
  ev.aggregate_id = required("aggregate_id");
  ev.event_type = required("event_type");

  if (const auto it = envelope.find("payload"); it != envelope.end() && !it->is_null()) {
    ev.payload = it->dump(-1, ' ', false, ordered_json::error_handler_t::strict);
  }
  if (const auto it = envelope.find("headers"); it != envelope.end() && !it->is_null()) {
    if (!it->is_object()) {
      throw bad("the envelope's \"headers\" field is a JSON " + std::string(it->type_name()) + ", not an object");
    }
    ev.headers = &*it;
  }
  return build(ev, "", msg.prefix);
}

}  // namespace outbox::relay
