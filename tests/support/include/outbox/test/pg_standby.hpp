#pragma once

#include <string>
#include <vector>

namespace outbox::test {

/// A PostgreSQL primary and a streaming physical standby of one major version, on ports of their own,
/// made by scripts/services.sh (`start postgres`, `start-standby`, `promote-standby`) in a run
/// directory of their own under $OUTBOX_RUN_DIR/pairs. On 17+ the standby syncs failover slots
/// (sync_replication_slots) and the primary names its physical slot in synchronized_standby_slots.
///
/// Ports: OUTBOX_PG_PAIR_PORT (services.env; OUTBOX_PG_PORT + 40 by default) + 2 * index for the
/// primary, one more for the standby; index 0-4, so a test can run up to five pairs at once.
class pg_standby_pair {
 public:
  explicit pg_standby_pair(int major, int index = 0);
  ~pg_standby_pair();
  pg_standby_pair(const pg_standby_pair&) = delete;
  pg_standby_pair& operator=(const pg_standby_pair&) = delete;

  /// Starts a fresh primary, then a standby streaming from it; throws with the script's output.
  void start();
  /// Stops the primary the way a crash does (immediate shutdown), leaving the standby running.
  void crash_primary();
  /// Promotes the standby and waits until it accepts writes.
  void promote();
  /// Stops both servers (standby first) and drops the standby's slot; also done by the destructor.
  void stop();

  [[nodiscard]] int major() const { return m_major; }
  [[nodiscard]] int primary_port() const { return m_port; }
  [[nodiscard]] int standby_port() const { return m_port + 1; }
  /// Superuser on database `outbox` of the primary / the standby (libpq keyword/value strings).
  [[nodiscard]] std::string primary_dsn() const { return dsn(primary_port()); }
  [[nodiscard]] std::string standby_dsn() const { return dsn(standby_port()); }
  /// The physical replication slot the standby streams from (on the primary).
  [[nodiscard]] static std::string standby_slot() { return "outbox_standby"; }
  /// The pair's run directory: data directories, server logs, services-pg<major>.env.
  [[nodiscard]] const std::string& run_dir() const { return m_run_dir; }

 private:
  [[nodiscard]] std::string dsn(int port) const;
  void services(const std::vector<std::string>& args) const;

  int m_major;
  int m_port;
  std::string m_run_dir;
  bool m_started = false;
};

}  // namespace outbox::test
