#include "text.hpp"

#include <algorithm>

namespace outbox::config::detail {

std::size_t edit_distance(std::string_view a, std::string_view b) {
  // Optimal string alignment: Levenshtein plus adjacent transpositions, the most common typo.
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  constexpr std::size_t min_prefix = 3;
  const std::size_t limit = std::max<std::size_t>(1, word.size() / 3);
  std::string best;
  std::size_t best_distance = limit + 1;
  for (const auto& candidate : candidates) {
    const std::size_t dist = edit_distance(word, candidate);
    if (dist < best_distance && dist < candidate.size()) {
      best = candidate;
      best_distance = dist;
    }
  }
  if (!best.empty()) return best;
  // A shortened or lengthened key ("warning" for "warn", "heartbeat" for "heartbeat_interval").
  for (const auto& candidate : candidates) {
    const std::string_view shorter = candidate.size() < word.size() ? std::string_view(candidate) : word;
    const std::string_view longer = candidate.size() < word.size() ? word : std::string_view(candidate);
    if (shorter.size() >= min_prefix && longer.starts_with(shorter)) return candidate;
  }
  return {};
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ", ";
    out += "`" + item + "`";
  }
  return out;
}

}  // namespace outbox::config::detail
