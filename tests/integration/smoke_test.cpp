// The services the project starts do what the relay relies on: a pgoutput slot streams an
// INSERT over the replication protocol, and Kafka returns a record with its key, value and headers.
#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include <poll.h>

#include <chrono>
#include <memory>
#include <string>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;

struct pg_conn_deleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};

TEST(smoke, pgoutput_slot_streams_an_insert) {
  const auto table = unique_name("smoke_outbox");
  const auto slot = unique_name("smoke_slot");
  const auto pub = unique_name("smoke_pub");
  pg_drop_slot(slot);
  pg_exec("DROP PUBLICATION IF EXISTS " + pub);
  pg_exec("DROP TABLE IF EXISTS " + table);
  pg_exec("CREATE TABLE " + table + " (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), payload jsonb)");
  pg_exec("CREATE PUBLICATION " + pub + " FOR TABLE " + table + " WITH (publish = 'insert')");
  pg_exec("SELECT pg_create_logical_replication_slot('" + slot + "', 'pgoutput')");
  pg_exec("INSERT INTO " + table + " (payload) VALUES ('{\"hello\": \"world\"}')");

  std::unique_ptr<PGconn, pg_conn_deleter> conn(
      PQconnectdb((require_services().pg_dsn + " replication=database").c_str()));
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  PGresult* res = PQexec(
      conn.get(),
      ("START_REPLICATION SLOT " + slot + " LOGICAL 0/0 (proto_version '1', publication_names '" + pub + "')").c_str());
  ASSERT_EQ(PQresultStatus(res), PGRES_COPY_BOTH) << PQerrorMessage(conn.get());
  PQclear(res);

  // XLogData ('w') carries pgoutput messages: expect Begin, Relation, Insert with our payload, Commit.
  std::string tags;
  bool saw_payload = false;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (tags.find('C') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    char* buf = nullptr;
    const int n = PQgetCopyData(conn.get(), &buf, 1);
    if (n == 0) {
      pollfd pfd{PQsocket(conn.get()), POLLIN, 0};
      ::poll(&pfd, 1, 200);
      ASSERT_EQ(PQconsumeInput(conn.get()), 1) << PQerrorMessage(conn.get());
      continue;
    }
    ASSERT_GT(n, 0) << PQerrorMessage(conn.get());
    const std::string msg(buf, static_cast<std::size_t>(n));
    PQfreemem(buf);
    if (msg[0] == 'w' && msg.size() > 25) {
      tags += msg[25];
      if (msg[25] == 'I') saw_payload = msg.find(R"({"hello": "world"})") != std::string::npos;
    }
  }
  EXPECT_EQ(tags, "BRIC");
  EXPECT_TRUE(saw_payload);
  conn.reset();
  pg_drop_slot(slot);
  pg_exec("DROP PUBLICATION " + pub);
  pg_exec("DROP TABLE " + table);
}

TEST(smoke, kafka_round_trip_keeps_key_value_and_headers) {
  const auto topic = unique_name("smoke_topic");
  kafka_create_topic(topic, 3);

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  ASSERT_EQ(rd_kafka_conf_set(conf, "bootstrap.servers", require_services().kafka_brokers.c_str(), err, sizeof err),
            RD_KAFKA_CONF_OK);
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  ASSERT_NE(producer, nullptr) << err;
  const std::string key = "order-42";
  const std::string value = R"({"amount_cents":1250})";
  const std::string event_id = "5b0f7d5e-4a43-4b77-a4a8-2c4d1d6f7a10";
  rd_kafka_headers_t* headers = rd_kafka_headers_new(2);
  rd_kafka_header_add(headers, "event_id", -1, event_id.data(), static_cast<ssize_t>(event_id.size()));
  rd_kafka_header_add(headers, "event_type", -1, "paid", 4);
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
  rd_kafka_error_t* produce_error = rd_kafka_produceva(producer, vus, 5);
  ASSERT_EQ(produce_error, nullptr) << rd_kafka_error_string(produce_error);
  ASSERT_EQ(rd_kafka_flush(producer, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(producer);

  const auto records = kafka_consume(topic, 1, 30s);
  ASSERT_EQ(records.size(), 1U);
  EXPECT_EQ(records[0].key, key);
  EXPECT_EQ(records[0].value, value);
  EXPECT_EQ(records[0].header("event_id"), event_id);
  EXPECT_EQ(records[0].header("event_type"), "paid");
}

}  // namespace
}  // namespace outbox::test
