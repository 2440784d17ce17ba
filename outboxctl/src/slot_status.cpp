#include "commands.hpp"

#include "outbox/base/log.hpp"

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <cstdio>
#include <iostream>
#include <optional>

namespace outbox::ctl {
namespace {

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::string text(const pqxx::field& f) { return f.is_null() ? "" : f.c_str(); }

}  // namespace

int slot_status(const std::vector<std::string>& args) {
  std::string dsn;
  std::optional<std::string> slot;
  bool json = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--dsn" && i + 1 < args.size()) {
      dsn = args[++i];
    } else if (args[i] == "--slot" && i + 1 < args.size()) {
      slot = args[++i];
    } else if (args[i] == "--json") {
      json = true;
    } else {
      std::cerr << "outboxctl slot status: unknown or incomplete argument '" << args[i]
                << "'\nusage: outboxctl slot status --dsn DSN [--slot S] [--json]\n";
      return k_exit_usage;
    }
  }
  if (dsn.empty()) {
    std::cerr << "outboxctl slot status: --dsn is required\n";
    return k_exit_usage;
  }
  try {
    pqxx::connection c(dsn);
    pqxx::nontransaction tx(c);
    std::string sql =
        "SELECT s.slot_name, s.plugin, s.database, s.active, s.active_pid, s.confirmed_flush_lsn::text, "
        "s.restart_lsn::text, s.wal_status, "
        "COALESCE(pg_current_wal_lsn() - s.restart_lsn, 0)::float8 AS retained, "
        "COALESCE(pg_current_wal_lsn() - s.confirmed_flush_lsn, 0)::float8 AS lag, "
        "r.application_name, r.client_addr::text, r.state "
        "FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid "
        "WHERE s.slot_type = 'logical'";
    if (slot) sql += " AND s.slot_name = " + tx.quote(*slot);
    sql += " ORDER BY s.slot_name";
    const auto rows = tx.exec(sql);
    if (slot && rows.empty()) {
      std::string others;
      for (const auto& r : tx.exec("SELECT slot_name FROM pg_replication_slots ORDER BY 1")) {
        others += (others.empty() ? "" : ", ") + text(r[0]);
      }
      std::cerr << "outboxctl: no logical replication slot named " << *slot << " on this server"
                << (others.empty() ? " (there are none)" : "; slots here: " + others) << "\n";
      return k_exit_failure;
    }
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& r : rows) {
      nlohmann::ordered_json s;
      s["slot"] = text(r[0]);
      s["plugin"] = text(r[1]);
      s["database"] = text(r[2]);
      s["active"] = r[3].as<bool>();
      s["relay_attached"] = !r[4].is_null();
      s["active_pid"] = r[4].is_null() ? nlohmann::ordered_json() : nlohmann::ordered_json(r[4].as<long>());
      s["application"] = text(r[10]);
      s["client"] = text(r[11]);
      s["state"] = text(r[12]);
      s["confirmed_flush_lsn"] = text(r[5]);
      s["restart_lsn"] = text(r[6]);
      s["wal_status"] = text(r[7]);
      s["retained_wal_bytes"] = r[8].as<double>();
      s["unconfirmed_wal_bytes"] = r[9].as<double>();
      out.push_back(s);
    }
    if (json) {
      std::cout << out.dump(2) << "\n";
      return k_exit_ok;
    }
    if (out.empty()) std::cout << "no logical replication slots on this server\n";
    for (const auto& s : out) {
      std::cout << "slot " << s["slot"].get<std::string>() << " (" << s["plugin"].get<std::string>() << ", database "
                << s["database"].get<std::string>() << ")\n";
      if (s["relay_attached"].get<bool>()) {
        std::cout << "  attached:            yes (pid " << s["active_pid"] << ", "
                  << s["application"].get<std::string>() << " from " << s["client"].get<std::string>() << ", "
                  << s["state"].get<std::string>() << ")\n";
      } else {
        std::cout << "  attached:            no (no relay is streaming this slot; WAL accumulates)\n";
      }
      std::cout << "  confirmed_flush_lsn: " << s["confirmed_flush_lsn"].get<std::string>() << "\n"
                << "  restart_lsn:         " << s["restart_lsn"].get<std::string>() << "\n"
                << "  retained WAL:        " << human_bytes(s["retained_wal_bytes"].get<double>()) << "\n"
                << "  unconfirmed WAL:     " << human_bytes(s["unconfirmed_wal_bytes"].get<double>()) << "\n"
                << "  wal_status:          " << s["wal_status"].get<std::string>() << "\n";
    }
    return k_exit_ok;
  } catch (const pqxx::broken_connection& e) {
    std::cerr << "outboxctl: cannot connect to PostgreSQL (" << log::redact_dsn(dsn) << "): " << e.what();
    return k_exit_failure;
  } catch (const std::exception& e) {
    std::cerr << "outboxctl: " << e.what() << "\n";
    return k_exit_failure;
  }
}

}  // namespace outbox::ctl
