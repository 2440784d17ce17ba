#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace outbox::test {

/// A TCP proxy on 127.0.0.1 for network faults: it passes bytes both ways, or blackholes them (accepts and
/// holds connections, forwards nothing, sends no FIN or RST: what a partition or a frozen VM looks like from
/// either end), or delays them. Healing a blackhole drops the connections that lived through it, as a stateful
/// firewall or a NAT that lost its table would, so both ends notice at once.
class tcp_proxy {
 public:
  /// Listens on `listen_port` (0: any free port) and forwards to 127.0.0.1:`target_port`.
  tcp_proxy(int target_port, int listen_port = 0);
  ~tcp_proxy();
  tcp_proxy(const tcp_proxy&) = delete;
  tcp_proxy& operator=(const tcp_proxy&) = delete;

  [[nodiscard]] int port() const noexcept { return m_port; }
  /// Stops forwarding (existing and new connections alike).
  void blackhole();
  /// Forwards again; connections that lived through the blackhole are closed.
  void heal();
  /// Adds `d` before bytes are forwarded (0: none).
  void delay(std::chrono::milliseconds d);
  /// Connections accepted so far.
  [[nodiscard]] int accepted() const noexcept { return m_accepted.load(); }

 private:
  struct pipe_pair;
  void run();

  int m_target;
  int m_listen_fd = -1;
  int m_port = 0;
  int m_wake[2] = {-1, -1};
  std::atomic<bool> m_stop{false};
  std::atomic<bool> m_blackholed{false};
  std::atomic<int> m_delay_ms{0};
  std::atomic<int> m_generation{0};  ///< bumped by heal(); older connections are closed
  std::atomic<int> m_accepted{0};
  std::thread m_thread;
};

}  // namespace outbox::test
