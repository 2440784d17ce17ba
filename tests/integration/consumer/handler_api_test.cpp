// The handler API a payment service needs, on real Kafka and PostgreSQL: a dedupe key from the record, the
// attempt context, retry_after and duplicate outcomes, in the inbox transaction.
#include "guarantee_support.hpp"
#include "ledger_support.hpp"
#include "outbox/dedupe/postgres_inbox.hpp"
#include "outbox/test/environment.hpp"
#include "outbox/test/postgres.hpp"
#include "running_consumer.hpp"
#include "test_producer.hpp"

#include <gtest/gtest.h>
#include <pqxx/pqxx>

#include <atomic>
#include <map>
#include <set>
#include <mutex>
#include <vector>

namespace outbox::consumer_test {
namespace {

using namespace std::chrono_literals;
using consumer::attempt_info;
using consumer::outcome;
using consumer::record;

/// One HTTP delivery of a provider's payment callback, written by the receiving service as its own outbox row.
outgoing delivery(const std::string& topic, const std::string& event_id, const std::string& transaction_id,
                  const std::string& account, std::int64_t cents) {
  return outgoing{topic,
                  -1,
                  account,
                  R"({"account_id":")" + account + R"(","amount_cents":)" + std::to_string(cents) + "}",
                  {{"event_id", event_id}, {"transaction_id", transaction_id}}};
}

class handler_api : public ledger_fixture {
 protected:
  consumer::consumer_options inbox_options() const {
    auto o = kafka_options({m_topic}, m_group);
    o.inbox = consumer::inbox_options{m_dsn, "outbox_inbox", std::chrono::hours(240), {}, {}};
    return o;
  }
  std::vector<std::string> inbox_keys() const {
    return test::pg_column("SELECT event_id FROM " + m_schema + ".outbox_inbox WHERE consumer_group = '" + m_group +
                           "' ORDER BY event_id");
  }
  /// Sends `n` records with the event ids `prefix`0, `prefix`1, ... to partition 0; returns the ids.
  std::set<std::string> send_numbered(const std::string& prefix, int n) const {
    test_producer producer(test::require_services().kafka_brokers);
    std::set<std::string> ids;
    for (int i = 0; i < n; ++i) {
      const std::string id = prefix + std::to_string(i);
      ids.insert(id);
      producer.send(outgoing{m_topic, 0, "k", "{}", {{"event_id", id}}});
    }
    producer.flush();
    return ids;
  }
  /// Whether the group committed offset `n` of the one partition within a minute.
  bool committed_up_to(std::int64_t n) const {
    return test::wait_until(
        [&] {
          return committed_offsets(test::require_services().kafka_brokers, m_group, m_topic, 1) ==
                 std::vector<std::int64_t>{n};
        },
        60s);
  }
  /// inbox_options with inbox.batch `batch`, ended by its size or an empty poll (not by time), and the test's
  /// `effects` table for the handler to write to.
  consumer::consumer_options batch_options(std::size_t batch) const {
    test::pg_exec("CREATE TABLE " + m_schema + ".effects (event_id text NOT NULL)");
    auto o = inbox_options();
    o.inbox->batch = batch;
    o.inbox->batch_time = 5s;
    return o;
  }
  /// The event ids in the `effects` table of batch_options, one per applied effect.
  std::vector<std::string> effects_applied() const {
    return test::pg_column("SELECT event_id FROM " + m_schema + ".effects ORDER BY event_id");
  }
};

// Two deliveries of one provider transaction are two outbox rows with two event ids: keyed on transaction_id,
// the second is a duplicate. A handler that finds the credit in its own table says duplicate; a 429 waits the
// delay it was given, and the handler sees its attempt number and first failure.
TEST_F(handler_api, a_dedupe_key_duplicate_and_retry_after_in_the_inbox_transaction) {
  create_topic(1);
  create_accounts({"a1", "a2"});
  test::pg_exec("CREATE TABLE " + m_schema + ".credits (transaction_id text PRIMARY KEY)");
  test::pg_exec("INSERT INTO " + m_schema + ".credits VALUES ('wx-imported')");  // credited before the SDK ran
  auto o = inbox_options();
  o.retry.max_attempts = 3;
  o.dedupe_key = consumer::dedupe_key_from_header("transaction_id");
  std::mutex mu;
  std::map<std::string, std::vector<attempt_info>> attempts;  // by event id
  std::map<std::string, std::chrono::steady_clock::time_point> first_try;
  std::chrono::milliseconds waited{0};
  const std::string schema = m_schema;
  running_consumer c(
      std::move(o), consumer::transactional_handler([&](const record& r, pqxx::work& tx) {
        const std::string id(r.event_id());
        const std::string txn(r.header("transaction_id").value_or(""));
        {
          std::lock_guard lock(mu);
          attempts[id].push_back(r.attempt);
          if (r.attempt.number == 1) first_try[id] = std::chrono::steady_clock::now();
          if (id == "d-429" && r.attempt.number == 1) {
            return outcome::retry_after(1500ms, "HTTP 429, Retry-After: 1.5");
          }
          if (id == "d-429") {
            waited =
                std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - first_try[id]);
          }
        }
        if (!tx.exec_params("SELECT 1 FROM " + schema + ".credits WHERE transaction_id = $1", txn).empty()) {
          return outcome::duplicate();
        }
        tx.exec_params("INSERT INTO " + schema + ".credits VALUES ($1)", txn);
        tx.exec_params("UPDATE " + schema +
                           ".accounts SET balance_cents = balance_cents + 100 "
                           "WHERE account_id = $1",
                       r.key.value_or(""));
        return outcome::done();
      }));
  test_producer producer(test::require_services().kafka_brokers);
  producer.send(delivery(m_topic, "d-1", "wx-1", "a1", 100));
  producer.send(delivery(m_topic, "d-2", "wx-1", "a1", 100));  // the provider's retry of the same callback
  producer.send(delivery(m_topic, "d-3", "wx-imported", "a2", 100));
  producer.send(delivery(m_topic, "d-429", "wx-2", "a2", 100));
  producer.flush();
  ASSERT_TRUE(test::wait_until([&] { return c.get().stats().processed + c.get().stats().duplicate >= 4; }, 60s));
  c.stop();

  EXPECT_EQ(balances(), (std::map<std::string, std::int64_t>{{"a1", 100}, {"a2", 100}})) << "wx-1 credited once";
  EXPECT_EQ(c.get().stats().processed, 2u);
  EXPECT_EQ(c.get().stats().duplicate, 2u) << "d-2 by the inbox, d-3 by the handler";
  EXPECT_EQ(inbox_keys(), (std::vector<std::string>{"wx-1", "wx-2", "wx-imported"}))
      << "keyed on transaction_id; a duplicate the handler found is recorded too";
  std::lock_guard lock(mu);
  EXPECT_EQ(attempts.count("d-2"), 0u) << "the inbox skipped it without the handler";
  ASSERT_EQ(attempts["d-429"].size(), 2u);
  EXPECT_GE(waited, 1500ms) << "Retry-After, not the schedule's 20ms";
  const attempt_info& second = attempts["d-429"][1];
  EXPECT_EQ(second.number, 2);
  EXPECT_GT(second.first_failure_ms, 0);
  EXPECT_EQ(second.tier, -1);
  EXPECT_FALSE(second.replay);
  EXPECT_FALSE(second.last) << "3 attempts and no tiers: the third is the last";
}

// A credit that overflows bigint (22003) cannot succeed on any attempt: dead-lettered on its first, although the
// schedule allows 1000. A row locked by another transaction (55P03 under NOWAIT) is infrastructure: the record
// waits, no attempt is spent, and it is credited once the lock goes.
TEST_F(handler_api, the_default_classification_on_real_sqlstates) {
  create_topic(1);
  create_accounts({"a1", "a2"});
  test::pg_exec("UPDATE " + m_schema + ".accounts SET balance_cents = 9223372036854775000 WHERE account_id = 'a1'");
  auto o = inbox_options();
  o.retry.max_attempts = 1000;
  std::mutex mu;
  std::vector<std::int64_t> a2_attempts;
  const std::string schema = m_schema;
  running_consumer c(std::move(o), consumer::transactional_handler([&](const record& r, pqxx::work& tx) {
                       if (r.key == "a2") {
                         std::lock_guard lock(mu);
                         a2_attempts.push_back(r.attempt.number);
                       }
                       tx.exec_params("SELECT 1 FROM " + schema + ".accounts WHERE account_id = $1 FOR UPDATE NOWAIT",
                                      r.key.value_or(""));
                       tx.exec_params("UPDATE " + schema +
                                          ".accounts SET balance_cents = balance_cents + 1000 "
                                          "WHERE account_id = $1",
                                      r.key.value_or(""));
                       return outcome::done();
                     }));
  pqxx::connection blocker(m_dsn);
  pqxx::work holding(blocker);
  holding.exec("SELECT 1 FROM accounts WHERE account_id = 'a2' FOR UPDATE");

  test_producer producer(test::require_services().kafka_brokers);
  producer.send(delivery(m_topic, "overflow", "wx-1", "a1", 1000));
  producer.send(delivery(m_topic, "locked", "wx-2", "a2", 1000));
  producer.flush();
  ASSERT_TRUE(test::wait_until([&] { return c.get().stats().dead_lettered == 1; }, 60s));
  EXPECT_EQ(c.get().stats().retried, 0u) << "22003 is not retried";
  ASSERT_TRUE(test::wait_until([&] { return c.get().stats().dependency_errors >= 3; }, 60s));
  EXPECT_EQ(c.get().stats().processed, 0u);
  holding.abort();
  ASSERT_TRUE(test::wait_until([&] { return c.get().stats().processed == 1; }, 60s));
  c.stop();

  EXPECT_EQ(c.get().stats().fatal, 1u);
  EXPECT_EQ(c.get().stats().dead_lettered, 1u);
  EXPECT_EQ(test::pg_scalar("SELECT error_class FROM " + m_schema + ".outbox_dead_letters WHERE event_id = 'overflow'"),
            "fatal");
  EXPECT_EQ(balances(), (std::map<std::string, std::int64_t>{{"a1", 9223372036854775000}, {"a2", 1000}}));
  std::lock_guard lock(mu);
  ASSERT_GE(a2_attempts.size(), 4u);
  for (const auto n : a2_attempts) EXPECT_EQ(n, 1) << "a lock held elsewhere spends no attempt";
}

// A merchant's notification that cannot be delivered: the hook marks it failed in the transaction that records
// the dead letter. The first run of the hook fails, and neither its write nor the recorded dead letter commits;
// the second commits both.
TEST_F(handler_api, the_dead_letter_hook_writes_in_the_transaction_that_records_the_dead_letter) {
  create_topic(1);
  test::pg_exec("CREATE TABLE " + m_schema +
                ".notifications (event_id text PRIMARY KEY, status text NOT NULL, last_error text)");
  test::pg_exec("INSERT INTO " + m_schema + ".notifications VALUES ('n-1', 'pending', NULL), ('n-2', 'pending', NULL)");
  auto o = inbox_options();
  o.retry.max_attempts = 2;
  std::mutex mu;
  int hook_runs = 0;
  std::vector<long long> rows_seen_by_hook;  // recorded dead letters a separate connection saw, per hook run
  const std::string schema = m_schema;
  const std::string dsn = m_dsn;
  o.on_dead_letter = [&](const record& r, const consumer::dead_letter_info& dl, pqxx::work& tx) {
    {
      pqxx::connection other(dsn);
      pqxx::nontransaction look(other);
      std::lock_guard lock(mu);
      rows_seen_by_hook.push_back(look.exec1("SELECT count(*) FROM outbox_dead_letters")[0].as<long long>());
      if (++hook_runs == 1) throw std::runtime_error("the hook's first run fails");
    }
    tx.exec_params("UPDATE " + schema + ".notifications SET status = 'failed', last_error = $2 WHERE event_id = $1",
                   std::string(r.event_id()), dl.error_class + ": " + dl.reason);
  };
  running_consumer c(std::move(o), consumer::transactional_handler([&](const record& r, pqxx::work& tx) {
                       if (r.event_id() == "n-1") return outcome::retry("merchant answered HTTP 500");
                       tx.exec_params(
                           "UPDATE " + schema + ".notifications SET status = 'delivered' WHERE event_id = $1",
                           std::string(r.event_id()));
                       return outcome::done();
                     }));
  test_producer producer(test::require_services().kafka_brokers);
  producer.send(delivery(m_topic, "n-1", "wx-1", "m1", 1));
  producer.send(delivery(m_topic, "n-2", "wx-2", "m1", 1));
  producer.flush();
  ASSERT_TRUE(test::wait_until([&] { return c.get().stats().processed == 1; }, 60s));
  c.stop();

  EXPECT_EQ(test::pg_column("SELECT event_id || ':' || status || ':' || coalesce(last_error, '') FROM " + m_schema +
                            ".notifications ORDER BY event_id"),
            (std::vector<std::string>{"n-1:failed:retry_exhausted: merchant answered HTTP 500", "n-2:delivered:"}));
  EXPECT_EQ(test::pg_column("SELECT event_id || ':' || topic || ':' || \"offset\" || ':' || error_class || ':' || "
                            "(replayed_at IS NULL) FROM " +
                            m_schema + ".outbox_dead_letters"),
            (std::vector<std::string>{"n-1:" + m_topic + ":0:retry_exhausted:true"}));
  std::lock_guard lock(mu);
  EXPECT_EQ(hook_runs, 2);
  EXPECT_EQ(rows_seen_by_hook, (std::vector<long long>{0, 0})) << "the failed run committed nothing";
  EXPECT_GE(c.get().stats().dependency_errors, 1u);
  EXPECT_EQ(c.get().stats().dead_lettered, 1u);
}

// Bring your own transaction: a plain handler opens a SERIALIZABLE transaction on the service's own connection,
// joins the inbox to it with postgres_inbox::claim_in, and says duplicate when the row is already there.
TEST_F(handler_api, a_service_joins_the_inbox_to_a_serializable_transaction_of_its_own) {
  create_topic(1);
  create_accounts({"a1"});
  dedupe::postgres_inbox inbox(m_dsn, {.table = "outbox_inbox",
                                       .retention = std::chrono::hours(240),
                                       .keep_at_least = {},
                                       .dead_letter_table = {},
                                       .create_tables = true});
  pqxx::connection own(m_dsn);  // the service's pool, in short
  std::vector<std::string> isolation;
  const std::string group = m_group;
  running_consumer c(kafka_options({m_topic}, m_group), [&](const record& r) {
    pqxx::transaction<pqxx::serializable> tx(own);
    isolation.push_back(tx.exec1("SHOW transaction_isolation")[0].as<std::string>());
    if (!inbox.claim_in(tx, group, r.header("transaction_id").value_or(""))) return outcome::duplicate();
    tx.exec_params("UPDATE accounts SET balance_cents = balance_cents + $1 WHERE account_id = $2", 100,
                   r.key.value_or(""));
    tx.commit();
    return outcome::done();
  });
  test_producer producer(test::require_services().kafka_brokers);
  producer.send(delivery(m_topic, "d-1", "wx-1", "a1", 100));
  producer.send(delivery(m_topic, "d-2", "wx-1", "a1", 100));
  producer.send(delivery(m_topic, "d-3", "wx-2", "a1", 100));
  producer.flush();
  ASSERT_TRUE(test::wait_until([&] { return c.get().stats().processed + c.get().stats().duplicate >= 3; }, 60s));
  c.stop();
  EXPECT_EQ(balances(), (std::map<std::string, std::int64_t>{{"a1", 200}}));
  EXPECT_EQ(c.get().stats().duplicate, 1u);
  EXPECT_EQ(inbox_keys(), (std::vector<std::string>{"wx-1", "wx-2"}));
  EXPECT_EQ(isolation, (std::vector<std::string>(3, "serializable")));
}

}  // namespace
}  // namespace outbox::consumer_test

// inbox_options::batch: 200 records, 40 a transaction. The connection dies in the middle of a batch (the handler's
// own backend is terminated under it): the batch is lost, its records are read again, and every effect is applied
// exactly once, the offsets past them all.
namespace outbox::consumer_test {
namespace {

TEST_F(handler_api, a_batch_lost_with_its_connection_is_read_again_and_every_effect_applied_once) {
  create_topic(2);
  auto o = batch_options(40);
  std::atomic<int> calls{0};
  const std::string effects = m_schema + ".effects";
  running_consumer c(std::move(o), consumer::transactional_handler([&](const record& r, pqxx::work& tx) {
                       tx.exec_params("INSERT INTO " + effects + " VALUES ($1)", std::string(r.event_id()));
                       if (calls.fetch_add(1) == 25) tx.exec("SELECT pg_terminate_backend(pg_backend_pid())");
                       return outcome::done();
                     }));
  test_producer producer(test::require_services().kafka_brokers);
  std::set<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    const std::string id = "lb-" + std::to_string(i);
    ids.insert(id);
    producer.send(outgoing{m_topic, i % 2, "k" + std::to_string(i % 7), "{}", {{"event_id", id}}});
  }
  producer.flush();
  ASSERT_TRUE(test::wait_until(
      [&] { return test::pg_column("SELECT DISTINCT event_id FROM " + effects).size() == ids.size(); }, 60s));
  ASSERT_TRUE(test::wait_until(
      [&] {
        return committed_offsets(test::require_services().kafka_brokers, m_group, m_topic, 2) ==
               std::vector<std::int64_t>{100, 100};
      },
      60s));
  c.stop();
  const auto applied = effects_applied();
  EXPECT_EQ(std::set<std::string>(applied.begin(), applied.end()), ids);
  EXPECT_EQ(applied.size(), ids.size()) << "an effect was applied twice";
  EXPECT_EQ(inbox_keys().size(), ids.size());
  EXPECT_GT(calls.load(), 200) << "the lost batch's records ran again";
}

// In a batch, a handler that swallows an SQL error and returns done: libpqxx closes the transaction on the error,
// so the whole batch is lost and read again (no attempt spent), and every effect is still applied exactly once.
TEST_F(handler_api, in_a_batch_a_handler_that_swallows_an_sql_error_loses_the_batch_and_every_effect_applies_once) {
  create_topic(1);
  auto o = batch_options(50);
  std::atomic<int> calls{0};
  std::atomic<bool> swallowed{false};
  const std::string effects = m_schema + ".effects";
  running_consumer c(std::move(o), consumer::transactional_handler([&](const record& r, pqxx::work& tx) {
                       ++calls;
                       tx.exec_params("INSERT INTO " + effects + " VALUES ($1)", std::string(r.event_id()));
                       if (r.event_id() == "sw-20" && !swallowed.exchange(true)) {
                         try {
                           tx.exec("SELECT 1 / 0");
                         } catch (const pqxx::sql_error&) {  // the mistake under test: the transaction is aborted
                         }
                       }
                       return outcome::done();
                     }));
  auto ids = send_numbered("sw-", 100);
  ASSERT_TRUE(committed_up_to(100));
  c.stop();
  const auto applied = effects_applied();
  EXPECT_EQ(std::set<std::string>(applied.begin(), applied.end()), ids);
  EXPECT_EQ(applied.size(), ids.size()) << "an effect was applied twice";
  EXPECT_GT(calls.load(), 101) << "the records of the batch before sw-20 ran again";
  EXPECT_EQ(c.get().stats().retried, 0u) << "no attempt is spent on a lost batch";
}

// In a batch, a record's savepoint is released and its inbox row checked with the next record's claim (or before
// the commit, for the batch's last record). A handler that rolls its record back behind the SDK's back (its row
// is gone) and returns done: the next message sees it, the batch is lost and read again a transaction each, and
// every effect is applied exactly once; the same for the last record of the batch, which the commit checks.
TEST_F(handler_api, in_a_batch_a_handler_that_undoes_its_inbox_row_loses_the_batch_and_every_effect_applies_once) {
  create_topic(1);
  auto o = batch_options(50);
  std::atomic<int> calls{0};
  std::atomic<int> undone{0};
  std::mutex mutex;
  std::set<std::string> undid;
  const std::string effects = m_schema + ".effects";
  running_consumer c(std::move(o), consumer::transactional_handler([&](const record& r, pqxx::work& tx) {
                       ++calls;
                       const std::string id(r.event_id());
                       tx.exec_params("INSERT INTO " + effects + " VALUES ($1)", id);
                       if (id == "rb-20" || id == "rb-99") {
                         const std::lock_guard lock(mutex);
                         if (undid.insert(id).second) {
                           tx.exec0("ROLLBACK TO SAVEPOINT outbox_record");  // the mistake under test
                           ++undone;
                         }
                       }
                       return outcome::done();
                     }));
  auto ids = send_numbered("rb-", 100);
  ASSERT_TRUE(committed_up_to(100));
  c.stop();
  EXPECT_EQ(undone.load(), 2);
  const auto applied = effects_applied();
  EXPECT_EQ(std::set<std::string>(applied.begin(), applied.end()), ids);
  EXPECT_EQ(applied.size(), ids.size()) << "an effect was applied twice";
  EXPECT_EQ(inbox_keys().size(), ids.size());
  EXPECT_GT(calls.load(), 102) << "the records of the lost batches ran again";
  EXPECT_EQ(c.get().stats().retried, 0u) << "no attempt is spent on a lost batch";
}

// In a batch, an SQL error the handler throws (a division by zero: class 22, fatal) loses the batch too; the
// records read again run a transaction each up to the one that failed, which is dead-lettered alone, and batching
// resumes after it: no loop, every other effect once.
TEST_F(handler_api, in_a_batch_a_fatal_sql_error_dead_letters_its_record_alone_and_the_rest_apply_once) {
  create_topic(1);
  auto o = batch_options(50);
  const std::string effects = m_schema + ".effects";
  running_consumer c(std::move(o), consumer::transactional_handler([&](const record& r, pqxx::work& tx) {
                       tx.exec_params("INSERT INTO " + effects + " VALUES ($1)", std::string(r.event_id()));
                       if (r.event_id() == "fz-30") tx.exec("SELECT 1 / 0");
                       return outcome::done();
                     }));
  auto ids = send_numbered("fz-", 100);
  ids.erase("fz-30");  // dead-lettered
  ASSERT_TRUE(committed_up_to(100));
  c.stop();
  const auto applied = effects_applied();
  EXPECT_EQ(std::set<std::string>(applied.begin(), applied.end()), ids);
  EXPECT_EQ(applied.size(), ids.size()) << "an effect was applied twice";
  EXPECT_EQ(c.get().stats().dead_lettered, 1u);
  // `processed` counts what handlers said done, the lost batch's records among them: more than 99.
  EXPECT_GT(c.get().stats().processed, 99u);
}

}  // namespace
}  // namespace outbox::consumer_test
