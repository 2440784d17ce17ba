// The publisher against librdkafka's mock cluster: what produce() says when the producer, not the record, is at fault.
#include "outbox/relay/publisher.hpp"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace outbox::relay {
namespace {

using namespace std::chrono_literals;

config::sink_config mock_sink(std::chrono::milliseconds transaction_timeout) {
  config::sink_config sink;
  sink.brokers = "127.0.0.1:1";  // replaced by the mock cluster's own brokers
  sink.transaction_timeout = transaction_timeout;
  sink.properties["test.mock.num.brokers"] = "1";
  return sink;
}

TEST(publisher, a_transaction_that_failed_before_its_reports_were_served_is_the_producers_fault_not_the_records) {
  std::vector<rd_kafka_resp_err_t> reported;
  publisher pub(
      mock_sink(3000ms), 1000, [&](const delivery& d) { reported.push_back(d.err); },
      [](rd_kafka_resp_err_t, const std::string&) {}, "tid-publisher-test");
  rd_kafka_mock_cluster_t* cluster = rd_kafka_handle_mock_cluster(pub.handle());
  ASSERT_NE(cluster, nullptr);
  ASSERT_EQ(rd_kafka_mock_topic_create(cluster, "t", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_TRUE(pub.init_transactions(30s).ok());
  ASSERT_TRUE(pub.begin_transaction().ok());

  const std::vector<header_view> no_headers;
  const record_view rec{"t", "k", std::string_view("{}"), no_headers};
  std::string why;
  ASSERT_EQ(pub.produce(rec, 1, 0, 0, &why), produce_result::queued) << why;
  pub.flush(10s);
  ASSERT_EQ(reported.size(), 1U);
  EXPECT_EQ(reported[0], RD_KAFKA_RESP_ERR_NO_ERROR);

  // The broker goes away; the next record times out within the transaction timeout, which moves the transaction
  // to AbortableError on librdkafka's thread. Its delivery report is not served yet (no poll()).
  ASSERT_EQ(rd_kafka_mock_broker_set_down(cluster, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(pub.produce(rec, 2, 0, 0, &why), produce_result::queued) << why;
  produce_result r = produce_result::queued;
  rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  std::uint64_t id = 3;
  while (std::chrono::steady_clock::now() < deadline) {
    // Each queued record is one more for the aborted transaction; the loop ends at the first refusal.
    r = pub.produce(rec, id++, 0, 0, &why, &code);
    if (r != produce_result::queued) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(r, produce_result::producer_failed) << why;
  EXPECT_EQ(code, RD_KAFKA_RESP_ERR__STATE);
  EXPECT_NE(why.find("AbortableError"), std::string::npos) << why;
  EXPECT_FALSE(pub.fatal_error().has_value());
  pub.purge();
}

TEST(publisher, a_record_too_large_for_the_producer_is_refused_as_the_records_fault) {
  publisher pub(
      mock_sink(3000ms), 1000, [](const delivery&) {}, [](rd_kafka_resp_err_t, const std::string&) {});
  rd_kafka_mock_cluster_t* cluster = rd_kafka_handle_mock_cluster(pub.handle());
  ASSERT_NE(cluster, nullptr);
  ASSERT_EQ(rd_kafka_mock_topic_create(cluster, "t", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
  const std::string big(2'000'000, 'x');
  const std::vector<header_view> no_headers;
  const record_view rec{"t", "k", std::string_view(big), no_headers};
  std::string why;
  rd_kafka_resp_err_t code = RD_KAFKA_RESP_ERR_NO_ERROR;
  EXPECT_EQ(pub.produce(rec, 1, 0, 0, &why, &code), produce_result::refused);
  EXPECT_EQ(code, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  EXPECT_NE(why.find("message.max.bytes"), std::string::npos) << why;
}

/// The producer setting `name` as librdkafka holds it.
std::string producer_setting(const publisher& pub, const char* name) {
  char value[512];
  std::size_t size = sizeof(value);
  if (rd_kafka_conf_get(rd_kafka_conf(pub.handle()), name, value, &size) != RD_KAFKA_CONF_OK) return "<unknown>";
  return value;
}

TEST(publisher, the_producer_lingers_2_ms_by_default_and_sink_properties_can_change_it) {
  {
    publisher pub(
        mock_sink(3000ms), 1000, [](const delivery&) {}, [](rd_kafka_resp_err_t, const std::string&) {});
    EXPECT_EQ(producer_setting(pub, "linger.ms"), "2");
    // The safety settings the guarantees rest on, beside it.
    EXPECT_EQ(producer_setting(pub, "enable.idempotence"), "true");
    EXPECT_EQ(producer_setting(pub, "acks"), "-1");
    EXPECT_EQ(producer_setting(pub, "compression.type"), "lz4");
  }
  config::sink_config sink = mock_sink(3000ms);
  sink.properties["linger.ms"] = "5";
  publisher pub(
      sink, 1000, [](const delivery&) {}, [](rd_kafka_resp_err_t, const std::string&) {});
  EXPECT_EQ(producer_setting(pub, "linger.ms"), "5");
}

}  // namespace
}  // namespace outbox::relay
