// The shared librdkafka layer: configuration errors name the key, one log mapping, one produce call whose
// headers (null ones too) come back in order, and the error classification.
#include "outbox/base/error.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/kafka/errors.hpp"
#include "outbox/kafka/produce.hpp"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka_mock.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace outbox::kafka {
namespace {

TEST(kafka_conf_builder, a_refused_setting_names_the_config_key_it_came_from) {
  conf_builder b;
  try {
    b.set("linger.ms", "not-a-number", "sink.properties.");
    FAIL() << "expected outbox_error";
  } catch (const outbox_error& e) {
    EXPECT_EQ(e.value().category, "config");
    EXPECT_NE(std::string(e.what()).find("sink.properties.linger.ms"), std::string::npos) << e.what();
  }
  EXPECT_THROW(b.set("no.such.property", "1", "sink.properties."), outbox_error);
}

TEST(kafka_conf_builder, set_all_applies_only_what_keep_accepts) {
  conf_builder b;
  b.set_all({{"group.id", "g"}, {"linger.ms", "7"}}, "consumer.properties.",
            [](std::string_view k) { return !consumer_only_property(k); });
  char value[64];
  std::size_t size = sizeof value;
  ASSERT_EQ(rd_kafka_conf_get(b.get(), "linger.ms", value, &size), RD_KAFKA_CONF_OK);
  EXPECT_STREQ(value, "7");
  size = sizeof value;
  EXPECT_NE(rd_kafka_conf_get(b.get(), "group.id", value, &size), RD_KAFKA_CONF_OK)
      << "group.id is consumer-only and was left out";
}

TEST(kafka_conf_builder, consumer_only_properties_are_recognised) {
  for (const char* k : {"group.id", "auto.offset.reset", "enable.auto.commit", "fetch.max.bytes", "isolation.level",
                        "partition.assignment.strategy", "max.poll.interval.ms", "session.timeout.ms"}) {
    EXPECT_TRUE(consumer_only_property(k)) << k;
  }
  for (const char* k : {"security.protocol", "ssl.ca.location", "sasl.mechanism", "linger.ms", "client.id"}) {
    EXPECT_FALSE(consumer_only_property(k)) << k;
  }
}

TEST(kafka_log_levels, one_mapping_for_every_client) {
  EXPECT_EQ(level_of(0), log::level::error);
  EXPECT_EQ(level_of(2), log::level::error);
  EXPECT_EQ(level_of(3), log::level::warn);  // librdkafka's transient "Connect ... failed"
  EXPECT_EQ(level_of(4), log::level::warn);
  EXPECT_EQ(level_of(5), log::level::info);
  EXPECT_EQ(level_of(6), log::level::info);
  EXPECT_EQ(level_of(7), log::level::debug);
}

TEST(kafka_errors, classified_once) {
  EXPECT_EQ(classify(RD_KAFKA_RESP_ERR__TRANSPORT), retry_class::retryable);
  EXPECT_EQ(classify(RD_KAFKA_RESP_ERR__QUEUE_FULL), retry_class::retryable);
  EXPECT_EQ(classify(RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC), retry_class::retryable);
  EXPECT_EQ(classify(RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS), retry_class::retryable);
  EXPECT_EQ(classify(RD_KAFKA_RESP_ERR__MSG_TIMED_OUT), retry_class::in_doubt);
  EXPECT_EQ(classify(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), retry_class::fatal);
  EXPECT_EQ(classify(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED), retry_class::fatal);
  EXPECT_EQ(classify(RD_KAFKA_RESP_ERR__FENCED), retry_class::fatal);
  EXPECT_TRUE(record_refused(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
  EXPECT_TRUE(record_refused(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED));
  EXPECT_FALSE(record_refused(RD_KAFKA_RESP_ERR__TRANSPORT));
}

struct delivered {
  int count = 0;
  rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR_NO_ERROR;
};

TEST(kafka_produce, a_record_with_headers_comes_back_the_same_through_the_mock_cluster) {
  conf_builder pb;
  pb.set("test.mock.num.brokers", "1").log_lines(true);
  delivered d;
  rd_kafka_conf_set_dr_msg_cb(pb.get(), [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    auto* out = static_cast<delivered*>(m->_private);
    ++out->count;
    out->last = m->err;
  });
  const client_ptr producer = pb.create(RD_KAFKA_PRODUCER, "the test producer");
  const std::string bootstraps = rd_kafka_mock_cluster_bootstraps(rd_kafka_handle_mock_cluster(producer.get()));
  ASSERT_EQ(rd_kafka_mock_topic_create(rd_kafka_handle_mock_cluster(producer.get()), "t", 1, 1),
            RD_KAFKA_RESP_ERR_NO_ERROR);

  const std::vector<std::pair<std::string, std::optional<std::string>>> headers = {
      {"event_id", "e-1"}, {"empty", ""}, {"null", std::nullopt}, {"event_id", "again"}};
  headers_ptr h = make_headers(headers);
  outgoing r;
  r.topic = "t";
  r.partition = 0;
  r.key = "k";
  r.value = std::nullopt;  // a tombstone
  r.headers = h.get();
  r.opaque = &d;
  ASSERT_EQ(produce(producer.get(), r), nullptr);
  static_cast<void>(h.release());
  ASSERT_EQ(rd_kafka_flush(producer.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(d.count, 1);
  EXPECT_EQ(d.last, RD_KAFKA_RESP_ERR_NO_ERROR);

  conf_builder cb;
  cb.set("bootstrap.servers", bootstraps).set("group.id", "g").set("auto.offset.reset", "earliest").log_lines(true);
  const client_ptr consumer = cb.create(RD_KAFKA_CONSUMER, "the test consumer");
  auto parts = make_partition_list(1);
  rd_kafka_topic_partition_list_add(parts.get(), "t", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  ASSERT_EQ(rd_kafka_assign(consumer.get(), parts.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
  message_ptr m;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    m.reset(rd_kafka_consumer_poll(consumer.get(), 200));
    if (m && m->err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
  }
  ASSERT_TRUE(m && m->err == RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(key_of(m.get()), std::optional<std::string_view>("k"));
  EXPECT_FALSE(value_of(m.get()).has_value()) << "a null value stays a tombstone";
  EXPECT_GT(timestamp_of(m.get()), 0);
  std::vector<std::pair<std::string, std::optional<std::string>>> seen;
  for_each_header(m.get(), [&](std::string_view name, std::optional<std::string_view> value) {
    seen.emplace_back(std::string(name), value ? std::optional<std::string>(std::string(*value)) : std::nullopt);
  });
  EXPECT_EQ(seen, headers);
  m.reset();
  rd_kafka_consumer_close(consumer.get());
}

}  // namespace
}  // namespace outbox::kafka
