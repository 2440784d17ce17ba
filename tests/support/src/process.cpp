#include "outbox/test/process.hpp"

#include "outbox/test/environment.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace outbox::test {
namespace {

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

pid_t spawn(const std::vector<std::string>& argv, const std::string& out_path) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    const int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

command_result run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  const std::string out = scratch_dir("cmd") + "/output.txt";
  child_process p(argv, out);
  p.start();
  command_result r;
  r.exit_code = p.wait(timeout);
  if (r.exit_code == -1) r.exit_code = p.stop(SIGKILL, std::chrono::seconds(5));
  r.output = p.log();
  return r;
}

child_process::child_process(std::vector<std::string> argv, std::string log_path)
    : m_argv(std::move(argv)), m_log_path(std::move(log_path)) {}

child_process::~child_process() {
  if (m_pid > 0 && running()) {
    ::kill(m_pid, SIGKILL);
    ::waitpid(m_pid, nullptr, 0);
  }
}

void child_process::start() {
  m_exit_code = -1;
  m_pid = spawn(m_argv, m_log_path);
}

bool child_process::running() {
  if (m_pid <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(m_pid, &status, WNOHANG);
  if (r == m_pid) {
    m_exit_code = decode_status(status);
    m_pid = -1;
    return false;
  }
  return r == 0;
}

int child_process::wait(std::chrono::milliseconds timeout) {
  wait_until([&] { return !running(); }, timeout, std::chrono::milliseconds(20));
  return m_pid > 0 ? -1 : m_exit_code;
}

int child_process::stop(int signal, std::chrono::milliseconds timeout) {
  if (!running()) return m_exit_code;
  ::kill(m_pid, signal);
  return wait(timeout);
}

std::string child_process::log() const { return read_file(m_log_path); }

bool child_process::wait_for_log(std::string_view needle, std::chrono::milliseconds timeout) {
  bool found = false;
  wait_until(
      [&] {
        found = log().find(needle) != std::string::npos;
        return found || !running();
      },
      timeout, std::chrono::milliseconds(50));
  return found || log().find(needle) != std::string::npos;
}

long child_process::peak_rss_kib() const {
  if (m_pid <= 0) return 0;
  std::ifstream in("/proc/" + std::to_string(m_pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

std::string scratch_dir(std::string_view name) {
  const auto dir = std::filesystem::temp_directory_path() / "outbox-tests" / unique_name(name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace outbox::test
