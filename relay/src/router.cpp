#include "outbox/relay/router.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/text.hpp"
#include "outbox/relay/pg_types.hpp"

#include "json_scan.hpp"

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>

namespace outbox::relay {

namespace {

constexpr std::size_t k_max_quoted = 200;
constexpr std::array<std::string_view, 6> k_field_names = {"id",         "aggregate_type", "aggregate_id",
                                                           "event_type", "payload",        "headers"};

/// A value quoted for an error message, cut so one huge value cannot flood the log.
std::string in_quotes(std::string_view s) {
  std::string out = "\"";
  if (s.size() > k_max_quoted) {
    std::size_t n = k_max_quoted;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0U) == 0x80U) --n;
    out.append(s.substr(0, n)).append("…");
  } else {
    out.append(s);
  }
  out += '"';
  return out;
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

/// Decodes bytea's hex output (`\x0aff…`) into `out`; on failure says why.
bool decode_bytea_hex(std::string_view text, std::string& out, std::string& why) {
  if (!text.starts_with("\\x")) {
    why =
        "is not in bytea hex form (\\x…); the walsender uses bytea_output = 'escape'. The relay asks for 'hex' on its "
        "connections; check that nothing overrides it for the replication role";
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

const std::string& mapped_name(const config::column_map& m, std::size_t f) {
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

/// Whether `id` can be an event_id header: consumers dedupe on it (the rules of build_record).
bool usable_id(std::string_view id) {
  return !id.empty() && id.size() <= k_max_event_id_bytes && valid_utf8(id) && id.find('\0') == std::string_view::npos;
}

}  // namespace

std::string pg_types::type_name(std::uint32_t oid) {
  switch (oid) {
    case 16:
      return "boolean";
    case bytea:
      return "bytea";
    case name:
      return "name";
    case 20:
      return "bigint";
    case 21:
      return "smallint";
    case 23:
      return "integer";
    case text:
      return "text";
    case json:
      return "json";
    case 700:
      return "real";
    case 701:
      return "double precision";
    case bpchar:
      return "character";
    case varchar:
      return "character varying";
    case 1114:
      return "timestamp";
    case 1184:
      return "timestamptz";
    case 1700:
      return "numeric";
    case uuid:
      return "uuid";
    case jsonb:
      return "jsonb";
    default:
      return "type oid " + std::to_string(oid);
  }
}

std::size_t record_view::byte_size() const noexcept {
  std::size_t n = key.size() + (value ? value->size() : 0);
  for (const auto& h : headers) n += h.name.size() + h.value.size();
  return n;
}

kafka_record kafka_record::of(const record_view& r) {
  kafka_record k;
  k.topic = std::string(r.topic);
  k.key = std::string(r.key);
  if (r.value) k.value = std::string(*r.value);
  for (const auto& h : r.headers) k.headers.emplace_back(std::string(h.name), std::string(h.value));
  return k;
}

std::size_t kafka_record::byte_size() const noexcept {
  std::size_t n = key.size() + (value ? value->size() : 0);
  for (const auto& [name, v] : headers) n += name.size() + v.size();
  return n;
}

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
  std::optional<std::string_view> payload;
  std::vector<json_member> header_members;  ///< the headers object's members
  std::string_view headers_column;          ///< row: the mapped column's name, for errors

  /// "outbox table public.outbox (commit LSN …, xid …), event id "…"" for error messages.
  [[nodiscard]] std::string where() const {
    std::string out;
    if (from_message) {
      out = "logical message with prefix " + in_quotes(source) + " at LSN " + format_lsn(message_lsn) +
            " (commit LSN " + format_lsn(tx->commit_lsn) + ", xid " + std::to_string(tx->xid) + ")";
    } else {
      out = "outbox table " + std::string(schema) + "." + std::string(source) + " (commit LSN " +
            format_lsn(tx->commit_lsn) + ", xid " + std::to_string(tx->xid) + ")";
    }
    if (!id.empty() && valid_utf8(id)) out += ", event id " + in_quotes(id);
    return out;
  }
};

router::router(const config::relay_config& c) : m_tables(c.source.tables), m_template(c.sink.topic_template) {
  if (c.source.logical_messages) {
    m_message_prefix = c.source.logical_messages->prefix;
    m_message_outbox_table = "message:" + *m_message_prefix;
  }
  for (std::size_t i = 0; i < m_tables.size(); ++i) {
    if (m_tables[i].schema.empty()) m_tables[i].schema = "public";
    for (std::size_t j = 0; j < i; ++j) {
      if (m_tables[j].schema == m_tables[i].schema && m_tables[j].table == m_tables[i].table) {
        throw outbox_error("config", "source.tables lists " + m_tables[i].qualified_name() + " twice; keep one entry");
      }
    }
  }
  for (const auto& t : c.sink.allowed_topics) {
    if (!t.empty() && t.front() == '^') {
      m_allowed_patterns.emplace_back(t, std::regex::ECMAScript | std::regex::optimize);
    } else {
      m_allowed_names.push_back(t);
    }
  }
}

std::optional<std::size_t> router::table_index(std::string_view schema, std::string_view table) const {
  for (std::size_t i = 0; i < m_tables.size(); ++i) {
    if (m_tables[i].table == table && m_tables[i].schema == schema) return i;
  }
  return std::nullopt;
}

bool router::topic_allowed(std::string_view topic) {
  if (m_allowed_names.empty() && m_allowed_patterns.empty()) return true;
  std::string key(topic);
  if (const auto it = m_allowed_cache.find(key); it != m_allowed_cache.end()) return it->second;
  bool ok = std::find(m_allowed_names.begin(), m_allowed_names.end(), topic) != m_allowed_names.end();
  for (const auto& re : m_allowed_patterns) {
    if (ok) break;
    ok = std::regex_match(key, re);
  }
  if (m_allowed_cache.size() > 10000) m_allowed_cache.clear();
  m_allowed_cache.emplace(std::move(key), ok);
  return ok;
}

std::optional<std::string> router::on_relation(const relation& rel) {
  const std::string name = rel.schema + "." + rel.name;
  auto& r = m_relations[rel.oid];
  if (r.table != no_column && r.name != name) {
    const auto& t = m_tables[r.table];
    r.stop =
        "outbox table " + r.name + " (OID " + std::to_string(rel.oid) + ") is now called " + name +
        ". The relay stopped before its first row under the new name and confirmed nothing past it. If the "
        "application now writes to " +
        name + ", set source.tables[" + t.qualified_name() + "].name to " + name +
        " and restart. If the table was swapped for a new one (ALTER TABLE ... RENAME, then CREATE TABLE), add the "
        "new table to the publication (ALTER PUBLICATION ... ADD TABLE " +
        t.qualified_name() + "), restart with --backfill-table " + t.qualified_name() +
        " to publish the rows written to it meanwhile";
    return r.stop;
  }
  if (r.table == no_column) {
    const auto idx = table_index(rel.schema, rel.name);
    if (!idx) {
      r.name = name;
      return std::nullopt;
    }
    r.table = *idx;
    r.name = name;
  }
  const auto& route = m_tables[r.table];
  r.outbox_table = route.qualified_name();
  r.stop.clear();
  for (std::size_t f = 0; f < field_count; ++f) {
    const std::string& col = mapped_name(route.columns, f);
    r.index[f] = no_column;
    for (std::size_t i = 0; i < rel.columns.size(); ++i) {
      if (rel.columns[i].name == col) {
        r.index[f] = i;
        r.type_oid[f] = rel.columns[i].type_oid;
        break;
      }
    }
    if (r.index[f] == no_column && f != static_cast<std::size_t>(field::headers)) {
      const std::string key = "source.tables[" + route.qualified_name() + "].columns." + std::string(k_field_names[f]);
      r.stop = "outbox table " + name + " has no column " + in_quotes(col) + " (mapped by " + key +
               ") any more: it was renamed or dropped. The relay stopped before the first row without it and confirmed "
               "nothing past it. Map " +
               key + " to the column's new name (or add the column back) and restart";
      return r.stop;
    }
  }
  return std::nullopt;
}

std::string_view router::keep(std::string s) {
  if (m_kept_used == m_kept.size()) m_kept.emplace_back();
  std::string& slot = m_kept[m_kept_used++];
  slot = std::move(s);
  return slot;
}

std::string_view router::string_value(std::string_view raw) {
  // Most strings have no escape: their body is the value, and needs no copy.
  const std::string_view body = raw.size() >= 2 ? raw.substr(1, raw.size() - 2) : std::string_view();
  if (body.find('\\') == std::string_view::npos) return body;
  return keep(json_scan::decode_body(body));
}

void router::set_tx(const tx_context& tx) {
  if (m_tx_set && tx.commit_lsn == m_tx.commit_lsn && tx.xid == m_tx.xid && tx.commit_time_ms == m_tx.commit_time_ms)
    return;
  m_tx = tx;
  m_tx_set = true;
  m_lsn_text = format_lsn(tx.commit_lsn);
  m_xid_text = std::to_string(tx.xid);
  m_ts_text = std::to_string(tx.commit_time_ms);
}

routed router::invalid(std::string reason, std::string column, std::string message) {
  routed r;
  r.what = routed::outcome::invalid;
  r.invalid = invalid_record{std::move(reason), std::move(column), std::move(message)};
  return r;
}

routed router::build(event_fields& ev, std::size_t source, std::string_view schema, std::string_view table,
                     std::string_view outbox_table) {
  routed r = build_record(ev, source, schema, table, outbox_table);
  r.source = source;
  if (r.what == routed::outcome::invalid && usable_id(ev.id)) r.row_id = ev.id;
  return r;
}

routed router::build_record(event_fields& ev, std::size_t source, std::string_view schema, std::string_view table,
                            std::string_view outbox_table) {
  auto bad_text = [&](std::string_view field_name, std::string_view v, bool id) -> std::optional<routed> {
    if (!valid_utf8(v)) {
      return invalid(
          "not_utf8", std::string(field_name),
          ev.where() + ": " + std::string(field_name) + " is not valid UTF-8; fix the producing application");
    }
    if (id && v.find('\0') != std::string_view::npos) {
      return invalid("bad_id", std::string(field_name),
                     ev.where() + ": " + std::string(field_name) + " holds a NUL byte");
    }
    return std::nullopt;
  };
  if (ev.id.empty()) {
    return invalid("empty_id", "id",
                   ev.where() +
                       ": the event id is empty, so consumers could not tell this event from any other; give "
                       "every event a unique id (a uuid)");
  }
  if (ev.id.size() > k_max_event_id_bytes) {
    return invalid("id_too_long", "id",
                   ev.where() + ": the event id has " + std::to_string(ev.id.size()) + " bytes, more than the " +
                       std::to_string(k_max_event_id_bytes) + " consumers accept");
  }
  if (auto b = bad_text("id", ev.id, true)) return std::move(*b);
  if (auto b = bad_text("aggregate_type", ev.aggregate_type, false)) return std::move(*b);
  if (auto b = bad_text("aggregate_id", ev.aggregate_id, false)) return std::move(*b);
  if (auto b = bad_text("event_type", ev.event_type, false)) return std::move(*b);
  if (ev.event_type.empty()) {
    return invalid("empty_field", "event_type", ev.where() + ": event_type is empty; every event needs a type");
  }

  m_template.render(m_topic, ev.aggregate_type, ev.event_type, schema, table);
  if (!legal_topic(m_topic)) {
    return invalid("bad_topic", "aggregate_type",
                   ev.where() + ": sink.topic_template " + in_quotes(m_template.text()) + " gives topic " +
                       in_quotes(m_topic) +
                       ", which is not a legal Kafka topic name (1 to 249 characters of a-z A-Z 0-9 . _ -, not \".\" "
                       "or \"..\"); fix the event's aggregate_type/event_type or the template");
  }
  if (!topic_allowed(m_topic)) {
    return invalid("topic_not_allowed", "aggregate_type",
                   ev.where() + ": topic " + in_quotes(m_topic) +
                       " is not in sink.allowed_topics; add it there, or fix the event's aggregate_type/event_type");
  }

  m_headers.clear();
  m_headers.push_back({"event_id", ev.id});
  m_headers.push_back({"event_type", ev.event_type});
  m_headers.push_back({"aggregate_type", ev.aggregate_type});
  for (const auto& m : ev.header_members) {
    const std::string_view name = m.name_escaped ? keep(m.name()) : m.raw_name;
    const std::string from =
        ev.from_message ? std::string("the envelope's \"headers\"") : "column " + in_quotes(ev.headers_column);
    const std::string column = ev.from_message ? std::string("headers") : std::string(ev.headers_column);
    if (reserved_header(name)) {
      return invalid("reserved_header", column,
                     ev.where() + ": header " + in_quotes(name) + " in " + from +
                         " collides with a header the relay sets (event_id, event_type, aggregate_type, outbox_*); "
                         "rename it in the producing application");
    }
    if (name.empty()) {
      return invalid("bad_headers", column, ev.where() + ": a header in " + from + " has an empty name");
    }
    const std::string_view value = m.kind == json_kind::string ? string_value(m.raw) : m.raw;
    m_headers.push_back({name, value});
  }
  m_headers.push_back({"outbox_lsn", m_lsn_text});
  m_headers.push_back({"outbox_xid", m_xid_text});
  m_headers.push_back({"outbox_commit_ts_ms", m_ts_text});
  m_headers.push_back({"outbox_table", outbox_table});

  m_record.topic = m_topic;
  m_record.key = ev.aggregate_id;
  m_record.value = ev.payload;
  m_record.headers = m_headers;
  routed r;
  r.what = routed::outcome::record;
  r.source = source;
  r.row_id = ev.id;
  r.record = &m_record;
  return r;
}

routed router::route_insert(const relation& rel, std::span<const tuple_value> values, const tx_context& tx) {
  m_kept_used = 0;
  const auto it = m_relations.find(rel.oid);
  if (it == m_relations.end() || it->second.table == no_column) {
    routed r;
    r.what = routed::outcome::stop;
    r.stop_reason = "the publication sends rows of table " + rel.schema + "." + rel.name + " (OID " +
                    std::to_string(rel.oid) +
                    "), which is not in source.tables; the relay never drops a row, so it "
                    "stopped before this one (commit LSN " +
                    format_lsn(tx.commit_lsn) +
                    ") and confirmed nothing "
                    "past it. Add the table to source.tables, or take it out of the publication (ALTER PUBLICATION ... "
                    "DROP TABLE " +
                    rel.schema + "." + rel.name + ") if it is not an outbox table";
    return r;
  }
  const resolved_relation& res = it->second;
  if (!res.stop.empty()) {
    // on_relation refused this relation: its mapped columns are not known, so none of its rows is read.
    routed r;
    r.what = routed::outcome::stop;
    r.stop_reason = res.stop;
    return r;
  }
  const auto& route = m_tables[res.table];
  set_tx(tx);
  event_fields ev;
  ev.schema = rel.schema;
  ev.source = rel.name;
  ev.tx = &tx;
  if (values.size() != rel.columns.size()) {
    return invalid("bad_row", "",
                   ev.where() + ": the row has " + std::to_string(values.size()) + " values but the relation has " +
                       std::to_string(rel.columns.size()) + " columns");
  }
  auto column_name = [&](std::size_t f) { return mapped_name(route.columns, f); };
  auto bad = [&](std::size_t f, std::string reason, const std::string& why) {
    std::string what = "column " + in_quotes(column_name(f));
    if (column_name(f) != k_field_names[f]) what += " (" + std::string(k_field_names[f]) + ")";
    routed r = invalid(std::move(reason), column_name(f), ev.where() + ": " + what + " " + why);
    if (usable_id(ev.id)) r.row_id = ev.id;  // a bad payload or headers column: the dead letter still names the event
    return r;
  };
  // A value in text form, or why not (NULL is reported by the caller where it matters).
  auto value_of = [&](std::size_t f, const tuple_value*& out) -> std::optional<routed> {
    const tuple_value& v = values[res.index[f]];
    switch (v.k) {
      case tuple_value::kind::null:
      case tuple_value::kind::text:
        out = &v;
        return std::nullopt;
      case tuple_value::kind::unchanged_toast:
        return bad(f, "bad_row", "arrived as an unchanged TOAST value, which an INSERT cannot carry");
      case tuple_value::kind::binary:
        return bad(f, "bad_row", "arrived in binary format; the relay reads pgoutput in text format");
    }
    return std::nullopt;
  };
  std::string_view* targets[4] = {&ev.id, &ev.aggregate_type, &ev.aggregate_id, &ev.event_type};
  for (std::size_t f = 0; f < 4; ++f) {
    const tuple_value* v = nullptr;
    if (auto b = value_of(f, v)) return std::move(*b);
    if (v->k == tuple_value::kind::null) {
      return bad(f, "null_field",
                 "is NULL; every outbox row needs it: make the column NOT NULL and fix the producing "
                 "application");
    }
    *targets[f] = v->data;
  }

  constexpr auto payload_f = static_cast<std::size_t>(field::payload);
  if (res.index[payload_f] != no_column) {
    const tuple_value* p = nullptr;
    if (auto b = value_of(payload_f, p)) return std::move(*b);
    if (p->k == tuple_value::kind::text) {
      if (res.type_oid[payload_f] == pg_types::bytea) {
        std::string why;
        if (!decode_bytea_hex(p->data, m_payload, why)) return bad(payload_f, "bad_bytea", why);
        ev.payload = m_payload;
      } else {
        ev.payload = p->data;
      }
    }
  }

  constexpr auto headers_f = static_cast<std::size_t>(field::headers);
  if (res.index[headers_f] != no_column) {
    ev.headers_column = rel.columns[res.index[headers_f]].name;
    const std::uint32_t t = res.type_oid[headers_f];
    if (t != pg_types::jsonb && t != pg_types::json && t != pg_types::text && t != pg_types::varchar) {
      return bad(headers_f, "bad_type",
                 "has type " + pg_types::type_name(t) +
                     "; a headers column must be jsonb, json or text holding a "
                     "JSON object");
    }
    const tuple_value* h = nullptr;
    if (auto b = value_of(headers_f, h)) return std::move(*b);
    if (h->k == tuple_value::kind::text && h->data != "{}") {
      std::string why;
      if (!json_scan::object(h->data, ev.header_members, why)) {
        return bad(headers_f, "bad_headers",
                   "is " + why +
                       "; store a JSON object of headers such as "
                       "{\"trace_id\": \"…\"}");
      }
    }
  }
  return build(ev, res.table, rel.schema, rel.name, res.outbox_table);
}

routed router::route_message(const logical_message& msg, const tx_context& tx) {
  m_kept_used = 0;
  if (!m_message_prefix || msg.prefix != *m_message_prefix) return {};
  set_tx(tx);
  event_fields ev;
  ev.from_message = true;
  ev.source = msg.prefix;
  ev.message_lsn = msg.lsn;
  ev.tx = &tx;

  auto bad = [&](std::string reason, std::string field_name, const std::string& why) {
    return invalid(std::move(reason), std::move(field_name),
                   ev.where() + ": " + why +
                       "; emit an envelope {\"id\", \"aggregate_type\", \"aggregate_id\", \"event_type\", \"payload\", "
                       "\"headers\"} with pg_logical_emit_message(true, ...)");
  };
  thread_local std::vector<json_member> envelope;  // reused: no allocation per message
  std::string why;
  if (!json_scan::object(msg.content, envelope, why)) return bad("bad_envelope", "", "the content is " + why);

  const json_member* fields[6] = {};
  for (const auto& m : envelope) {
    const std::string_view name = m.name_escaped ? keep(m.name()) : m.raw_name;
    for (std::size_t f = 0; f < 6; ++f) {
      if (name != k_field_names[f]) continue;
      if (fields[f] != nullptr) {
        return bad("bad_envelope", std::string(name), "the envelope has the field " + in_quotes(name) + " twice");
      }
      fields[f] = &m;
    }
  }
  std::string_view* targets[4] = {&ev.id, &ev.aggregate_type, &ev.aggregate_id, &ev.event_type};
  for (std::size_t f = 0; f < 4; ++f) {
    const std::string name(k_field_names[f]);
    if (fields[f] == nullptr) return bad("bad_envelope", name, "the envelope has no " + in_quotes(name) + " field");
    if (fields[f]->kind != json_kind::string) {
      return bad("bad_envelope", name, "the envelope's " + in_quotes(name) + " field is not a string");
    }
    *targets[f] = string_value(fields[f]->raw);
  }
  if (const json_member* p = fields[4]; p != nullptr && p->kind != json_kind::null) ev.payload = p->raw;
  if (const json_member* h = fields[5]; h != nullptr && h->kind != json_kind::null) {
    if (h->kind != json_kind::object) {
      return bad("bad_envelope", "headers", "the envelope's \"headers\" field is not an object");
    }
    if (!json_scan::object(h->raw, ev.header_members, why)) {
      return bad("bad_envelope", "headers", "the envelope's \"headers\" field is " + why);
    }
  }
  return build(ev, m_tables.size(), "", msg.prefix, m_message_outbox_table);
}

}  // namespace outbox::relay
