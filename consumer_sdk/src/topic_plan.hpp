#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace outbox::consumer::detail {

/// What a topic this group reads is to it.
enum class topic_role {
  source,  ///< a topic the group subscribed to (by name or by `^regex`)
  tier,    ///< one of its retry tiers: `<source>.<group>.retry.<delay>`
  replay,  ///< its replay topic: `<source>.<group>.replay`
};

/// A topic's role, and the source topic it belongs to.
struct topic_entry {
  topic_role role = topic_role::source;
  std::string source;
  std::chrono::milliseconds delay{0};  ///< a tier's delay
  bool from_pattern = false;           ///< a source matched by a `^regex`
};

/// The topics of one consumer group: its sources (named, or matched by `^regex` patterns against the cluster's
/// topics), and for each source the tiers (one per distinct delay), the replay topic and the dead-letter topic.
/// A pattern never matches a derived topic (any group's `.retry.<delay>`, `.replay` or `.dlq`, or this group's
/// dead-letter template applied to any topic), so a group never reads a tier or dead letter as a source.
class topic_plan {
 public:
  /// Throws outbox_error("config") when a pattern does not compile, or a named topic is one this group derives
  /// (its own tier, replay or dead-letter topic).
  topic_plan(std::string group, const std::vector<std::string>& topics,
             const std::vector<std::chrono::milliseconds>& tiers, std::string dlq_template);
  ~topic_plan();
  topic_plan(const topic_plan&) = delete;
  topic_plan& operator=(const topic_plan&) = delete;

  [[nodiscard]] bool has_patterns() const noexcept { return !m_patterns.empty(); }
  /// Matches the patterns against the cluster's topics; true when the sources changed. Named topics are
  /// sources whether or not they exist yet.
  bool resolve(const std::vector<std::string>& cluster_topics);
  /// The sources, named first, then matched ones in name order.
  [[nodiscard]] std::vector<std::string> sources() const;
  /// The topics to subscribe to: every source, and the tiers and replay topic of each `ready` one (those whose
  /// derived topics exist).
  [[nodiscard]] std::vector<std::string> subscription(const std::set<std::string>& ready) const;
  /// What `topic` is to this group, or nullptr when nothing.
  [[nodiscard]] const topic_entry* role_of(const std::string& topic) const;

  /// The distinct delays of retry.topics, in list order.
  [[nodiscard]] const std::vector<std::chrono::milliseconds>& delays() const noexcept { return m_delays; }
  [[nodiscard]] std::string tier_topic(const std::string& source, std::chrono::milliseconds delay) const;
  [[nodiscard]] std::string replay_topic(const std::string& source) const;
  [[nodiscard]] std::string dlq_topic(const std::string& source) const;

 private:
  struct pattern;
  void add_derived(const std::string& source, bool from_pattern);
  [[nodiscard]] bool derived_name(const std::string& topic, const std::vector<std::string>& cluster_topics) const;

  std::string m_group;
  std::vector<std::string> m_named;
  std::vector<std::unique_ptr<pattern>> m_patterns;
  std::vector<std::chrono::milliseconds> m_delays;
  std::string m_dlq_template;
  std::vector<std::string> m_matched;
  std::map<std::string, topic_entry> m_roles;
};

}  // namespace outbox::consumer::detail
