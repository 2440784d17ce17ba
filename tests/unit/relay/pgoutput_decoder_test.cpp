#include "outbox/relay/pgoutput_decoder.hpp"

#include "outbox/base/error.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace outbox::relay {
namespace {

constexpr lsn_t at = 0x16'B374D848;
constexpr std::uint32_t outbox_oid = 16385;

/// Builds pgoutput messages byte by byte, big-endian.
class msg {
 public:
  explicit msg(char tag) { m_bytes.push_back(tag); }
  msg& i8(std::uint8_t v) { return put(v, 1); }
  msg& i16(std::uint16_t v) { return put(v, 2); }
  msg& i32(std::uint32_t v) { return put(v, 4); }
  msg& i64(std::uint64_t v) { return put(v, 8); }
  msg& str(const std::string& s) {
    m_bytes += s;
    m_bytes.push_back('\0');
    return *this;
  }
  msg& raw(const std::string& s) {
    m_bytes += s;
    return *this;
  }
  [[nodiscard]] const std::string& bytes() const { return m_bytes; }

 private:
  msg& put(std::uint64_t v, int n) {
    for (int shift = 8 * (n - 1); shift >= 0; shift -= 8) m_bytes.push_back(static_cast<char>((v >> shift) & 0xFFU));
    return *this;
  }
  std::string m_bytes;
};

struct col_spec {
  std::string name;
  std::uint32_t type_oid;
  bool key;
};

std::string relation_bytes(std::uint32_t oid, const std::string& ns, const std::string& name,
                           const std::vector<col_spec>& cols) {
  msg m('R');
  m.i32(oid).str(ns).str(name).i8('d').i16(static_cast<std::uint16_t>(cols.size()));
  for (const auto& c : cols) m.i8(c.key ? 1 : 0).str(c.name).i32(c.type_oid).i32(0xFFFFFFFF);
  return m.bytes();
}

const std::vector<col_spec> outbox_cols = {{"id", 2950, true},          {"aggregate_type", 25, false},
                                           {"aggregate_id", 25, false}, {"event_type", 25, false},
                                           {"payload", 3802, false},    {"headers", 3802, false}};

/// TupleData where each value is nullopt (null), "\x01u" (unchanged TOAST) or text.
msg& tuple(msg& m, const std::vector<std::optional<std::string>>& values) {
  m.i16(static_cast<std::uint16_t>(values.size()));
  for (const auto& v : values) {
    if (!v) {
      m.i8('n');
    } else if (*v == "\x01u") {
      m.i8('u');
    } else {
      m.i8('t').i32(static_cast<std::uint32_t>(v->size())).raw(*v);
    }
  }
  return m;
}

std::string insert_bytes(std::uint32_t oid, const std::vector<std::optional<std::string>>& values) {
  msg m('I');
  m.i32(oid).i8('N');
  return tuple(m, values).bytes();
}

const std::vector<std::optional<std::string>> outbox_row = {
    "7f1c2b52-4d4e-4c1a-9d0e-1b2c3d4e5f60", "order", "o-1", "created", R"({"n":1})", std::nullopt};

std::string begin_bytes() { return msg('B').i64(0x16'B374D900).i64(760'000'000'123'456).i32(734).bytes(); }
std::string commit_bytes() {
  return msg('C').i8(0).i64(0x16'B374D900).i64(0x16'B374D930).i64(760'000'000'123'456).bytes();
}
std::string message_bytes(bool transactional, const std::string& content) {
  return msg('M')
      .i8(transactional ? 1 : 0)
      .i64(0x16'B374DA00)
      .str("outbox")
      .i32(static_cast<std::uint32_t>(content.size()))
      .raw(content)
      .bytes();
}

/// Decodes and expects an outbox_error("decode") naming the LSN and saying the relay stops.
void expect_decode_error(pgoutput_decoder& d, const std::string& bytes, const std::string& needle = "") {
  try {
    static_cast<void>(d.decode(bytes, at));
    ADD_FAILURE() << "decoded " << bytes.size() << " bytes without error";
  } catch (const outbox_error& e) {
    const std::string what = e.what();
    EXPECT_EQ(e.value().category, "decode");
    EXPECT_EQ(e.value().retry, retry_class::fatal);
    EXPECT_NE(what.find("16/B374D848"), std::string::npos) << what;
    EXPECT_NE(what.find("stops"), std::string::npos) << what;
    if (!needle.empty()) {
      EXPECT_NE(what.find(needle), std::string::npos) << what;
    }
  }
}

TEST(relay_pgoutput_decoder, begin_and_commit) {
  pgoutput_decoder d;
  const auto b = std::get<begin_msg>(d.decode(begin_bytes(), at));
  EXPECT_EQ(b.final_lsn, 0x16'B374D900U);
  EXPECT_EQ(b.commit_time_us, 760'000'000'123'456);
  EXPECT_EQ(b.xid, 734U);
  const auto c = std::get<commit_msg>(d.decode(commit_bytes(), at));
  EXPECT_EQ(c.flags, 0);
  EXPECT_EQ(c.commit_lsn, 0x16'B374D900U);
  EXPECT_EQ(c.end_lsn, 0x16'B374D930U);
  EXPECT_EQ(c.commit_time_us, 760'000'000'123'456);
}

TEST(relay_pgoutput_decoder, relation_is_cached_and_insert_decoded) {
  pgoutput_decoder d;
  EXPECT_EQ(d.find(outbox_oid), nullptr);
  const auto r = std::get<relation_msg>(d.decode(relation_bytes(outbox_oid, "public", "outbox", outbox_cols), at));
  EXPECT_FALSE(r.columns_changed);
  ASSERT_NE(r.rel, nullptr);
  EXPECT_EQ(r.rel->oid, outbox_oid);
  EXPECT_EQ(r.rel->schema, "public");
  EXPECT_EQ(r.rel->name, "outbox");
  EXPECT_EQ(r.rel->replica_identity, 'd');
  ASSERT_EQ(r.rel->columns.size(), outbox_cols.size());
  for (std::size_t i = 0; i < outbox_cols.size(); ++i) {
    EXPECT_EQ(r.rel->columns[i].name, outbox_cols[i].name);
    EXPECT_EQ(r.rel->columns[i].type_oid, outbox_cols[i].type_oid);
    EXPECT_EQ(r.rel->columns[i].type_modifier, -1);
    EXPECT_EQ(r.rel->columns[i].part_of_key, outbox_cols[i].key);
  }
  EXPECT_EQ(d.find(outbox_oid), r.rel);

  auto row = outbox_row;
  row[4] = "\x01u";
  const std::string bytes = insert_bytes(outbox_oid, row);  // the values are views into it
  const auto ins = std::get<insert_msg>(d.decode(bytes, at));
  EXPECT_EQ(ins.rel, r.rel);
  const std::vector<tuple_value> expected = {{tuple_value::kind::text, "7f1c2b52-4d4e-4c1a-9d0e-1b2c3d4e5f60"},
                                             {tuple_value::kind::text, "order"},
                                             {tuple_value::kind::text, "o-1"},
                                             {tuple_value::kind::text, "created"},
                                             {tuple_value::kind::unchanged_toast, ""},
                                             {tuple_value::kind::null, ""}};
  EXPECT_EQ(std::vector<tuple_value>(ins.values.begin(), ins.values.end()), expected);
}

TEST(relay_pgoutput_decoder, binary_and_embedded_nul_values_are_kept_byte_for_byte) {
  pgoutput_decoder d;
  static_cast<void>(d.decode(relation_bytes(7, "s", "t", {{"a", 17, false}, {"b", 25, false}}), at));
  const std::string blob("\0\xFF\x01", 3);
  msg m('I');
  m.i32(7).i8('N').i16(2).i8('b').i32(3).raw(blob).i8('t').i32(0);
  const std::string bytes = m.bytes();
  const auto ins = std::get<insert_msg>(d.decode(bytes, at));
  ASSERT_EQ(ins.values.size(), 2U);
  EXPECT_EQ(ins.values[0].k, tuple_value::kind::binary);
  EXPECT_EQ(ins.values[0].data, blob);
  EXPECT_EQ(ins.values[1].k, tuple_value::kind::text);
  EXPECT_EQ(ins.values[1].data, "");
}

TEST(relay_pgoutput_decoder, empty_namespace_means_pg_catalog) {
  pgoutput_decoder d;
  const auto r = std::get<relation_msg>(d.decode(relation_bytes(1259, "", "pg_class", {{"x", 23, false}}), at));
  EXPECT_EQ(r.rel->schema, "pg_catalog");
}

TEST(relay_pgoutput_decoder, relation_change_mid_stream) {
  pgoutput_decoder d;
  const auto first = std::get<relation_msg>(d.decode(relation_bytes(outbox_oid, "public", "outbox", outbox_cols), at));
  const auto old_insert = std::get<insert_msg>(d.decode(insert_bytes(outbox_oid, outbox_row), at));

  const auto same = std::get<relation_msg>(d.decode(relation_bytes(outbox_oid, "public", "outbox", outbox_cols), at));
  EXPECT_FALSE(same.columns_changed);

  auto cols = outbox_cols;
  cols.push_back({"tenant", 25, false});
  const auto changed = std::get<relation_msg>(d.decode(relation_bytes(outbox_oid, "public", "outbox", cols), at));
  EXPECT_TRUE(changed.columns_changed);
  EXPECT_EQ(changed.rel->columns.size(), 7U);
  EXPECT_EQ(d.find(outbox_oid), changed.rel);
  EXPECT_EQ(first.rel->columns.size(), 6U) << "events decoded earlier keep their shape";
  EXPECT_EQ(old_insert.rel->columns.size(), 6U);

  auto row = outbox_row;
  row.emplace_back("acme");
  const std::string bytes = insert_bytes(outbox_oid, row);
  const auto ins = std::get<insert_msg>(d.decode(bytes, at));
  EXPECT_EQ(ins.rel, changed.rel);
  ASSERT_EQ(ins.values.size(), 7U);
  EXPECT_EQ(ins.values[6].data, "acme");
  expect_decode_error(d, insert_bytes(outbox_oid, outbox_row), "6 columns");

  cols.back().type_oid = 1043;
  EXPECT_TRUE(
      std::get<relation_msg>(d.decode(relation_bytes(outbox_oid, "public", "outbox", cols), at)).columns_changed);
  cols.back().key = true;
  EXPECT_TRUE(
      std::get<relation_msg>(d.decode(relation_bytes(outbox_oid, "public", "outbox", cols), at)).columns_changed);
  const auto other = std::get<relation_msg>(d.decode(relation_bytes(outbox_oid + 1, "public", "other", cols), at));
  EXPECT_FALSE(other.columns_changed) << "first sight of an OID is not a change";
}

TEST(relay_pgoutput_decoder, logical_messages) {
  pgoutput_decoder d;
  const std::string content = R"({"id":"e1","payload":{"a":1}})";
  const std::string first = message_bytes(true, content);  // prefix and content are views into it
  const auto t = std::get<logical_message>(d.decode(first, at));
  EXPECT_TRUE(t.transactional);
  EXPECT_EQ(t.lsn, 0x16'B374DA00U);
  EXPECT_EQ(t.prefix, "outbox");
  EXPECT_EQ(t.content, content);
  const std::string second = message_bytes(false, std::string("\0\0", 2));
  const auto n = std::get<logical_message>(d.decode(second, at));
  EXPECT_FALSE(n.transactional);
  EXPECT_EQ(n.content, std::string("\0\0", 2));
}

TEST(relay_pgoutput_decoder, ignored_messages_are_named_by_tag) {
  pgoutput_decoder d;
  static_cast<void>(d.decode(relation_bytes(outbox_oid, "public", "outbox", outbox_cols), at));
  msg type('Y');
  type.i32(16400).str("public").str("mood");
  msg origin('O');
  origin.i64(0x10).str("node_a");
  msg update('U');
  update.i32(outbox_oid).i8('O');
  tuple(update, outbox_row).i8('N');
  tuple(update, outbox_row);
  msg update_new_only('U');
  update_new_only.i32(outbox_oid).i8('N');
  tuple(update_new_only, outbox_row);
  msg del('D');
  del.i32(outbox_oid).i8('K');
  tuple(del, {"7f1c2b52-4d4e-4c1a-9d0e-1b2c3d4e5f60", std::nullopt});
  msg truncate('T');
  truncate.i32(2).i8(1).i32(outbox_oid).i32(outbox_oid + 1);
  for (const auto* m : {&type, &origin, &update, &update_new_only, &del, &truncate}) {
    const auto ev = d.decode(m->bytes(), at);
    ASSERT_TRUE(std::holds_alternative<ignored_msg>(ev)) << m->bytes()[0];
    EXPECT_EQ(std::get<ignored_msg>(ev).tag, m->bytes()[0]);
  }
}

TEST(relay_pgoutput_decoder, errors_name_the_lsn_and_stop) {
  pgoutput_decoder d;
  expect_decode_error(d, "", "empty");
  expect_decode_error(d, "S", "unknown message type 'S'");
  expect_decode_error(d, std::string(1, '\x80'), "0x80");
  expect_decode_error(d, insert_bytes(outbox_oid, outbox_row), "16385");
  static_cast<void>(d.decode(relation_bytes(outbox_oid, "public", "outbox", outbox_cols), at));
  expect_decode_error(d, insert_bytes(outbox_oid, {"only", "five", "of", "six", "columns"}), "5 columns");
  auto too_many = outbox_row;
  too_many.emplace_back("extra");
  expect_decode_error(d, insert_bytes(outbox_oid, too_many), "7 columns");
  msg bad_kind('I');
  bad_kind.i32(outbox_oid).i8('N').i16(1).i8('x');
  expect_decode_error(d, bad_kind.bytes(), "'x'");
  msg negative('I');
  negative.i32(outbox_oid).i8('N').i16(1).i8('t').i32(0xFFFFFFFF);
  expect_decode_error(d, negative.bytes(), "negative");
  msg not_new('I');
  not_new.i32(outbox_oid).i8('K');
  tuple(not_new, outbox_row);
  expect_decode_error(d, not_new.bytes(), "'N'");
  expect_decode_error(d, begin_bytes() + "x", "unexpected");
  expect_decode_error(d, insert_bytes(outbox_oid, outbox_row) + std::string(1, '\0'), "unexpected");
}

TEST(relay_pgoutput_decoder, every_truncation_of_a_valid_message_throws) {
  msg update('U');
  update.i32(outbox_oid).i8('K');
  tuple(update, {std::string("k")}).i8('N');
  tuple(update, outbox_row);
  msg del('D');
  del.i32(outbox_oid).i8('O');
  tuple(del, outbox_row);
  msg binary('I');
  binary.i32(outbox_oid)
      .i8('N')
      .i16(6)
      .i8('b')
      .i32(2)
      .raw("ab")
      .i8('n')
      .i8('u')
      .i8('t')
      .i32(1)
      .raw("x")
      .i8('n')
      .i8('n');
  const std::vector<std::string> messages = {
      begin_bytes(),
      commit_bytes(),
      relation_bytes(outbox_oid, "public", "outbox", outbox_cols),
      insert_bytes(outbox_oid, outbox_row),
      binary.bytes(),
      message_bytes(true, R"({"id":"e1"})"),
      msg('Y').i32(16400).str("public").str("mood").bytes(),
      msg('O').i64(0x10).str("node_a").bytes(),
      update.bytes(),
      del.bytes(),
      msg('T').i32(2).i8(0).i32(1).i32(2).bytes(),
  };
  for (const auto& full : messages) {
    pgoutput_decoder d;
    static_cast<void>(d.decode(relation_bytes(outbox_oid, "public", "outbox", outbox_cols), at));
    ASSERT_NO_THROW(static_cast<void>(d.decode(full, at))) << full[0];
    const auto cached = d.find(outbox_oid);
    for (std::size_t n = 0; n < full.size(); ++n) {
      // A copy of exactly n bytes, so that a read past the end is caught by ASan rather than hitting valid memory.
      const std::string prefix = full.substr(0, n);
      SCOPED_TRACE(std::string(1, full[0]) + " cut to " + std::to_string(n) + " of " + std::to_string(full.size()));
      expect_decode_error(d, prefix);
    }
    EXPECT_EQ(d.find(outbox_oid), cached) << "a failed message leaves the cache alone";
  }
}

TEST(relay_pgoutput_decoder, truncated_relation_does_not_replace_the_cached_one) {
  pgoutput_decoder d;
  static_cast<void>(d.decode(relation_bytes(outbox_oid, "public", "outbox", outbox_cols), at));
  const auto cached = d.find(outbox_oid);
  auto cols = outbox_cols;
  cols.pop_back();
  const std::string changed = relation_bytes(outbox_oid, "public", "outbox", cols);
  for (std::size_t n = 0; n < changed.size(); ++n) {
    expect_decode_error(d, changed.substr(0, n));
    ASSERT_EQ(d.find(outbox_oid), cached);
  }
}

}  // namespace
}  // namespace outbox::relay
