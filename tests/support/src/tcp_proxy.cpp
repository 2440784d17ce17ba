#include "outbox/test/tcp_proxy.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>

namespace outbox::test {
namespace {

using clock = std::chrono::steady_clock;

void set_nonblocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

/// Bytes read from one side, each chunk with the moment it may be written to the other.
struct buffer {
  std::deque<std::pair<clock::time_point, std::string>> chunks;
  [[nodiscard]] bool empty() const { return chunks.empty(); }
};

}  // namespace

struct tcp_proxy::pipe_pair {
  int client = -1;
  int server = -1;
  int generation = 0;
  bool connected = false;  ///< the connect to the target finished
  buffer to_server;
  buffer to_client;
  ~pipe_pair() {
    if (client >= 0) ::close(client);
    if (server >= 0) ::close(server);
  }
};

tcp_proxy::tcp_proxy(int target_port, int listen_port) : m_target(target_port) {
  m_listen_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  ::setsockopt(m_listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(listen_port));
  if (::bind(m_listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(m_listen_fd, 64) != 0) {
    ::close(m_listen_fd);
    throw std::runtime_error("tcp_proxy: cannot listen on 127.0.0.1:" + std::to_string(listen_port));
  }
  socklen_t len = sizeof addr;
  ::getsockname(m_listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
  m_port = ntohs(addr.sin_port);
  set_nonblocking(m_listen_fd);
  if (::pipe2(m_wake, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("tcp_proxy: pipe");
  m_thread = std::thread([this] { run(); });
}

tcp_proxy::~tcp_proxy() {
  m_stop = true;
  const char c = 1;
  static_cast<void>(::write(m_wake[1], &c, 1));
  if (m_thread.joinable()) m_thread.join();
  ::close(m_listen_fd);
  ::close(m_wake[0]);
  ::close(m_wake[1]);
}

void tcp_proxy::blackhole() { m_blackholed = true; }

void tcp_proxy::heal() {
  ++m_generation;
  m_blackholed = false;
  const char c = 1;
  static_cast<void>(::write(m_wake[1], &c, 1));
}

void tcp_proxy::delay(std::chrono::milliseconds d) { m_delay_ms = static_cast<int>(d.count()); }

void tcp_proxy::run() {
  std::vector<std::unique_ptr<pipe_pair>> pairs;
  char buf[64 * 1024];
  while (!m_stop.load()) {
    const int generation = m_generation.load();
    const bool hole = m_blackholed.load();
    // Drop connections that lived through a blackhole that has healed.
    for (auto& p : pairs) {
      if (p && p->generation != generation && !hole) p.reset();
    }
    std::erase_if(pairs, [](const auto& p) { return !p; });

    std::vector<pollfd> fds;
    fds.push_back({m_listen_fd, POLLIN, 0});
    fds.push_back({m_wake[0], POLLIN, 0});
    const auto now = clock::now();
    int timeout_ms = 100;
    for (const auto& p : pairs) {
      short cev = hole ? 0 : POLLIN;
      short sev = hole ? 0 : (p->connected ? POLLIN : POLLOUT);
      auto due = [&](const buffer& b) {
        if (b.empty()) return false;
        const auto wait = b.chunks.front().first - now;
        if (wait > clock::duration::zero()) {
          timeout_ms = std::min(
              timeout_ms, static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(wait).count()) + 1);
          return false;
        }
        return true;
      };
      if (!hole && due(p->to_client)) cev |= POLLOUT;
      if (!hole && p->connected && due(p->to_server)) sev |= POLLOUT;
      fds.push_back({p->client, cev, 0});
      fds.push_back({p->server, sev, 0});
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0 && errno != EINTR) break;
    if ((fds[1].revents & POLLIN) != 0) {
      while (::read(m_wake[0], buf, sizeof buf) > 0) {
      }
    }
    if ((fds[0].revents & POLLIN) != 0) {
      while (true) {
        const int c = ::accept4(m_listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) break;
        ++m_accepted;
        auto p = std::make_unique<pipe_pair>();
        p->client = c;
        p->generation = m_generation.load();
        p->server = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<std::uint16_t>(m_target));
        const int r = ::connect(p->server, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
        if (r == 0) p->connected = true;
        if (r != 0 && errno != EINPROGRESS) continue;  // the target is down: p closes the client
        pairs.push_back(std::move(p));
      }
    }
    const auto delay = std::chrono::milliseconds(m_delay_ms.load());
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      auto& p = pairs[i];
      const pollfd& cf = fds[2 + 2 * i];
      const pollfd& sf = fds[3 + 2 * i];
      if (!p) continue;
      bool close_pair = false;
      if (!p->connected && (sf.revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(p->server, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          close_pair = true;
        } else {
          p->connected = true;
        }
      }
      auto pump_in = [&](int from, buffer& into, const pollfd& f) {
        if ((f.revents & (POLLIN | POLLHUP | POLLERR)) == 0) return;
        const ssize_t n = ::read(from, buf, sizeof buf);
        if (n <= 0) {
          if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) close_pair = true;
          return;
        }
        into.chunks.emplace_back(clock::now() + delay, std::string(buf, static_cast<std::size_t>(n)));
      };
      auto pump_out = [&](int to, buffer& from, const pollfd& f) {
        if ((f.revents & POLLOUT) == 0) return;
        while (!from.empty() && from.chunks.front().first <= clock::now()) {
          auto& chunk = from.chunks.front().second;
          const ssize_t n = ::send(to, chunk.data(), chunk.size(), MSG_NOSIGNAL);
          if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) close_pair = true;
            return;
          }
          chunk.erase(0, static_cast<std::size_t>(n));
          if (!chunk.empty()) return;
          from.chunks.pop_front();
        }
      };
      if (!hole) {
        pump_in(p->client, p->to_server, cf);
        if (p->connected) pump_in(p->server, p->to_client, sf);
        pump_out(p->client, p->to_client, cf);
        if (p->connected) pump_out(p->server, p->to_server, sf);
      }
      if (close_pair) p.reset();
    }
    std::erase_if(pairs, [](const auto& p) { return !p; });
  }
}

}  // namespace outbox::test
