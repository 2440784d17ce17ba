#include "outbox/metrics/registry.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace outbox::metrics {

histogram::histogram(std::vector<double> upper_bounds)
    : m_bounds(std::move(upper_bounds)), m_buckets(new std::atomic<std::uint64_t>[m_bounds.size() + 1]) {
  std::sort(m_bounds.begin(), m_bounds.end());
  for (std::size_t i = 0; i <= m_bounds.size(); ++i) m_buckets[i].store(0);
}

void histogram::observe(double v) noexcept {
  const auto it = std::lower_bound(m_bounds.begin(), m_bounds.end(), v);
  m_buckets[static_cast<std::size_t>(it - m_bounds.begin())].fetch_add(1, std::memory_order_relaxed);
  m_sum.fetch_add(v, std::memory_order_relaxed);
  m_count.fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::uint64_t> histogram::bucket_counts() const {
  std::vector<std::uint64_t> out(m_bounds.size() + 1);
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = m_buckets[i].load(std::memory_order_relaxed);
  return out;
}

std::vector<double> latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
}

template <typename Metric>
Metric& family<Metric>::with(const std::vector<std::string>& label_values) {
  const std::lock_guard lock(m_mutex);
  auto& slot = m_children[label_values];
  if (!slot) {
    if constexpr (std::is_same_v<Metric, histogram>) {
      slot = std::make_unique<histogram>(m_buckets);
    } else {
      slot = std::make_unique<Metric>();
    }
  }
  return *slot;
}

template <typename Metric>
void family<Metric>::for_each(const std::function<void(const std::vector<std::string>&, const Metric&)>& fn) const {
  const std::lock_guard lock(m_mutex);
  for (const auto& [labels, m] : m_children) fn(labels, *m);
}

template class family<counter>;
template class family<gauge>;
template class family<histogram>;

family<counter>& registry::add_counter(std::string name, std::string help, std::vector<std::string> labels) {
  const std::lock_guard lock(m_mutex);
  m_order.push_back(name);
  return *m_counters.emplace_back(
      std::make_unique<family<counter>>(std::move(name), std::move(help), std::move(labels)));
}

family<gauge>& registry::add_gauge(std::string name, std::string help, std::vector<std::string> labels) {
  const std::lock_guard lock(m_mutex);
  m_order.push_back(name);
  return *m_gauges.emplace_back(std::make_unique<family<gauge>>(std::move(name), std::move(help), std::move(labels)));
}

family<histogram>& registry::add_histogram(std::string name, std::string help, std::vector<std::string> labels,
                                           std::vector<double> buckets) {
  const std::lock_guard lock(m_mutex);
  m_order.push_back(name);
  return *m_histograms.emplace_back(
      std::make_unique<family<histogram>>(std::move(name), std::move(help), std::move(labels), std::move(buckets)));
}

void registry::on_collect(std::function<void()> fn) {
  const std::lock_guard lock(m_mutex);
  m_collectors.push_back(std::move(fn));
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (const char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string label_set(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      const std::string& extra = {}) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < values.size(); ++i) {
    out += (out.empty() ? "" : ",") + names[i] + "=\"" + escape_label_value(values[i]) + "\"";
  }
  if (!extra.empty()) out += (out.empty() ? "" : ",") + extra;
  return out.empty() ? out : "{" + out + "}";
}

void header(std::ostringstream& out, const std::string& name, const std::string& help, const char* type) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

}  // namespace

std::string registry::render() const {
  std::vector<std::function<void()>> collectors;
  {
    const std::lock_guard lock(m_mutex);
    collectors = m_collectors;
  }
  for (const auto& c : collectors) c();
  const std::lock_guard lock(m_mutex);
  std::ostringstream out;
  for (const auto& name : m_order) {
    for (const auto& f : m_counters) {
      if (f->name() != name) continue;
      header(out, name, f->help(), "counter");
      f->for_each([&](const auto& labels, const counter& c) {
        out << name << label_set(f->label_names(), labels) << ' ' << format_value(c.value()) << '\n';
      });
    }
    for (const auto& f : m_gauges) {
      if (f->name() != name) continue;
      header(out, name, f->help(), "gauge");
      f->for_each([&](const auto& labels, const gauge& g) {
        out << name << label_set(f->label_names(), labels) << ' ' << format_value(g.value()) << '\n';
      });
    }
    for (const auto& f : m_histograms) {
      if (f->name() != name) continue;
      header(out, name, f->help(), "histogram");
      f->for_each([&](const auto& labels, const histogram& h) {
        const auto counts = h.bucket_counts();
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < counts.size(); ++i) {
          cumulative += counts[i];
          const std::string le = i < h.bounds().size() ? format_value(h.bounds()[i]) : "+Inf";
          out << name << "_bucket" << label_set(f->label_names(), labels, "le=\"" + le + "\"") << ' ' << cumulative
              << '\n';
        }
        out << name << "_sum" << label_set(f->label_names(), labels) << ' ' << format_value(h.sum()) << '\n';
        out << name << "_count" << label_set(f->label_names(), labels) << ' ' << cumulative << '\n';
      });
    }
  }
  return out.str();
}

}  // namespace outbox::metrics
