// The consumer SDK over SASL_SSL, configured only through consumer_options::properties, the way a
// service reaches a secured cluster.
#include "outbox/consumer/consumer.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/tls.hpp"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <exception>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

namespace outbox::consumer {
namespace {

using namespace std::chrono_literals;

/// Produces `count` records with an `event_id` header each over the PLAINTEXT listener.
void produce(const std::string& topic, int count) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", test::require_services().kafka_brokers.c_str(), err, sizeof err) !=
      RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(err);
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(err);
  }
  for (int i = 0; i < count; ++i) {
    const std::string key = "k" + std::to_string(i % 5);
    const std::string value = R"({"n": )" + std::to_string(i) + "}";
    const std::string id = "tls-event-" + std::to_string(i);
    rd_kafka_headers_t* headers = rd_kafka_headers_new(1);
    rd_kafka_header_add(headers, "event_id", -1, id.data(), static_cast<ssize_t>(id.size()));
    rd_kafka_vu_t vus[5];
    vus[0].vtype = RD_KAFKA_VTYPE_TOPIC;
    vus[0].u.cstr = topic.c_str();
    vus[1].vtype = RD_KAFKA_VTYPE_KEY;
    vus[1].u.mem = {const_cast<char*>(key.data()), key.size()};
    vus[2].vtype = RD_KAFKA_VTYPE_VALUE;
    vus[2].u.mem = {const_cast<char*>(value.data()), value.size()};
    vus[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vus[3].u.i = RD_KAFKA_MSG_F_COPY;
    vus[4].vtype = RD_KAFKA_VTYPE_HEADERS;
    vus[4].u.headers = headers;
    rd_kafka_error_t* error = rd_kafka_produceva(rk, vus, 5);
    const auto e = error != nullptr ? rd_kafka_error_code(error) : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (error != nullptr) {
      rd_kafka_headers_destroy(headers);
      rd_kafka_error_destroy(error);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_destroy(rk);
      throw std::runtime_error(std::string("produce: ") + rd_kafka_err2str(e));
    }
  }
  const auto flushed = rd_kafka_flush(rk, 30000);
  rd_kafka_destroy(rk);
  if (flushed != RD_KAFKA_RESP_ERR_NO_ERROR) throw std::runtime_error("produce: not flushed within 30 s");
}

/// Consumes `topic` over SASL_SSL with `mechanism` until `count` distinct events arrived or `timeout`.
std::map<std::string, int> consume_over_sasl(const std::string& topic, const std::string& mechanism, std::size_t count,
                                             std::chrono::milliseconds timeout) {
  const auto& tls = test::require_tls_services();
  consumer_options o;
  o.brokers = tls.sasl_brokers;
  o.group_id = test::unique_name("tls_group");
  o.topics = {topic};
  o.commit_interval = 200ms;
  o.stop_timeout = 20s;
  o.properties = {{"security.protocol", "SASL_SSL"}, {"sasl.mechanism", mechanism},
                  {"sasl.username", tls.sasl_user},  {"sasl.password", tls.sasl_password},
                  {"ssl.ca.location", tls.ca},       {"auto.offset.reset", "earliest"}};
  std::mutex mutex;
  std::map<std::string, int> seen;
  consumer c(std::move(o), [&](const record& r) {
    std::lock_guard lock(mutex);
    ++seen[std::string(r.event_id())];
    return outcome::done();
  });
  std::exception_ptr failure;
  std::thread runner([&] {
    try {
      c.run();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  test::wait_until(
      [&] {
        std::lock_guard lock(mutex);
        return seen.size() >= count;
      },
      timeout, 100ms);
  c.stop();
  runner.join();
  if (failure) std::rethrow_exception(failure);
  return seen;
}

TEST(consumer_over_tls, consumes_every_record_over_sasl_ssl_plain) {
  const std::string topic = test::unique_name("tls_consume");
  test::kafka_create_topic(topic, 3);
  produce(topic, 200);
  const auto seen = consume_over_sasl(topic, "PLAIN", 200, 60s);
  ASSERT_EQ(seen.size(), 200U);
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id << " handled " << n << " times";
}

TEST(consumer_over_tls, consumes_every_record_over_sasl_ssl_scram_sha_512) {
  const std::string topic = test::unique_name("tls_scram");
  test::kafka_create_topic(topic, 3);
  produce(topic, 50);
  const auto seen = consume_over_sasl(topic, "SCRAM-SHA-512", 50, 30s);
  if (seen.empty() && test::librdkafka_scram_broken_with_kafka4()) {
    GTEST_SKIP() << "KNOWN FAILURE: librdkafka " << rd_kafka_version_str()
                 << " (below 2.6.1) cannot authenticate with SCRAM against this Kafka 4 broker (\"invalid credentials "
                    "with SASL mechanism SCRAM-SHA-512\"); PLAIN over SASL_SSL is tested above";
  }
  ASSERT_EQ(seen.size(), 50U);
  for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id << " handled " << n << " times";
}

}  // namespace
}  // namespace outbox::consumer
