#pragma once

#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/process.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::test {

/// The default outbox table shape of SPEC §2, as column definitions.
inline constexpr std::string_view k_outbox_columns =
    "id uuid PRIMARY KEY DEFAULT gen_random_uuid(), aggregate_type text NOT NULL, aggregate_id text NOT NULL, "
    "event_type text NOT NULL, payload jsonb, headers jsonb NOT NULL DEFAULT '{}'::jsonb, "
    "created_at timestamptz NOT NULL DEFAULT now()";

/// A test that runs the real `outbox-relay` binary against its own slot, publication, tables and
/// topics (names unique to the test), and drops them all afterwards.
class relay_fixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// Creates a table `<prefix>_<suffix>` with `columns`; dropped in TearDown.
  std::string create_table(std::string_view prefix, std::string_view columns = k_outbox_columns);

  /// A complete relay config: `tables_yaml` goes under `source.tables:` (already indented list
  /// items, may be empty), `source_extra`, `top_extra` and `sink_extra` are appended to `source:`, to the file and
  /// to `sink:`.
  std::string config(std::string_view tables_yaml, std::string_view source_extra = "", std::string_view top_extra = "",
                     std::string_view sink_extra = "") const;
  /// `- name: public.<table>` list items for the given tables.
  static std::string tables(const std::vector<std::string>& names);

  /// Writes `yaml` to this test's config file and returns its path.
  std::string write_config(std::string_view yaml);
  /// Starts the relay on `yaml` (with extra command-line `args`) and waits until it streams (test fails otherwise).
  child_process& start_relay(std::string_view yaml, const std::vector<std::string>& args = {});
  /// Starts the relay on `yaml` without waiting for anything.
  child_process& launch_relay(std::string_view yaml, const std::vector<std::string>& args = {});
  /// Starts the relay again on the same config after it stopped (with `args` instead of the previous ones when
  /// given) and waits until it streams.
  void restart_relay(std::optional<std::vector<std::string>> args = std::nullopt);

  /// GET `path` on the running relay's metrics endpoint: the status (0 when it does not answer) and the body.
  [[nodiscard]] std::pair<int, std::string> http_get(const std::string& path) const;
  /// The value of the metric line that starts with `series` (e.g. `outbox_relay_halted`), or nullopt.
  [[nodiscard]] std::optional<double> metric(const std::string& series) const;

  /// The port the running relay's metrics endpoint bound (from its log), 0 if not yet.
  [[nodiscard]] int metrics_port() const;

  /// The relay binary under test.
  static std::string relay_binary();

  std::string m_dir;
  std::string m_slot;
  std::string m_publication;
  std::string m_config_path;
  std::unique_ptr<child_process> m_relay;
  std::vector<std::string> m_args;
  std::vector<std::string> m_tables;
};

}  // namespace outbox::test
