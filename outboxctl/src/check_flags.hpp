#pragma once
// The flags `verify` and `reconcile` share: the outbox tables, the window, librdkafka properties, memory and lists.

#include "outbox/ctl/verify.hpp"

#include <chrono>
#include <functional>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::ctl {

/// What the shared flags said; unset ones keep the command's defaults.
struct check_flags {
  std::vector<std::string> tables;  ///< `schema.table` (`public.` added when no schema is given)
  std::optional<std::string> topic_template;
  std::string time_column = "created_at";
  std::optional<std::int64_t> since_ms;
  std::optional<std::int64_t> until_ms;
  std::optional<std::chrono::milliseconds> grace;
  std::vector<std::pair<std::string, std::string>> properties;
  std::optional<std::uint64_t> memory;
  std::optional<std::size_t> limit;
  bool json = false;
};

/// What take_check_flag did with args[i].
struct flag_taken {
  bool taken = false;  ///< args[i] (and its value) was a shared flag
  std::string error;   ///< the usage error, when it was one with a bad value
};

/// Takes args[i] into `f` when it is one of the shared flags, moving `i` past its value.
flag_taken take_check_flag(const std::vector<std::string>& args, std::size_t& i,
                           std::chrono::system_clock::time_point now, check_flags& f);

/// The tables named, with the default column names and `time_column`; `public.outbox` when none is named.
std::vector<verify_table> tables_from_names(std::vector<std::string> names, const std::string& time_column);

/// Runs a check, printing a failure as `outboxctl <command>: …` with DSN passwords hidden: the exit code of the
/// failure (1, or 2 for a configuration error), or nullopt when the check ran.
std::optional<int> run_check(std::string_view command, const std::function<void()>& check);

}  // namespace outbox::ctl
