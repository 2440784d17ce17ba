#pragma once

#include <string>
#include <vector>

namespace outbox::ctl {

/// Exit codes shared by every command (SPEC §6).
inline constexpr int k_exit_ok = 0;
inline constexpr int k_exit_failure = 1;
inline constexpr int k_exit_usage = 2;
inline constexpr int k_exit_gap = 3;  ///< verify and reconcile: something is missing

/// `outboxctl slot status --dsn DSN [--slot S] [--json]`: one slot, or every logical slot.
int slot_status(const std::vector<std::string>& args);

/// `outboxctl verify ...`: the outbox rows of a window against the topics they route to.
int verify_command(const std::vector<std::string>& args);

/// `outboxctl reconcile ...`: a window's outbox events against a consumer group's inbox and dead letters.
int reconcile_command(const std::vector<std::string>& args);

/// `outboxctl dlq list | show | replay ...` (args start at the subcommand): dead-letter topics.
int dlq(const std::vector<std::string>& args);

}  // namespace outbox::ctl
