#include "outbox/config/docs.hpp"

#include <iostream>

/// Prints the configuration reference generated from the declarations; its output is docs/configuration.md.
int main() {
  std::cout << outbox::config::reference_markdown();
  return std::cout.good() ? 0 : 1;
}
