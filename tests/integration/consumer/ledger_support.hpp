#pragma once
// What the payment-ledger tests share: a database schema, topic and group of their own, the ledger's config,
// the process, and queries on the outcome.

#include "outbox/test/process.hpp"
#include "test_producer.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace outbox::consumer_test {

/// One payment callback.
struct callback {
  std::string event_id;
  std::string account_id;
  std::int64_t amount_cents = 0;
};

/// The Kafka record of a callback: key = account, value = the JSON of SPEC §5, `event_id` header.
outgoing to_record(const std::string& topic, const callback& c);

/// A test with its own PostgreSQL schema (holding accounts and the inbox), topic and consumer group.
class ledger_fixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// Creates the test's topic.
  void create_topic(int partitions);
  /// Writes a ledger config; `properties` is a YAML flow map for consumer.properties; `retry_and_dlq` replaces
  /// the default `retry:` section (in-process retries only, every 50ms-500ms, up to 1000 attempts) and may add
  /// a `dlq:` section; `consumer_keys` are more lines of the `consumer:` section (e.g. `  workers: 4\n`); `sections`
  /// are more top-level sections (e.g. `inbox:`).
  std::string write_config(const std::string& properties = "{}", const std::string& name = "ledger.yaml",
                           const std::string& retry_and_dlq = "", const std::string& consumer_keys = "",
                           const std::string& sections = "") const;
  /// Starts payment-ledger on `config`; its output goes to `<dir>/<log_name>`.
  std::unique_ptr<test::child_process> start_ledger(const std::string& config, const std::string& log_name) const;
  /// Inserts accounts with a zero balance.
  void create_accounts(const std::vector<std::string>& ids) const;
  /// account_id -> balance_cents.
  std::map<std::string, std::int64_t> balances() const;
  /// Rows in the inbox table for the test's group.
  long long inbox_rows() const;

  static std::string ledger_binary();

  std::string m_schema;
  std::string m_topic;
  std::string m_group;
  std::string m_dsn;  ///< the test database, with search_path set to m_schema
  std::string m_dir;
};

}  // namespace outbox::consumer_test
