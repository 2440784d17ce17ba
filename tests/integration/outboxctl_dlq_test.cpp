// outboxctl dlq list / show / replay against real Kafka, with dead letters in our format, Spring Kafka's
// (binary partition/offset headers) and Kafka Connect's.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/process.hpp"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <cstdint>
#include <ctime>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using header_list = std::vector<std::pair<std::string, std::optional<std::string>>>;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string rfc3339(std::int64_t ms) {
  const std::time_t t = ms / 1000;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string big_endian(std::uint64_t v, int bytes) {
  std::string s(static_cast<std::size_t>(bytes), '\0');
  for (int i = bytes - 1; i >= 0; --i) {
    s[static_cast<std::size_t>(i)] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
  return s;
}

/// Writes dead letters exactly as given (partition, timestamp, headers), waiting for every delivery.
class dlq_writer {
 public:
  explicit dlq_writer(const std::string& brokers = require_services().kafka_brokers) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char err[512];
    rd_kafka_conf_set(conf, "bootstrap.servers", brokers.c_str(), err, sizeof err);
    rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err);
    m_producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (m_producer == nullptr) throw std::runtime_error(err);
  }
  ~dlq_writer() { rd_kafka_destroy(m_producer); }
  [[nodiscard]] rd_kafka_t* handle() const { return m_producer; }
  dlq_writer(const dlq_writer&) = delete;
  dlq_writer& operator=(const dlq_writer&) = delete;

  void write(const std::string& topic, int partition, const std::optional<std::string>& key,
             const std::optional<std::string>& value, const header_list& headers, std::int64_t timestamp_ms) {
    rd_kafka_headers_t* hdrs = rd_kafka_headers_new(headers.size());
    for (const auto& [name, v] : headers) {
      rd_kafka_header_add(hdrs, name.c_str(), -1, v ? v->data() : nullptr, v ? static_cast<ssize_t>(v->size()) : 0);
    }
    rd_kafka_vu_t vu[7];
    vu[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    vu[0].u.cstr = topic.c_str();
    vu[1].vtype = RD_KAFKA_VTYPE_PARTITION;
    vu[1].u.i32 = partition;
    vu[2].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[2].u.i = RD_KAFKA_MSG_F_COPY;
    vu[3].vtype = RD_KAFKA_VTYPE_KEY;
    vu[3].u.mem.ptr = key ? const_cast<char*>(key->data()) : nullptr;
    vu[3].u.mem.size = key ? key->size() : 0;
    vu[4].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[4].u.mem.ptr = value ? const_cast<char*>(value->data()) : nullptr;
    vu[4].u.mem.size = value ? value->size() : 0;
    vu[5].vtype = RD_KAFKA_VTYPE_HEADERS;
    vu[5].u.headers = hdrs;
    vu[6].vtype = RD_KAFKA_VTYPE_TIMESTAMP;
    vu[6].u.i64 = timestamp_ms;
    rd_kafka_error_t* e = rd_kafka_produceva(m_producer, vu, 7);
    if (e != nullptr) {
      const std::string why = rd_kafka_error_string(e);
      rd_kafka_error_destroy(e);
      rd_kafka_headers_destroy(hdrs);
      throw std::runtime_error("produce to " + topic + ": " + why);
    }
  }

  void flush() { ASSERT_EQ(rd_kafka_flush(m_producer, 30000), RD_KAFKA_RESP_ERR_NO_ERROR); }

 private:
  rd_kafka_t* m_producer = nullptr;
};

header_list our_headers(const std::string& original_topic, int partition, long offset, const std::string& error_class,
                        const std::string& message) {
  const auto t = std::to_string(now_ms() - 60'000);
  return {{"dlq_original_topic", original_topic},
          {"dlq_original_partition", std::to_string(partition)},
          {"dlq_original_offset", std::to_string(offset)},
          {"dlq_original_timestamp_ms", t},
          {"dlq_consumer_group", "ledger"},
          {"dlq_error_class", error_class},
          {"dlq_error_message", message},
          {"dlq_attempts", "5"},
          {"dlq_first_failure_ms", t},
          {"dlq_last_failure_ms", t}};
}

class outboxctl_dlq : public ::testing::Test {
 protected:
  void SetUp() override {
    m_brokers = require_services().kafka_brokers;
    m_orig = unique_name("payments");
    m_dlq = m_orig + ".dlq";
    m_other = unique_name("other");
    m_replay = m_orig + ".ledger.replay";  // the replay topic of group `ledger`, which our_headers names
    kafka_create_topic(m_orig, 3);
    kafka_create_topic(m_replay, 3);
    kafka_create_topic(m_dlq, 2);
    kafka_create_topic(m_other, 1);
  }

  /// Five dead letters: ours (old, then one replayed before), Spring's, Connect's, and one with no origin.
  void write_mixed() {
    dlq_writer w;
    const auto now = now_ms();
    auto a = header_list{{"event_id", "e1"}, {"trace", "t1"}};
    for (auto& h : our_headers(m_orig, 1, 10, "fatal", "amount is negative")) a.push_back(h);
    a.emplace_back("retry_attempt", "3");
    a.emplace_back("retry_original_topic", m_orig);
    w.write(m_dlq, 0, "k1", "v1", a, now - std::int64_t{3} * 3'600'000);  // partition 0 offset 0

    auto b = header_list{{"event_id", "e2"}, {"empty", std::nullopt}};
    for (auto& h : our_headers(m_orig, 0, 11, "retry_exhausted", "account a9 unknown")) b.push_back(h);
    b.emplace_back("dlq_replay_count", "1");
    w.write(m_dlq, 0, "k2", std::string("\xff\x00\x01", 3), b, now);  // partition 0 offset 1

    const header_list c = {{"app", "x"},
                           {"kafka_dlt-original-topic", m_orig},
                           {"kafka_dlt-original-partition", big_endian(2, 4)},
                           {"kafka_dlt-original-offset", big_endian(77, 8)},
                           {"kafka_dlt-original-timestamp", big_endian(static_cast<std::uint64_t>(now), 8)},
                           {"kafka_dlt-exception-fqcn", "java.lang.IllegalStateException"},
                           {"kafka_dlt-exception-message", "spring boom"}};
    w.write(m_dlq, 1, "k3", "v3", c, now);  // partition 1 offset 0

    const header_list d = {{"__connect.errors.topic", m_orig},
                           {"__connect.errors.partition", "0"},
                           {"__connect.errors.offset", "5"},
                           {"__connect.errors.exception.class.name", "org.apache.kafka.connect.errors.DataException"},
                           {"__connect.errors.exception.message", "connect bad json"},
                           {"source", "connector-1"}};
    w.write(m_dlq, 1, "k4", "v4", d, now);  // partition 1 offset 1

    w.write(m_dlq, 1, "k5", "v5", {{"x", "y"}}, now);  // partition 1 offset 2
    w.flush();
  }

  command_result ctl(std::vector<std::string> args, std::chrono::milliseconds timeout = 120s) const {
    args.insert(args.begin(), OUTBOX_OUTBOXCTL_BIN);
    return run_command(args, timeout);
  }

  command_result dlq(const std::string& sub, std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"dlq", sub, "--brokers", m_brokers, "--topic", m_dlq};
    args.insert(args.end(), extra.begin(), extra.end());
    return ctl(args);
  }

  nlohmann::json list_json(std::vector<std::string> extra = {}) const {
    extra.emplace_back("--json");
    const auto r = dlq("list", extra);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nlohmann::json::parse(r.output);
  }

  static std::set<std::string> keys_of(const nlohmann::json& records) {
    std::set<std::string> keys;
    for (const auto& r : records) keys.insert(r["key"].get<std::string>());
    return keys;
  }

  std::string m_brokers;
  std::string m_orig;
  std::string m_dlq;
  std::string m_other;
  std::string m_replay;
};

TEST_F(outboxctl_dlq, list_shows_every_format_as_a_table_and_as_json) {
  write_mixed();
  const auto table = dlq("list");
  ASSERT_EQ(table.exit_code, 0) << table.output;
  for (const auto* needle : {"PARTITION", "k1", "k2", "k3", "k4", "k5", "amount is negative", "retry_exhausted",
                             "java.lang.IllegalStateException", "connect bad json", "5 of 5 records"}) {
    EXPECT_NE(table.output.find(needle), std::string::npos) << needle << " missing in:\n" << table.output;
  }
  EXPECT_NE(table.output.find(m_orig + "[2]@77"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find(m_orig + "[1]@10"), std::string::npos) << table.output;

  const auto j = list_json();
  ASSERT_EQ(j.size(), 5U) << j.dump(2);
  std::map<std::string, nlohmann::json> by_key;
  for (const auto& r : j) by_key[r["key"].get<std::string>()] = r;
  EXPECT_EQ(by_key["k1"]["format"], "outbox");
  EXPECT_EQ(by_key["k1"]["original_topic"], m_orig);
  EXPECT_EQ(by_key["k1"]["original_partition"], 1);
  EXPECT_EQ(by_key["k1"]["error_class"], "fatal");
  EXPECT_EQ(by_key["k1"]["attempts"], 5);
  EXPECT_EQ(by_key["k1"]["value"], "v1");
  EXPECT_EQ(by_key["k1"]["headers"][0]["name"], "event_id");
  EXPECT_EQ(by_key["k2"]["value_base64"], true);
  EXPECT_EQ(by_key["k2"]["value"], "/wAB");
  EXPECT_EQ(by_key["k2"]["replay_count"], 1);
  EXPECT_TRUE(by_key["k2"]["headers"][1]["value"].is_null());
  EXPECT_EQ(by_key["k3"]["format"], "spring");
  EXPECT_EQ(by_key["k3"]["original_partition"], 2);
  EXPECT_EQ(by_key["k3"]["original_offset"], 77);
  EXPECT_EQ(by_key["k3"]["error_message"], "spring boom");
  EXPECT_EQ(by_key["k4"]["format"], "connect");
  EXPECT_EQ(by_key["k4"]["original_offset"], 5);
  EXPECT_EQ(by_key["k5"]["format"], "unknown");
  EXPECT_TRUE(by_key["k5"]["original_topic"].is_null());
}

TEST_F(outboxctl_dlq, list_filters_by_key_error_text_and_time) {
  write_mixed();
  EXPECT_EQ(keys_of(list_json({"--key", "k3"})), std::set<std::string>{"k3"});
  EXPECT_EQ(keys_of(list_json({"--key", "nope"})), std::set<std::string>{});
  EXPECT_EQ(keys_of(list_json({"--error-contains", "negative"})), std::set<std::string>{"k1"});
  EXPECT_EQ(keys_of(list_json({"--error-contains", "spring boom"})), std::set<std::string>{"k3"});
  EXPECT_EQ(keys_of(list_json({"--error-contains", "bad json"})), std::set<std::string>{"k4"});
  EXPECT_EQ(keys_of(list_json({"--since", "1h"})), (std::set<std::string>{"k2", "k3", "k4", "k5"}));
  EXPECT_EQ(keys_of(list_json({"--until", "2h"})), std::set<std::string>{"k1"});
  EXPECT_EQ(keys_of(list_json({"--since", rfc3339(now_ms() - 3'600'000)})),
            (std::set<std::string>{"k2", "k3", "k4", "k5"}));
  EXPECT_EQ(keys_of(list_json({"--since", "4h", "--until", rfc3339(now_ms() - 7'200'000)})),
            std::set<std::string>{"k1"});
  EXPECT_EQ(keys_of(list_json({"--since", "1h", "--error-contains", "unknown"})), std::set<std::string>{"k2"});
  // RFC 3339 with a zone offset and a fraction: one hour ago, written in UTC+02:00.
  const std::int64_t hour_ago = now_ms() - 3'600'000;
  const std::string in_plus_two = rfc3339(hour_ago + 7'200'000);
  const std::string with_offset = in_plus_two.substr(0, in_plus_two.size() - 1) + ".250+02:00";
  EXPECT_EQ(keys_of(list_json({"--since", with_offset})), (std::set<std::string>{"k2", "k3", "k4", "k5"}));
  EXPECT_EQ(keys_of(list_json({"--until=" + with_offset})), std::set<std::string>{"k1"});
}

TEST_F(outboxctl_dlq, show_prints_one_record_fully) {
  write_mixed();
  const auto ours = dlq("show", {"--partition", "0", "--offset", "0"});
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  for (const auto* needle : {"event_id: e1", "trace: t1", "dlq_error_message: amount is negative", "key:            k1",
                             "retry_attempt: 3", "value (2 bytes):\nv1"}) {
    EXPECT_NE(ours.output.find(needle), std::string::npos) << needle << " missing in:\n" << ours.output;
  }
  const auto spring = dlq("show", {"--partition", "1", "--offset", "0"});
  ASSERT_EQ(spring.exit_code, 0) << spring.output;
  EXPECT_NE(spring.output.find("kafka_dlt-original-offset: 77 (8-byte big-endian)"), std::string::npos)
      << spring.output;
  EXPECT_NE(spring.output.find("kafka_dlt-original-partition: 2 (4-byte big-endian)"), std::string::npos)
      << spring.output;
  const auto missing = dlq("show", {"--partition", "0", "--offset", "99"});
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("no record at"), std::string::npos) << missing.output;
}

TEST_F(outboxctl_dlq, replay_sends_ours_to_the_failing_groups_replay_topic_and_others_to_their_original_topic) {
  write_mixed();
  const auto r = dlq("replay");
  EXPECT_EQ(r.exit_code, 1) << "a record was skipped: " << r.output;
  EXPECT_NE(r.output.find("selected 5, replayed 4, skipped 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("skipped partition 1 offset 2: no original topic"), std::string::npos) << r.output;

  using hv = std::vector<std::pair<std::string, std::string>>;
  // Ours name their group: only that group reads its replay topic, and learns there where the record came from.
  const auto ours = kafka_consume(m_replay, 2, 30s);
  ASSERT_EQ(ours.size(), 2U);
  std::map<std::string, consumed_record> by_key;
  for (const auto& c : ours) by_key[c.key.value_or("")] = c;
  EXPECT_EQ(by_key["k1"].value, "v1");
  EXPECT_EQ(by_key["k1"].partition, 1) << "the original partition";
  const auto t1 = by_key["k1"].header("retry_original_timestamp_ms").value_or("?");
  EXPECT_EQ(by_key["k1"].headers, (hv{{"event_id", "e1"},
                                      {"trace", "t1"},
                                      {"dlq_replay_count", "1"},
                                      {"retry_original_topic", m_orig},
                                      {"retry_original_partition", "1"},
                                      {"retry_original_offset", "10"},
                                      {"retry_original_timestamp_ms", t1},
                                      {"retry_consumer_group", "ledger"}}));
  EXPECT_EQ(by_key["k2"].value, std::string("\xff\x00\x01", 3));
  EXPECT_EQ(by_key["k2"].partition, 0);
  EXPECT_EQ(by_key["k2"].header("dlq_replay_count"), "2");
  EXPECT_EQ(by_key["k2"].header("retry_original_offset"), "11");
  EXPECT_EQ(by_key["k2"].headers[1], (std::pair<std::string, std::string>{"empty", ""}));

  // Spring's and Connect's go to their original topic, as before.
  const auto got = kafka_consume(m_orig, 2, 30s);
  ASSERT_EQ(got.size(), 2U);
  by_key.clear();
  for (const auto& c : got) by_key[c.key.value_or("")] = c;
  EXPECT_EQ(by_key["k3"].value, "v3");
  EXPECT_EQ(by_key["k3"].partition, 2);
  EXPECT_EQ(by_key["k3"].headers, (hv{{"app", "x"}, {"dlq_replay_count", "1"}}));
  EXPECT_EQ(by_key["k4"].value, "v4");
  EXPECT_EQ(by_key["k4"].partition, 0);
  EXPECT_EQ(by_key["k4"].headers, (hv{{"source", "connector-1"}, {"dlq_replay_count", "1"}}));

  // A second run replays again (each run counts on its own); nothing is sent twice within a run.
  const auto again = dlq("replay");
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_TRUE(wait_until([&] { return kafka_record_count(m_orig) >= 4 && kafka_record_count(m_replay) >= 4; }, 30s));
  EXPECT_EQ(kafka_record_count(m_orig), 4);
  EXPECT_EQ(kafka_record_count(m_replay), 4);
}

TEST_F(outboxctl_dlq, replay_sends_one_copy_per_event_the_newest_unless_all_copies) {
  {
    dlq_writer w;
    const auto now = now_ms();
    for (int copy = 0; copy < 3; ++copy) {  // e7 failed, was replayed, failed again twice
      auto h = header_list{{"event_id", "e7"}, {"copy", std::to_string(copy)}};
      for (auto& x : our_headers(m_orig, 0, 7, "retry_exhausted", "still unknown")) h.push_back(x);
      w.write(m_dlq, copy % 2, "k7", "v7", h, now - 10'000 + copy * 1000);
    }
    auto other = header_list{{"event_id", "e8"}};
    for (auto& x : our_headers(m_orig, 0, 8, "fatal", "boom")) other.push_back(x);
    w.write(m_dlq, 1, "k8", "v8", other, now);
    w.flush();
  }
  const auto r = dlq("replay");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("selected 2, replayed 2, skipped 0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("not replayed: 2 older dead letter(s)"), std::string::npos) << r.output;
  const auto got = kafka_consume(m_replay, 2, 30s);
  ASSERT_EQ(got.size(), 2U);
  for (const auto& c : got) {
    if (c.key == "k7") {
      EXPECT_EQ(c.header("copy"), "2") << "the newest dead letter of the event";
    }
  }
  const auto all = dlq("replay", {"--all-copies", "--event-id", "e7"});
  ASSERT_EQ(all.exit_code, 0) << all.output;
  EXPECT_NE(all.output.find("selected 3, replayed 3, skipped 0"), std::string::npos) << all.output;
  EXPECT_TRUE(wait_until([&] { return kafka_record_count(m_replay) >= 5; }, 30s));
  EXPECT_EQ(kafka_record_count(m_replay), 5);
}

TEST_F(outboxctl_dlq, replay_refuses_events_older_than_the_dedupe_retention_unless_forced) {
  {
    dlq_writer w;
    auto h = header_list{{"event_id", "old"}};
    for (auto& x : our_headers(m_orig, 0, 1, "fatal", "boom")) {
      if (x.first == "dlq_original_timestamp_ms") x.second = std::to_string(now_ms() - std::int64_t{10} * 86'400'000);
      h.push_back(x);
    }
    w.write(m_dlq, 0, "k-old", "v", h, now_ms());
    w.flush();
  }
  const auto refused = dlq("replay");
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_NE(refused.output.find("first arrived 10d ago, longer than --dedupe-retention 7d"), std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find("--force"), std::string::npos) << refused.output;
  EXPECT_EQ(kafka_record_count(m_replay), 0);
  const auto longer = dlq("replay", {"--dedupe-retention", "30d", "--dry-run"});
  EXPECT_EQ(longer.exit_code, 0) << longer.output;
  EXPECT_NE(longer.output.find("would replay 1"), std::string::npos) << longer.output;
  const auto forced = dlq("replay", {"--force"});
  EXPECT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_EQ(kafka_consume(m_replay, 1, 30s).size(), 1U);
}

TEST_F(outboxctl_dlq, list_and_replay_select_one_record_by_partition_and_offset_or_by_event_id) {
  write_mixed();
  EXPECT_EQ(keys_of(list_json({"--partition", "1", "--offset", "1"})), std::set<std::string>{"k4"});
  EXPECT_EQ(keys_of(list_json({"--partition", "0"})), (std::set<std::string>{"k1", "k2"}));
  EXPECT_EQ(keys_of(list_json({"--event-id", "e2"})), std::set<std::string>{"k2"});
  const auto one = dlq("replay", {"--partition", "0", "--offset", "1"});
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_NE(one.output.find("selected 1, replayed 1, skipped 0"), std::string::npos) << one.output;
  const auto got = kafka_consume(m_replay, 1, 30s);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].key, "k2");
  const auto bad = dlq("list", {"--offset", "1"});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--offset needs --partition"), std::string::npos) << bad.output;
}

TEST_F(outboxctl_dlq, librdkafka_properties_reach_the_clients_and_secrets_are_never_printed) {
  write_mixed();
  // Plain settings from a file and a flag: the commands work as before.
  const std::string file = scratch_dir("outboxctl_props") + "/kafka.properties";
  {
    std::ofstream out(file);
    out << "# a comment\n\nclient.id = outboxctl-test\nsocket.keepalive.enable=true\n";
  }
  const auto listed = dlq("list", {"--kafka-config", file, "--property", "client.id=from-flag", "--json"});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  // A SASL client against this plaintext broker: it cannot connect, and the password stays out of the output.
  const auto sasl = dlq("list", {"--property", "security.protocol=SASL_PLAINTEXT", "--property", "sasl.mechanism=PLAIN",
                                 "--property", "sasl.username=ops", "--property", "sasl.password=hunter2"});
  EXPECT_EQ(sasl.exit_code, 1) << sasl.output;
  EXPECT_EQ(sasl.output.find("hunter2"), std::string::npos) << sasl.output;
  // A setting librdkafka refuses is a usage error naming it.
  const auto bad = dlq("list", {"--property", "security.protocol=carrier-pigeon"});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--property security.protocol"), std::string::npos) << bad.output;
  {
    std::ofstream out(file);
    out << "client.id=x\nthis line has no equals sign\n";
  }
  const auto bad_file = dlq("list", {"--kafka-config", file});
  EXPECT_EQ(bad_file.exit_code, 2) << bad_file.output;
  EXPECT_NE(bad_file.output.find(file + ":2"), std::string::npos) << bad_file.output;
}

TEST_F(outboxctl_dlq, dry_run_produces_nothing) {
  write_mixed();
  const auto r = dlq("replay", {"--dry-run"});
  EXPECT_EQ(r.exit_code, 1) << "one record would be skipped: " << r.output;
  EXPECT_NE(r.output.find("would replay partition 0 offset 0 -> " + m_replay + "[1]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("would replay partition 1 offset 0 -> " + m_orig + "[2]"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("dry run: selected 5, would replay 4, skipped 1"), std::string::npos) << r.output;
  EXPECT_EQ(kafka_record_count(m_orig), 0);
  EXPECT_EQ(kafka_record_count(m_replay), 0);
}

TEST_F(outboxctl_dlq, to_overrides_the_topic_and_limit_stops_early) {
  write_mixed();
  const auto limited = dlq("replay", {"--to", m_other, "--limit", "2"});
  ASSERT_EQ(limited.exit_code, 0) << limited.output;
  EXPECT_NE(limited.output.find("stopped at --limit 2"), std::string::npos) << limited.output;
  EXPECT_EQ(kafka_consume(m_other, 2, 30s).size(), 2U);
  EXPECT_EQ(kafka_record_count(m_other), 2);
  EXPECT_EQ(kafka_record_count(m_orig), 0);

  // --to also lets a record with no recognisable origin be replayed.
  const auto unknown = dlq("replay", {"--to", m_other, "--key", "k5"});
  ASSERT_EQ(unknown.exit_code, 0) << unknown.output;
  EXPECT_NE(unknown.output.find("selected 1, replayed 1, skipped 0"), std::string::npos) << unknown.output;
  const auto got = kafka_consume_until(
      m_other, [](const std::vector<consumed_record>& r) { return r.size() >= 3; }, 30s);
  ASSERT_EQ(got.size(), 3U);
  bool found = false;
  for (const auto& c : got) {
    if (c.key == "k5") {
      found = true;
      EXPECT_EQ(c.headers, (std::vector<std::pair<std::string, std::string>>{{"x", "y"}, {"dlq_replay_count", "1"}}));
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(outboxctl_dlq, rate_limits_the_replay_and_sends_each_record_once) {
  constexpr int k_records = 40;
  {
    dlq_writer w;
    for (int i = 0; i < k_records; ++i) {
      w.write(m_dlq, i % 2, "key-" + std::to_string(i), "value-" + std::to_string(i),
              our_headers(m_orig, i % 3, i, "fatal", "boom"), now_ms());
    }
    w.flush();
  }
  const auto start = std::chrono::steady_clock::now();
  const auto r = dlq("replay", {"--rate", "20/s"});
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::cout << "replayed " << k_records << " records at --rate 20/s in " << seconds << " s (" << k_records / seconds
            << " records/s)\n";
  EXPECT_GE(seconds, 1.5) << r.output;
  EXPECT_NE(r.output.find("selected 40, replayed 40, skipped 0"), std::string::npos) << r.output;

  const auto got = kafka_consume(m_replay, k_records, 30s);
  ASSERT_EQ(got.size(), static_cast<std::size_t>(k_records));
  std::set<std::string> keys;
  for (const auto& c : got) {
    keys.insert(c.key.value_or(""));
    EXPECT_EQ(c.partition, std::stoi(c.key->substr(4)) % 3);
  }
  EXPECT_EQ(keys.size(), static_cast<std::size_t>(k_records));
  EXPECT_EQ(kafka_record_count(m_replay), k_records);
}

TEST_F(outboxctl_dlq, bad_flags_exit_2_naming_the_flag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"dlq", "list", "--brokers", m_brokers, "--topic", m_dlq, "--frobnicate"}, "--frobnicate"},
      {{"dlq", "list", "--brokers", m_brokers, "--topic", m_dlq, "--key"}, "--key"},
      {{"dlq", "list", "--brokers", m_brokers}, "--topic"},
      {{"dlq", "list", "--topic", m_dlq}, "--brokers"},
      {{"dlq", "list", "--brokers", m_brokers, "--topic", m_dlq, "--since", "yesterday"}, "--since"},
      {{"dlq", "show", "--brokers", m_brokers, "--topic", m_dlq, "--partition", "0"}, "--offset"},
      {{"dlq", "show", "--brokers", m_brokers, "--topic", m_dlq, "--partition", "x", "--offset", "1"}, "--partition"},
      {{"dlq", "replay", "--brokers", m_brokers, "--topic", m_dlq, "--limit", "ten"}, "--limit"},
      {{"dlq", "replay", "--brokers", m_brokers, "--topic", m_dlq, "--rate", "50"}, "--rate"},
      {{"dlq", "replay", "--brokers", m_brokers, "--topic", m_dlq, "--rate", "fast/s"}, "--rate"},
      {{"dlq", "replay", "--brokers", m_brokers, "--topic", m_dlq, "--json"}, "--json"},
      {{"dlq", "list", "--brokers", m_brokers, "--topic", m_dlq, "--since", "9999999999999d"}, "--since"},
      {{"dlq", "replay", "--brokers", m_brokers, "--topic", m_dlq, "--rate", "0.001/s"}, "--rate"},
      {{"dlq", "replay", "--brokers", m_brokers, "--topic", m_dlq, "--dedupe-retention", "soon"}, "--dedupe-retention"},
      {{"dlq", "list", "--brokers", m_brokers, "--topic", m_dlq, "--property", "novalue"}, "--property"},
      {{"dlq", "frobnicate"}, "frobnicate"},
  };
  for (const auto& [args, flag] : cases) {
    const auto r = ctl(args);
    EXPECT_EQ(r.exit_code, 2) << flag << ": " << r.output;
    EXPECT_NE(r.output.find(flag), std::string::npos) << r.output;
  }
}

TEST_F(outboxctl_dlq, unreachable_brokers_and_missing_topics_exit_1) {
  const auto start = std::chrono::steady_clock::now();
  const auto r = ctl({"dlq", "list", "--brokers", "127.0.0.1:1", "--topic", m_dlq}, 60s);
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_LT(seconds, 30.0);
  EXPECT_NE(r.output.find("127.0.0.1:1"), std::string::npos) << r.output;

  const auto missing = ctl({"dlq", "replay", "--brokers", m_brokers, "--topic", unique_name("absent") + ".dlq"});
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("does not exist"), std::string::npos) << missing.output;
}

// A failed delivery, forced with librdkafka's mock cluster (its brokers listen on real local ports, so the
// outboxctl process can reach them): exit 1 and the record is named.
TEST(outboxctl_dlq_mock, a_failed_delivery_exits_1_naming_the_record) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  rd_kafka_conf_set(conf, "bootstrap.servers", "", err, sizeof err);
  rd_kafka_t* owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NE(owner, nullptr) << err;
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(owner, 1);
  ASSERT_NE(cluster, nullptr);
  const std::string brokers = rd_kafka_mock_cluster_bootstraps(cluster);
  ASSERT_EQ(rd_kafka_mock_topic_create(cluster, "orders", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(rd_kafka_mock_topic_create(cluster, "orders.dlq", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(rd_kafka_mock_topic_create(cluster, "orders.ledger.replay", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  {
    dlq_writer w(brokers);
    w.write("orders.dlq", 0, "k1", "v1", our_headers("orders", 0, 3, "fatal", "boom"), now_ms());
    w.flush();
  }
  // Every produce request from now on is refused with a non-retriable error.
  for (int i = 0; i < 20; ++i) {
    rd_kafka_mock_push_request_errors(cluster, 0 /* Produce */, 1, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  }
  const auto r =
      run_command({OUTBOX_OUTBOXCTL_BIN, "dlq", "replay", "--brokers", brokers, "--topic", "orders.dlq"}, 120s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("delivery failed: partition 0 offset 0 -> orders.ledger.replay"), std::string::npos)
      << r.output;
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(owner);
}

}  // namespace
}  // namespace outbox::test
