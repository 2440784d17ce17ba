#include "outbox/test/postgres.hpp"

#include "outbox/test/environment.hpp"

#include <pqxx/pqxx>

#include <stdexcept>

namespace outbox::test {

void pg_exec(std::string_view sql) {
  pqxx::connection c(require_services().pg_dsn);
  pqxx::nontransaction tx(c);
  tx.exec(std::string(sql));
}

std::vector<std::string> pg_column(std::string_view sql) {
  pqxx::connection c(require_services().pg_dsn);
  pqxx::nontransaction tx(c);
  std::vector<std::string> out;
  for (const auto& row : tx.exec(std::string(sql))) {
    out.push_back(row[0].is_null() ? std::string() : row[0].c_str());
  }
  return out;
}

std::string pg_scalar(std::string_view sql) {
  pqxx::connection c(require_services().pg_dsn);
  pqxx::nontransaction tx(c);
  const auto r = tx.exec1(std::string(sql));
  return r[0].is_null() ? std::string() : r[0].c_str();
}

void pg_drop_slot(std::string_view slot) {
  pqxx::connection c(require_services().pg_dsn);
  const std::string name = c.quote(std::string(slot));
  {
    pqxx::nontransaction tx(c);
    tx.exec("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = " + name +
            " AND active_pid IS NOT NULL");
  }
  // A terminated walsender releases its slot asynchronously: retry the drop until a deadline.
  bool dropped = wait_until(
      [&] {
        try {
          pqxx::nontransaction tx(c);
          tx.exec("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = " + name);
          return true;
        } catch (const pqxx::sql_error&) {
          return false;
        }
      },
      std::chrono::seconds(10));
  if (!dropped) throw std::runtime_error("could not drop replication slot " + std::string(slot) + " within 10 s");
}

}  // namespace outbox::test
