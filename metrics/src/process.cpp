#include "outbox/metrics/registry.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

namespace outbox::metrics {

void registry::add_process_metrics() {
  auto& rss = add_gauge("process_resident_memory_bytes", "Resident memory size in bytes.").get();
  auto& cpu = add_counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.").get();
  auto& start = add_gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.").get();
  start.set(static_cast<double>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()));
  on_collect([&rss, &cpu] {
    long pages = 0;
    long resident = 0;
    std::ifstream statm("/proc/self/statm");
    if (statm >> pages >> resident)
      rss.set(static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)));
    rusage usage{};
    if (::getrusage(RUSAGE_SELF, &usage) == 0) {
      const double total = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
      cpu.inc(total - cpu.value());  // a counter that mirrors the kernel's own
    }
  });
}

}  // namespace outbox::metrics
