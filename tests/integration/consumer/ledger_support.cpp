#include "ledger_support.hpp"

#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"

#include <fstream>
#include <sstream>

namespace outbox::consumer_test {

outgoing to_record(const std::string& topic, const callback& c) {
  return outgoing{
      topic,
      -1,
      c.account_id,
      R"({"account_id": ")" + c.account_id + R"(", "amount_cents": )" + std::to_string(c.amount_cents) + "}",
      {{"event_id", c.event_id}, {"event_type", "payment_succeeded"}, {"aggregate_type", "payments"}}};
}

std::string ledger_fixture::ledger_binary() { return PAYMENT_LEDGER_BIN; }

void ledger_fixture::SetUp() {
  const auto& services = test::require_services();
  m_schema = test::unique_name("ledger");
  m_topic = test::unique_name("payments");
  m_group = test::unique_name("ledger_group");
  m_dir = test::scratch_dir("ledger");
  m_dsn = services.pg_dsn + " options=-csearch_path=" + m_schema;
  std::ifstream in(PAYMENT_LEDGER_SCHEMA);
  std::stringstream schema_sql;
  schema_sql << in.rdbuf();
  ASSERT_FALSE(schema_sql.str().empty()) << "cannot read " << PAYMENT_LEDGER_SCHEMA;
  test::pg_exec("CREATE SCHEMA " + m_schema);
  test::pg_exec("SET search_path TO " + m_schema + "; " + schema_sql.str());
}

void ledger_fixture::TearDown() {
  if (!m_schema.empty()) test::pg_exec("DROP SCHEMA IF EXISTS " + m_schema + " CASCADE");
}

void ledger_fixture::create_topic(int partitions) { test::kafka_create_topic(m_topic, partitions); }

std::string ledger_fixture::write_config(const std::string& properties, const std::string& name,
                                         const std::string& retry_and_dlq, const std::string& consumer_keys,
                                         const std::string& sections) const {
  const std::string path = m_dir + "/" + name;
  std::ofstream out(path);
  out << "consumer:\n"
      << "  brokers: " << test::require_services().kafka_brokers << "\n"
      << "  group_id: " << m_group << "\n"
      << "  topics: [" << m_topic << "]\n"
      << "  properties: " << properties << "\n"
      << consumer_keys << "dedupe:\n"
      << "  store: postgres\n"
      << "  dsn: \"" << m_dsn
      << "\"\n"
      // The local broker keeps records 1d (+ segment.ms 7d) and offsets 7d: 10d covers that plus the replay window.
      << "  retention: 10d\n"
      << (retry_and_dlq.empty() ? "retry:\n  initial: 50ms\n  max: 500ms\n  attempts: 1000\n" : retry_and_dlq)
      << sections << "log:\n"
      << "  level: info\n"
      << "metrics:\n"
      << "  listen: 127.0.0.1:0\n"  // instances run side by side: any free port
      << "ledger:\n"
      << "  dsn: \"" << m_dsn << "\"\n";
  return path;
}

std::unique_ptr<test::child_process> ledger_fixture::start_ledger(const std::string& config,
                                                                  const std::string& log_name) const {
  auto p = std::make_unique<test::child_process>(std::vector<std::string>{ledger_binary(), "--config", config},
                                                 m_dir + "/" + log_name);
  p->start();
  return p;
}

void ledger_fixture::create_accounts(const std::vector<std::string>& ids) const {
  std::string sql = "INSERT INTO " + m_schema + ".accounts (account_id, balance_cents) VALUES ";
  for (std::size_t i = 0; i < ids.size(); ++i) sql += (i ? ",('" : "('") + ids[i] + "', 0)";
  test::pg_exec(sql);
}

std::map<std::string, std::int64_t> ledger_fixture::balances() const {
  std::map<std::string, std::int64_t> out;
  for (const auto& row : test::pg_column("SELECT account_id || ':' || balance_cents FROM " + m_schema + ".accounts")) {
    const auto colon = row.rfind(':');
    out[row.substr(0, colon)] = std::stoll(row.substr(colon + 1));
  }
  return out;
}

long long ledger_fixture::inbox_rows() const {
  return std::stoll(
      test::pg_scalar("SELECT count(*) FROM " + m_schema + ".outbox_inbox WHERE consumer_group = '" + m_group + "'"));
}

}  // namespace outbox::consumer_test
