#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace outbox::metrics {

/// A monotonically increasing value; lock-free.
class counter {
 public:
  void inc(double by = 1.0) noexcept { m_value.fetch_add(by, std::memory_order_relaxed); }
  [[nodiscard]] double value() const noexcept { return m_value.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> m_value{0.0};
};

/// A value that goes up and down; lock-free.
class gauge {
 public:
  void set(double v) noexcept { m_value.store(v, std::memory_order_relaxed); }
  void add(double by) noexcept { m_value.fetch_add(by, std::memory_order_relaxed); }
  [[nodiscard]] double value() const noexcept { return m_value.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> m_value{0.0};
};

/// Observations counted into fixed cumulative buckets; lock-free.
class histogram {
 public:
  explicit histogram(std::vector<double> upper_bounds);
  void observe(double v) noexcept;
  [[nodiscard]] const std::vector<double>& bounds() const noexcept { return m_bounds; }
  /// Per-bucket (non-cumulative) counts; the last is +Inf.
  [[nodiscard]] std::vector<std::uint64_t> bucket_counts() const;
  [[nodiscard]] double sum() const noexcept { return m_sum.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t count() const noexcept { return m_count.load(std::memory_order_relaxed); }

 private:
  std::vector<double> m_bounds;
  std::unique_ptr<std::atomic<std::uint64_t>[]> m_buckets;
  std::atomic<double> m_sum{0.0};
  std::atomic<std::uint64_t> m_count{0};
};

/// Buckets for latencies in seconds, 1 ms to 60 s.
std::vector<double> latency_buckets();

/// A named metric with label names; children per label values are created on first use and live
/// as long as the registry, so callers may keep the reference.
template <typename Metric>
class family {
 public:
  family(std::string name, std::string help, std::vector<std::string> label_names, std::vector<double> buckets = {})
      : m_name(std::move(name)),
        m_help(std::move(help)),
        m_label_names(std::move(label_names)),
        m_buckets(std::move(buckets)) {}

  /// The child for these label values (in the order of the label names).
  Metric& with(const std::vector<std::string>& label_values);
  /// The child without labels.
  Metric& get() { return with({}); }

  [[nodiscard]] const std::string& name() const { return m_name; }
  [[nodiscard]] const std::string& help() const { return m_help; }
  [[nodiscard]] const std::vector<std::string>& label_names() const { return m_label_names; }
  /// Calls `fn(label values, metric)` for every child, in label order.
  void for_each(const std::function<void(const std::vector<std::string>&, const Metric&)>& fn) const;

 private:
  std::string m_name;
  std::string m_help;
  std::vector<std::string> m_label_names;
  std::vector<double> m_buckets;
  mutable std::mutex m_mutex;  // guards the map, not the values
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> m_children;
};

/// All metrics of a process, rendered in the Prometheus text exposition format (0.0.4).
class registry {
 public:
  family<counter>& add_counter(std::string name, std::string help, std::vector<std::string> labels = {});
  family<gauge>& add_gauge(std::string name, std::string help, std::vector<std::string> labels = {});
  family<histogram>& add_histogram(std::string name, std::string help, std::vector<std::string> labels,
                                   std::vector<double> buckets);
  /// Runs before every render, to refresh gauges read from elsewhere (process stats).
  void on_collect(std::function<void()> fn);
  /// Adds process_resident_memory_bytes, process_cpu_seconds_total, process_start_time_seconds.
  void add_process_metrics();

  [[nodiscard]] std::string render() const;

 private:
  mutable std::mutex m_mutex;
  std::vector<std::unique_ptr<family<counter>>> m_counters;
  std::vector<std::unique_ptr<family<gauge>>> m_gauges;
  std::vector<std::unique_ptr<family<histogram>>> m_histograms;
  std::vector<std::string> m_order;  // names in registration order
  std::vector<std::function<void()>> m_collectors;
};

/// Escapes a label value for the text format (backslash, quote, newline).
std::string escape_label_value(std::string_view v);

}  // namespace outbox::metrics
