#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace outbox::test {

/// What a finished command printed and how it exited.
struct command_result {
  int exit_code = -1;
  std::string output;  ///< stdout and stderr, interleaved
};

/// Runs `argv` to completion (killed after `timeout`), capturing its output.
command_result run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);

/// A child process with its stderr and stdout captured to a file; killed (SIGKILL) if still running
/// when destroyed.
class child_process {
 public:
  explicit child_process(std::vector<std::string> argv, std::string log_path);
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  void start();
  [[nodiscard]] bool running();
  [[nodiscard]] pid_t pid() const { return m_pid; }
  /// Sends `signal` and waits up to `timeout` for the exit; returns the exit code (128+N if signalled, -1 on timeout).
  int stop(int signal, std::chrono::milliseconds timeout);
  /// Waits up to `timeout` for the process to exit on its own; exit code as for stop().
  int wait(std::chrono::milliseconds timeout);
  /// Everything the process has written so far.
  [[nodiscard]] std::string log() const;
  /// Waits until the log contains `needle` (true) or the process exits / `timeout` passes (false).
  bool wait_for_log(std::string_view needle, std::chrono::milliseconds timeout);
  /// Peak resident set size (VmHWM) in KiB while running; 0 once exited.
  [[nodiscard]] long peak_rss_kib() const;

 private:
  std::vector<std::string> m_argv;
  std::string m_log_path;
  pid_t m_pid = -1;
  int m_exit_code = -1;
};

/// A scratch directory for one test under the build tree's temp area, emptied on creation.
std::string scratch_dir(std::string_view name);

}  // namespace outbox::test
