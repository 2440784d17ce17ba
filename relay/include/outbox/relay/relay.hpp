#pragma once

#include "outbox/relay/settings.hpp"

#include <memory>

namespace outbox::relay {

/// The relay: one Asio event loop that tails the slot, publishes rows and confirms LSNs.
class relay {
 public:
  explicit relay(settings s);
  ~relay();
  relay(const relay&) = delete;
  relay& operator=(const relay&) = delete;

  /// Runs until SIGTERM/SIGINT (returns 0 after draining) or an unrecoverable failure (returns 1).
  int run();

 private:
  class loop;
  std::unique_ptr<loop> m_loop;
};

}  // namespace outbox::relay
