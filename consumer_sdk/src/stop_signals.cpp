#include "outbox/consumer/stop_signals.hpp"

#include "outbox/base/error.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <string>

namespace outbox::consumer {
namespace {

// What the handler reads: lock-free atomics, so that it stays async-signal-safe.
std::atomic<consumer*> g_attached{nullptr};
std::atomic<bool> g_requested{false};
std::atomic<bool> g_installed{false};

static_assert(std::atomic<consumer*>::is_always_lock_free && std::atomic<bool>::is_always_lock_free);

extern "C" void on_stop_signal(int /*signal*/) {
  g_requested.store(true);
  consumer* c = g_attached.load();
  if (c != nullptr) c->stop();  // an atomic store
}

void install(int signal, struct sigaction& old) {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  if (::sigaction(signal, &sa, &old) != 0) {
    throw outbox_error(
        "consumer", std::string("cannot install the handler of ") + ::strsignal(signal) + ": " + std::strerror(errno));
  }
}

}  // namespace

stop_signals::stop_signals() {
  if (g_installed.exchange(true)) {
    throw outbox_error("consumer", "stop_signals: one per process, and one exists already");
  }
  g_requested.store(false);
  try {
    install(SIGTERM, m_old_term);
    install(SIGINT, m_old_int);
  } catch (...) {
    ::sigaction(SIGTERM, &m_old_term, nullptr);
    g_installed.store(false);
    throw;
  }
}

stop_signals::~stop_signals() {
  ::sigaction(SIGINT, &m_old_int, nullptr);
  ::sigaction(SIGTERM, &m_old_term, nullptr);
  g_attached.store(nullptr);
  g_installed.store(false);
}

stop_signals::attachment stop_signals::attach(consumer& c) noexcept {
  g_attached.store(&c);
  if (g_requested.load()) c.stop();  // a signal before this moment; one after it finds the consumer
  return attachment{};
}

stop_signals::attachment::~attachment() { g_attached.store(nullptr); }

bool stop_signals::requested() const noexcept { return g_requested.load(); }

}  // namespace outbox::consumer
