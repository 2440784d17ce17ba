#include "outbox/config/redact.hpp"
#include "outbox/config/schema.hpp"
#include "outbox/config/units.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <charconv>

namespace outbox::config {
namespace {

constexpr std::string_view k_hidden = "*****";

std::string shown(bool secret, const std::string& text) {
  if (secret && !text.empty()) return std::string(k_hidden);
  return redact_credentials(text);
}

std::string number_text(double d) {
  std::array<char, 32> buf{};
  const auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), d);
  return ec == std::errc{} ? std::string(buf.data(), end) : std::to_string(d);
}

YAML::Node to_node(const values& v);

bool has_children(const values& v, const std::string& section_path) {
  const std::string prefix = section_path + ".";
  return std::any_of(v.entries().begin(), v.entries().end(),
                     [&](const auto& entry) { return entry.first.starts_with(prefix); });
}

/// The YAML node for one value, redacted as its key declares.
YAML::Node to_node(const secrecy& secret, const value& v) {
  return std::visit(
      [&](const auto& x) -> YAML::Node {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::monostate>) {
          return YAML::Node(YAML::NodeType::Map);
        } else if constexpr (std::is_same_v<T, std::string>) {
          return YAML::Node(shown(secret.how == secrecy::kind::whole, x));
        } else if constexpr (std::is_same_v<T, bool>) {
          return YAML::Node(x ? "true" : "false");
        } else if constexpr (std::is_same_v<T, std::int64_t>) {
          return YAML::Node(std::to_string(x));
        } else if constexpr (std::is_same_v<T, double>) {
          return YAML::Node(number_text(x));
        } else if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
          return YAML::Node(format_duration(x));
        } else if constexpr (std::is_same_v<T, std::uint64_t>) {
          return YAML::Node(format_size(x));
        } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          YAML::Node seq(YAML::NodeType::Sequence);
          seq.SetStyle(YAML::EmitterStyle::Flow);
          for (const auto& s : x) seq.push_back(shown(secret.how == secrecy::kind::whole, s));
          return seq;
        } else if constexpr (std::is_same_v<T, std::vector<std::chrono::milliseconds>>) {
          YAML::Node seq(YAML::NodeType::Sequence);
          seq.SetStyle(YAML::EmitterStyle::Flow);
          for (const auto d : x) seq.push_back(format_duration(d));
          return seq;
        } else if constexpr (std::is_same_v<T, std::map<std::string, std::string>>) {
          YAML::Node map(YAML::NodeType::Map);
          if (x.empty()) map.SetStyle(YAML::EmitterStyle::Flow);
          for (const auto& [k, s] : x) map[k] = shown(secret.hides_entry(k), s);
          return map;
        } else {
          YAML::Node seq(YAML::NodeType::Sequence);
          if (x.empty()) seq.SetStyle(YAML::EmitterStyle::Flow);
          for (const auto& item : x) seq.push_back(to_node(item));
          return seq;
        }
      },
      v);
}

YAML::Node to_node(const values& v) {
  YAML::Node root(YAML::NodeType::Map);
  for (std::size_t i = 0; i < v.entries().size(); ++i) {
    const auto& [path, val] = v.entries()[i];
    YAML::Node parent = root;
    std::size_t start = 0;
    for (std::size_t dot = path.find('.'); dot != std::string::npos; dot = path.find('.', start)) {
      // reset() rebinds the handle; operator= would overwrite the node it points at.
      parent.reset(parent[path.substr(start, dot - start)]);
      start = dot + 1;
    }
    const std::string key = path.substr(start);
    YAML::Node node = to_node(v.secrecy_of(i), val);
    if (std::holds_alternative<std::monostate>(val) && !has_children(v, path)) node.SetStyle(YAML::EmitterStyle::Flow);
    parent[key] = node;
  }
  return root;
}

}  // namespace

std::string dump_redacted(const values& v) {
  YAML::Emitter out;
  out << to_node(v);
  return std::string(out.c_str()) + "\n";
}

}  // namespace outbox::config
