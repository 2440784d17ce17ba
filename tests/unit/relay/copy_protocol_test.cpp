#include "outbox/relay/copy_protocol.hpp"

#include "outbox/base/error.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <variant>

namespace outbox::relay {
namespace {

void put64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xFFU));
}

std::uint64_t get64(const std::string& s, std::size_t pos) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8U) | static_cast<unsigned char>(s.at(pos + i));
  return v;
}

std::string xlog(lsn_t start, lsn_t end, std::int64_t ts, const std::string& payload) {
  std::string m = "w";
  put64(m, start);
  put64(m, end);
  put64(m, static_cast<std::uint64_t>(ts));
  return m + payload;
}

std::string keepalive(lsn_t end, std::int64_t ts, bool reply) {
  std::string m = "k";
  put64(m, end);
  put64(m, static_cast<std::uint64_t>(ts));
  m.push_back(reply ? '\1' : '\0');
  return m;
}

TEST(relay_copy_protocol, parses_xlog_data_big_endian) {
  const std::string payload("B\0\x01\xFF", 4);
  const std::string m = xlog(0x16'B374D848, 0x17'00000001, 0x0102030405060708, payload);
  const auto parsed = parse_server_message(m);
  ASSERT_TRUE(std::holds_alternative<xlog_data>(parsed));
  const auto& x = std::get<xlog_data>(parsed);
  EXPECT_EQ(x.wal_start, 0x16'B374D848U);
  EXPECT_EQ(x.wal_end, 0x17'00000001U);
  EXPECT_EQ(x.send_time_us, 0x0102030405060708);
  EXPECT_EQ(x.payload, payload);
  EXPECT_EQ(x.payload.data(), m.data() + 25);
}

TEST(relay_copy_protocol, parses_xlog_data_with_empty_payload_and_negative_time) {
  const std::string m = xlog(1, 2, -5, "");
  const auto x = std::get<xlog_data>(parse_server_message(m));
  EXPECT_EQ(x.send_time_us, -5);
  EXPECT_TRUE(x.payload.empty());
}

TEST(relay_copy_protocol, parses_keepalive) {
  const auto a = std::get<primary_keepalive>(parse_server_message(keepalive(0xDEADBEEF'CAFEF00D, 42, true)));
  EXPECT_EQ(a.wal_end, 0xDEADBEEF'CAFEF00DU);
  EXPECT_EQ(a.send_time_us, 42);
  EXPECT_TRUE(a.reply_requested);
  const auto b = std::get<primary_keepalive>(parse_server_message(keepalive(7, 0, false)));
  EXPECT_EQ(b.wal_end, 7U);
  EXPECT_FALSE(b.reply_requested);
}

TEST(relay_copy_protocol, short_messages_throw_replication_errors) {
  const std::string w = xlog(1, 2, 3, "");
  const std::string k = keepalive(1, 2, false);
  for (const std::string& full : {w, k}) {
    for (std::size_t n = 0; n < full.size(); ++n) {
      try {
        static_cast<void>(parse_server_message(std::string_view(full).substr(0, n)));
        ADD_FAILURE() << "prefix of " << n << " bytes of '" << full[0] << "' parsed";
      } catch (const outbox_error& e) {
        EXPECT_EQ(e.value().category, "replication");
      }
    }
  }
}

TEST(relay_copy_protocol, unknown_type_throws) {
  for (const auto& m : {std::string("r") + std::string(40, '\0'), std::string("x"), std::string(1, '\0')}) {
    try {
      static_cast<void>(parse_server_message(m));
      ADD_FAILURE() << "parsed type " << static_cast<int>(m[0]);
    } catch (const outbox_error& e) {
      EXPECT_EQ(e.value().category, "replication");
      EXPECT_NE(std::string(e.what()).find("unknown"), std::string::npos) << e.what();
    }
  }
}

TEST(relay_copy_protocol, standby_status_update_layout) {
  const std::string m =
      make_standby_status_update(0x01020304'05060708, 0x11121314'15161718, 0x21222324'25262728, -2, true);
  ASSERT_EQ(m.size(), 34U);
  EXPECT_EQ(m[0], 'r');
  const unsigned char expected_written[] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (std::size_t i = 0; i < 8; ++i) EXPECT_EQ(static_cast<unsigned char>(m[1 + i]), expected_written[i]) << i;
  EXPECT_EQ(get64(m, 1), 0x01020304'05060708U);
  EXPECT_EQ(get64(m, 9), 0x11121314'15161718U);
  EXPECT_EQ(get64(m, 17), 0x21222324'25262728U);
  EXPECT_EQ(static_cast<std::int64_t>(get64(m, 25)), -2);
  for (std::size_t i = 25; i < 32; ++i) EXPECT_EQ(static_cast<unsigned char>(m[i]), 0xFFU) << i;
  EXPECT_EQ(static_cast<unsigned char>(m[32]), 0xFEU);
  EXPECT_EQ(m[33], '\1');
  EXPECT_EQ(make_standby_status_update(0, 0, 0, 0, false), std::string("r") + std::string(33, '\0'));
}

TEST(relay_copy_protocol, pg_epoch_is_2000_01_01_utc) {
  using namespace std::chrono;
  const sys_days y2k = year{2000} / January / 1;
  EXPECT_EQ(to_pg_epoch_us(y2k), 0);
  EXPECT_EQ(to_pg_epoch_us(sys_days{year{1970} / January / 1}), -946'684'800'000'000);
  EXPECT_EQ(to_pg_epoch_us(y2k + days{1} + microseconds{3}), 86'400'000'003);
  EXPECT_EQ(from_pg_epoch_us(0), system_clock::time_point(y2k));
  const auto now = time_point_cast<microseconds>(system_clock::now());
  EXPECT_EQ(from_pg_epoch_us(to_pg_epoch_us(now)), now);
}

TEST(relay_copy_protocol, pg_epoch_extremes_saturate_instead_of_overflowing) {
  EXPECT_EQ(from_pg_epoch_us(std::numeric_limits<std::int64_t>::max()), std::chrono::system_clock::time_point::max());
  EXPECT_EQ(from_pg_epoch_us(std::numeric_limits<std::int64_t>::min()), std::chrono::system_clock::time_point::min());
}

}  // namespace
}  // namespace outbox::relay
