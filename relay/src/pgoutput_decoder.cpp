#include "outbox/relay/pgoutput_decoder.hpp"

#include "outbox/base/error.hpp"

#include <cstdio>
#include <utility>

namespace outbox::relay {

namespace {

std::string describe_tag(char tag) {
  char buf[16];
  const auto byte = static_cast<unsigned char>(tag);
  const int n = byte >= 0x20 && byte < 0x7F ? std::snprintf(buf, sizeof buf, "'%c'", tag)
                                            : std::snprintf(buf, sizeof buf, "0x%02X", static_cast<unsigned>(byte));
  return std::string(buf, static_cast<std::size_t>(n));
}

/// Bounds-checked big-endian reads over one pgoutput message; every failure names the message and its LSN.
class reader {
 public:
  reader(std::string_view data, lsn_t lsn) : m_data(data), m_lsn(lsn) {}

  [[noreturn]] void fail(const std::string& what) const {
    const std::string name = m_data.empty() ? "empty pgoutput message" : "pgoutput message " + describe_tag(m_data[0]);
    throw outbox_error("decode", name + " at LSN " + format_lsn(m_lsn) + ": " + what +
                                     "; the relay stops here rather than skip data (check that the server speaks "
                                     "pgoutput proto_version 1, then restart the relay)");
  }

  void need(std::size_t n) const {
    if (m_data.size() - m_pos < n) {
      fail("truncated at byte " + std::to_string(m_data.size()) + ", needs " + std::to_string(m_pos + n));
    }
  }

  std::uint64_t uint(std::size_t bytes) {
    need(bytes);
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < bytes; ++i) v = (v << 8U) | static_cast<unsigned char>(m_data[m_pos + i]);
    m_pos += bytes;
    return v;
  }

  char byte() { return static_cast<char>(uint(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(uint(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(uint(4)); }
  std::int32_t i32() { return static_cast<std::int32_t>(u32()); }
  std::uint64_t u64() { return uint(8); }
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }

  std::string_view bytes(std::size_t n) {
    need(n);
    const auto out = m_data.substr(m_pos, n);
    m_pos += n;
    return out;
  }

  std::string_view cstring() {
    const auto end = m_data.find('\0', m_pos);
    if (end == std::string_view::npos) fail("truncated inside a string starting at byte " + std::to_string(m_pos));
    const auto out = m_data.substr(m_pos, end - m_pos);
    m_pos = end + 1;
    return out;
  }

  void finish() const {
    if (m_pos != m_data.size()) {
      fail(std::to_string(m_data.size() - m_pos) + " unexpected bytes after the message's end at byte " +
           std::to_string(m_pos));
    }
  }

 private:
  std::string_view m_data;
  lsn_t m_lsn;
  std::size_t m_pos = 0;
};

void read_tuple(reader& r, std::vector<tuple_value>& values) {
  const std::uint16_t count = r.u16();
  values.clear();
  values.reserve(count);
  for (std::uint16_t i = 0; i < count; ++i) {
    const char kind = r.byte();
    switch (kind) {
      case 'n':
        values.push_back({tuple_value::kind::null, {}});
        break;
      case 'u':
        values.push_back({tuple_value::kind::unchanged_toast, {}});
        break;
      case 't':
      case 'b': {
        const std::int32_t len = r.i32();
        if (len < 0) r.fail("column " + std::to_string(i) + " has negative length " + std::to_string(len));
        const auto data = r.bytes(static_cast<std::size_t>(len));
        values.push_back({kind == 't' ? tuple_value::kind::text : tuple_value::kind::binary, data});
        break;
      }
      default:
        r.fail("column " + std::to_string(i) + " has unknown kind " + describe_tag(kind));
    }
  }
}

std::shared_ptr<const relation> read_relation(reader& r) {
  auto rel = std::make_shared<relation>();
  rel->oid = r.u32();
  rel->schema = r.cstring();
  if (rel->schema.empty()) rel->schema = "pg_catalog";
  rel->name = r.cstring();
  rel->replica_identity = r.byte();
  const std::uint16_t count = r.u16();
  rel->columns.reserve(count);
  for (std::uint16_t i = 0; i < count; ++i) {
    column c;
    c.part_of_key = (r.byte() & 1) != 0;
    c.name = r.cstring();
    c.type_oid = r.u32();
    c.type_modifier = r.i32();
    rel->columns.push_back(std::move(c));
  }
  r.finish();
  return rel;
}

ignored_msg skip_update(reader& r, std::vector<tuple_value>& scratch) {
  r.u32();
  char kind = r.byte();
  if (kind == 'K' || kind == 'O') {
    read_tuple(r, scratch);
    kind = r.byte();
  }
  if (kind != 'N') r.fail("expected new tuple 'N', got " + describe_tag(kind));
  read_tuple(r, scratch);
  return ignored_msg{'U'};
}

ignored_msg skip_delete(reader& r, std::vector<tuple_value>& scratch) {
  r.u32();
  const char kind = r.byte();
  if (kind != 'K' && kind != 'O') r.fail("expected old tuple 'K' or 'O', got " + describe_tag(kind));
  read_tuple(r, scratch);
  return ignored_msg{'D'};
}

ignored_msg skip_truncate(reader& r) {
  const std::uint32_t count = r.u32();
  r.byte();
  r.bytes(std::size_t{count} * 4);
  return ignored_msg{'T'};
}

}  // namespace

pg_event pgoutput_decoder::decode(std::string_view payload, lsn_t wal_start) {
  reader r(payload, wal_start);
  const char tag = r.byte();
  switch (tag) {
    case 'B': {
      begin_msg m{};
      m.final_lsn = r.u64();
      m.commit_time_us = r.i64();
      m.xid = r.u32();
      r.finish();
      return m;
    }
    case 'C': {
      commit_msg m{};
      m.flags = static_cast<std::uint8_t>(r.byte());
      m.commit_lsn = r.u64();
      m.end_lsn = r.u64();
      m.commit_time_us = r.i64();
      r.finish();
      return m;
    }
    case 'R': {
      auto rel = read_relation(r);
      auto& cached = m_relations[rel->oid];
      const bool changed = cached != nullptr && cached->columns != rel->columns;
      cached = rel;
      return relation_msg{std::move(rel), changed};
    }
    case 'I': {
      const std::uint32_t oid = r.u32();
      auto rel = find(oid);
      if (rel == nullptr) r.fail("Insert into relation OID " + std::to_string(oid) + " before its Relation message");
      const char kind = r.byte();
      if (kind != 'N') r.fail("expected new tuple 'N', got " + describe_tag(kind));
      read_tuple(r, m_values);
      r.finish();
      if (m_values.size() != rel->columns.size()) {
        r.fail("Insert into " + rel->schema + "." + rel->name + " has " + std::to_string(m_values.size()) +
               " columns, its Relation message " + std::to_string(rel->columns.size()));
      }
      return insert_msg{std::move(rel), std::span<const tuple_value>(m_values)};
    }
    case 'M': {
      logical_message m;
      m.transactional = (r.byte() & 1) != 0;
      m.lsn = r.u64();
      m.prefix = r.cstring();
      const std::uint32_t len = r.u32();
      m.content = r.bytes(len);
      r.finish();
      return m;
    }
    case 'Y': {
      r.u32();
      r.cstring();
      r.cstring();
      r.finish();
      return ignored_msg{tag};
    }
    case 'O': {
      r.u64();
      r.cstring();
      r.finish();
      return ignored_msg{tag};
    }
    case 'U': {
      auto m = skip_update(r, m_values);
      r.finish();
      return m;
    }
    case 'D': {
      auto m = skip_delete(r, m_values);
      r.finish();
      return m;
    }
    case 'T': {
      auto m = skip_truncate(r);
      r.finish();
      return m;
    }
    default:
      r.fail("unknown message type " + describe_tag(tag));
  }
}

std::shared_ptr<const relation> pgoutput_decoder::find(std::uint32_t oid) const {
  const auto it = m_relations.find(oid);
  return it == m_relations.end() ? nullptr : it->second;
}

}  // namespace outbox::relay
