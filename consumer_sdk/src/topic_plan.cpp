#include "topic_plan.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/log.hpp"
#include "outbox/base/record_format.hpp"

#include <regex.h>

#include <algorithm>
#include <regex>

namespace outbox::consumer::detail {

namespace rf = record_format;

/// A `^regex` subscription, compiled as librdkafka compiles it on Linux (POSIX extended).
struct topic_plan::pattern {
  std::string text;
  regex_t re{};

  explicit pattern(std::string t) : text(std::move(t)) {
    if (const int rc = regcomp(&re, text.c_str(), REG_EXTENDED | REG_NOSUB); rc != 0) {
      char why[256];
      regerror(rc, &re, why, sizeof why);
      throw outbox_error("config", "consumer.topics: `" + text + "` is not a valid regular expression: " + why);
    }
  }
  ~pattern() { regfree(&re); }
  pattern(const pattern&) = delete;
  pattern& operator=(const pattern&) = delete;

  [[nodiscard]] bool matches(const std::string& topic) const { return regexec(&re, topic.c_str(), 0, nullptr, 0) == 0; }
};

topic_plan::topic_plan(std::string group, const std::vector<std::string>& topics,
                       const std::vector<std::chrono::milliseconds>& tiers, std::string dlq_template)
    : m_group(std::move(group)), m_dlq_template(std::move(dlq_template)) {
  for (const auto d : tiers) {
    if (std::find(m_delays.begin(), m_delays.end(), d) == m_delays.end()) m_delays.push_back(d);
  }
  for (const auto& t : topics) {
    if (!t.empty() && t.front() == '^') {
      m_patterns.push_back(std::make_unique<pattern>(t));
    } else if (std::find(m_named.begin(), m_named.end(), t) == m_named.end()) {
      m_named.push_back(t);
    }
  }
  for (const auto& t : m_named) {
    for (const auto& other : m_named) {
      const bool tier =
          std::any_of(m_delays.begin(), m_delays.end(), [&](auto d) { return tier_topic(other, d) == t; });
      if (tier || replay_topic(other) == t) {
        throw outbox_error("config", "consumer.topics: `" + t + "` is a " + (tier ? "retry tier" : "replay topic") +
                                         " of `" + other + "` for this group; the SDK reads it on its own");
      }
      if (dlq_topic(other) == t) {
        throw outbox_error("config", "consumer.topics: `" + t + "` is this group's dead-letter topic of `" + other +
                                         "`; read dead letters with another consumer group (or outboxctl dlq)");
      }
    }
  }
  for (const auto& t : m_named) add_derived(t, false);
}

topic_plan::~topic_plan() = default;

void topic_plan::add_derived(const std::string& source, bool from_pattern) {
  m_roles.insert_or_assign(source, topic_entry{topic_role::source, source, {}, from_pattern});
  for (const auto d : m_delays) m_roles.emplace(tier_topic(source, d), topic_entry{topic_role::tier, source, d, false});
  m_roles.emplace(replay_topic(source), topic_entry{topic_role::replay, source, {}, false});
}

bool topic_plan::derived_name(const std::string& topic, const std::vector<std::string>& cluster_topics) const {
  // Any group's derived topics in the default spelling.
  static const std::regex k_derived(R"(\.(retry\.[0-9]+(ms|s|m|h|d)|replay|dlq)$)");
  if (std::regex_search(topic, k_derived)) return true;
  // This group's dead-letter template, whatever its spelling, applied to any topic.
  return std::any_of(cluster_topics.begin(), cluster_topics.end(),
                     [&](const std::string& t) { return t != topic && dlq_topic(t) == topic; });
}

bool topic_plan::resolve(const std::vector<std::string>& cluster_topics) {
  if (m_patterns.empty()) return false;
  std::vector<std::string> matched;
  for (const auto& t : cluster_topics) {
    if (std::find(m_named.begin(), m_named.end(), t) != m_named.end()) continue;
    const bool hit = std::any_of(m_patterns.begin(), m_patterns.end(), [&](const auto& p) { return p->matches(t); });
    if (!hit) continue;
    if (derived_name(t, cluster_topics)) {
      if (std::find(m_matched.begin(), m_matched.end(), t) == m_matched.end()) {
        log::debug("consumer", "a pattern matches a retry, replay or dead-letter topic: not read as a source",
                   {{"topic", t}});
      }
      continue;
    }
    matched.push_back(t);
  }
  std::sort(matched.begin(), matched.end());
  if (matched == m_matched) return false;
  m_matched = std::move(matched);
  std::erase_if(m_roles, [](const auto& kv) { return kv.second.from_pattern || kv.second.role != topic_role::source; });
  for (const auto& t : m_named) add_derived(t, false);
  for (const auto& t : m_matched) add_derived(t, true);
  return true;
}

std::vector<std::string> topic_plan::sources() const {
  std::vector<std::string> out = m_named;
  out.insert(out.end(), m_matched.begin(), m_matched.end());
  return out;
}

std::vector<std::string> topic_plan::subscription(const std::set<std::string>& ready) const {
  std::vector<std::string> out;
  for (const auto& s : sources()) {
    out.push_back(s);
    if (!ready.contains(s)) continue;
    for (const auto d : m_delays) out.push_back(tier_topic(s, d));
    out.push_back(replay_topic(s));
  }
  return out;
}

const topic_entry* topic_plan::role_of(const std::string& topic) const {
  const auto it = m_roles.find(topic);
  return it == m_roles.end() ? nullptr : &it->second;
}

std::string topic_plan::tier_topic(const std::string& source, std::chrono::milliseconds delay) const {
  return rf::retry_topic_name(source, m_group, delay);
}

std::string topic_plan::replay_topic(const std::string& source) const { return rf::replay_topic_name(source, m_group); }

std::string topic_plan::dlq_topic(const std::string& source) const {
  return rf::dead_letter_topic_name(m_dlq_template, source, m_group);
}

}  // namespace outbox::consumer::detail
