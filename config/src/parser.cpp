#include "interpolate.hpp"
#include "text.hpp"

#include "outbox/config/config_error.hpp"
#include "outbox/config/redact.hpp"
#include "outbox/config/schema.hpp"
#include "outbox/config/units.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>

namespace outbox::config {
namespace detail {
namespace {

struct position {
  int line = 1;
  int column = 1;
};

position at(const YAML::Mark& m) {
  if (m.is_null()) return {};
  return {m.line + 1, m.column + 1};
}

std::string backquoted(std::string_view text) { return "`" + std::string(text) + "`"; }

/// How a node the user wrote is named in an error; never shows a secret's text.
std::string describe(const YAML::Node& n, bool secret) {
  switch (n.Type()) {
    case YAML::NodeType::Scalar:
      return secret ? "a value" : backquoted(n.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

std::string expected(const key_spec& spec) {
  switch (spec.type) {
    case value_type::string:
      return "a string";
    case value_type::boolean:
      return "true or false";
    case value_type::integer:
      return "a whole number";
    case value_type::number:
      return "a number";
    case value_type::duration:
      return "a duration such as 10s";
    case value_type::size:
      return "a size such as 64MiB";
    case value_type::enumeration:
      return "one of " + quoted_list(spec.choices);
    case value_type::string_list:
      return "a list of strings, e.g. [a, b]";
    case value_type::duration_list:
      return "a list of durations, e.g. [10s, 1m]";
    case value_type::string_map:
      return "a mapping of `key: value` pairs";
    case value_type::section:
      return "a mapping of keys";
    case value_type::object_list:
      return "a list of mappings (each item starts with `- `)";
  }
  return "a value";
}

std::string range_message(const key_spec& spec) {
  constexpr auto lowest = std::numeric_limits<std::int64_t>::min();
  constexpr auto highest = std::numeric_limits<std::int64_t>::max();
  if (spec.max == highest) return "must be at least " + std::to_string(spec.min);
  if (spec.min == lowest) return "must be at most " + std::to_string(spec.max);
  return "must be between " + std::to_string(spec.min) + " and " + std::to_string(spec.max);
}

bool is_scalar_type(value_type t) noexcept {
  switch (t) {
    case value_type::string:
    case value_type::boolean:
    case value_type::integer:
    case value_type::number:
    case value_type::duration:
    case value_type::size:
    case value_type::enumeration:
      return true;
    default:
      return false;
  }
}

/// Converts one scalar's text to the key's type; the error (if any) is for people.
parsed<value> convert_text(const key_spec& spec, std::string_view text) {
  const bool secret = spec.secret_as.how == secrecy::kind::whole;
  const std::string shown = secret ? std::string("the value") : backquoted(text);
  switch (spec.type) {
    case value_type::string:
      if (spec.is_required && text.empty()) return {std::nullopt, "must not be empty"};
      return {value(std::string(text)), {}};
    case value_type::boolean:
      if (text == "true" || text == "True" || text == "TRUE") return {value(true), {}};
      if (text == "false" || text == "False" || text == "FALSE") return {value(false), {}};
      return {std::nullopt, "expected true or false, got " + shown};
    case value_type::integer: {
      const std::size_t first_digit = !text.empty() && text.front() == '-' ? 1 : 0;
      const bool digits_only =
          text.size() > first_digit && std::all_of(text.begin() + static_cast<std::ptrdiff_t>(first_digit), text.end(),
                                                   [](char c) { return c >= '0' && c <= '9'; });
      if (!digits_only) return {std::nullopt, shown + " is not a whole number"};
      std::int64_t n = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec != std::errc{} || end != text.data() + text.size()) {
        return {std::nullopt, shown + " is out of range; " + range_message(spec)};
      }
      if (n < spec.min || n > spec.max) return {std::nullopt, shown + " " + range_message(spec)};
      return {value(n), {}};
    }
    case value_type::number: {
      double d = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
      if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(d)) {
        return {std::nullopt, shown + " is not a number"};
      }
      return {value(d), {}};
    }
    case value_type::duration: {
      auto r = parse_duration(text);
      if (!r) return {std::nullopt, std::move(r.error)};
      return {value(*r.value), {}};
    }
    case value_type::size: {
      auto r = parse_size(text);
      if (!r) return {std::nullopt, std::move(r.error)};
      return {value(*r.value), {}};
    }
    case value_type::enumeration: {
      if (std::find(spec.choices.begin(), spec.choices.end(), text) != spec.choices.end()) {
        return {value(std::string(text)), {}};
      }
      std::string message = shown + " is not one of " + quoted_list(spec.choices);
      const std::string guess = closest_match(text, spec.choices);
      if (!guess.empty()) message += "; did you mean " + backquoted(guess) + "?";
      return {std::nullopt, std::move(message)};
    }
    default:
      break;
  }
  return {std::nullopt, "is not a scalar key"};
}

/// Every declared path, list items written `name[]`, for "this key belongs elsewhere" hints.
void collect_paths(const std::vector<key_spec>& specs, const std::string& prefix, std::vector<std::string>& out) {
  for (const auto& spec : specs) {
    const std::string path = prefix + spec.name;
    out.push_back(path);
    if (spec.type == value_type::section) collect_paths(spec.children, path + ".", out);
    if (spec.type == value_type::object_list) collect_paths(spec.children, path + "[].", out);
  }
}

std::string last_segment(std::string_view path) {
  const std::size_t dot = path.rfind('.');
  return std::string(dot == std::string_view::npos ? path : path.substr(dot + 1));
}

/// Counts the nodes of one document and remembers where a document of a single null is.
class node_counter final : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark&) override {
    m_nodes = 0;
    m_null.reset();
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override {
    ++m_nodes;
    m_null = mark;
  }
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { ++m_nodes; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override { ++m_nodes; }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    ++m_nodes;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
    ++m_nodes;
  }
  void OnMapEnd() override {}

  /// Where the document just read was a lone null, if it was.
  [[nodiscard]] std::optional<YAML::Mark> lone_null() const { return m_nodes == 1 ? m_null : std::nullopt; }

 private:
  int m_nodes = 0;
  std::optional<YAML::Mark> m_null;
};

/// The token yaml-cpp cannot get past, if the text has one. On a token no rule of its parser consumes, such as a
/// `,` outside [ ] or { }, yaml-cpp 0.7 (Debian 12's) reads one null document at it after another without moving
/// on, so YAML::LoadAll never returns and its memory grows without bound (yaml-cpp issue 1040). Two lone-null
/// documents at the same place in a row are that loop; this scan stops there. Throws YAML::Exception on bad YAML.
std::optional<YAML::Mark> stuck_token(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  node_counter counter;
  std::optional<YAML::Mark> previous;
  while (parser.HandleNextDocument(counter)) {
    const auto lone = counter.lone_null();
    if (lone && previous && lone->pos == previous->pos) return lone;
    previous = lone;
  }
  return std::nullopt;
}

}  // namespace

/// Walks one YAML document against a schema, collecting every problem before giving up.
class document_parser {
 public:
  document_parser(const schema& s, std::string_view file) : m_schema(s), m_file(file) {}

  values run(std::string_view text) {
    std::vector<YAML::Node> docs;
    try {
      const std::string yaml(text);
      if (const auto stuck = stuck_token(yaml)) {
        error(at(*stuck), "",
              "invalid YAML: unexpected character here (a `,` outside [ ] or { }?); remove it, or quote the value "
              "it belongs to");
        throw config_error(std::move(m_errors));
      }
      docs = YAML::LoadAll(yaml);
    } catch (const YAML::Exception& e) {
      error(at(e.mark), "", "invalid YAML: " + e.msg);
      throw config_error(std::move(m_errors));
    }
    if (docs.empty() || docs.front().IsNull()) {
      error({}, "", "the config file is empty; see docs/configuration.md for the keys it needs");
      throw config_error(std::move(m_errors));
    }
    if (docs.size() > 1) error(at(docs[1].Mark()), "", "holds more than one YAML document; keep one config per file");
    const YAML::Node& root = docs.front();
    if (!root.IsMap()) {
      std::string first = m_schema.keys.empty() ? std::string("source") : m_schema.keys.front().name;
      error(at(root.Mark()), "",
            "the top level must be a mapping of sections such as `" + first + ":`, not " + describe(root, true));
      throw config_error(std::move(m_errors));
    }
    values out;
    walk_mapping(root, m_schema.keys, scope{"", "", &out});
    for (const auto& r : m_schema.rules) {
      context ctx(out, *this);
      r.check(ctx);
    }
    if (!m_errors.empty()) {
      std::stable_sort(m_errors.begin(), m_errors.end(), [](const diagnostic& a, const diagnostic& b) {
        return a.line != b.line ? a.line < b.line : a.column < b.column;
      });
      throw config_error(std::move(m_errors));
    }
    return out;
  }

 private:
  /// Where keys of one mapping go: `display` prefixes paths in messages, `store` prefixes paths in `out`.
  struct scope {
    std::string display;
    std::string store;
    values* out;
  };

  class context final : public rule_context {
   public:
    context(const values& v, document_parser& p) : m_values(v), m_parser(p) {}
    [[nodiscard]] const values& loaded() const noexcept override { return m_values; }
    void fail(std::string_view path, std::string message) override {
      m_parser.error(m_parser.nearest(path), std::string(path), std::move(message));
    }

   private:
    const values& m_values;
    document_parser& m_parser;
  };

  void error(position where, std::string path, std::string message) {
    m_errors.push_back(diagnostic{m_file, where.line, where.column, std::move(path), std::move(message)});
  }

  /// The position of `path`, or of its closest ancestor written in the file.
  [[nodiscard]] position nearest(std::string_view path) const {
    std::string p(path);
    while (!p.empty()) {
      if (const auto it = m_marks.find(p); it != m_marks.end()) return it->second;
      const std::size_t cut = p.back() == ']' ? p.rfind('[') : p.rfind('.');
      p.resize(cut == std::string::npos ? 0 : cut);
    }
    return {};
  }

  void walk_mapping(const YAML::Node& map, const std::vector<key_spec>& specs, const scope& sc) {
    std::map<std::string, std::pair<YAML::Node, YAML::Node>, std::less<>> present;
    std::map<std::string, position, std::less<>> first_seen;
    if (map.IsMap()) {
      for (const auto& entry : map) {
        const YAML::Node& key = entry.first;
        if (!key.IsScalar()) {
          error(at(key.Mark()), sc.display, "keys must be plain names, not " + describe(key, true));
          continue;
        }
        const std::string& name = key.Scalar();
        const std::string path = sc.display + name;
        if (const auto dup = first_seen.find(name); dup != first_seen.end()) {
          error(at(key.Mark()), path,
                "duplicate key; the first is at line " + std::to_string(dup->second.line) + " (remove one)");
          continue;
        }
        first_seen.emplace(name, at(key.Mark()));
        const auto spec = std::find_if(specs.begin(), specs.end(), [&](const key_spec& s) { return s.name == name; });
        if (spec == specs.end()) {
          error(at(key.Mark()), path, unknown_key_message(name, specs));
          continue;
        }
        present.emplace(name, std::make_pair(key, entry.second));
      }
    }
    for (const auto& spec : specs) {
      if (const auto it = present.find(spec.name); it != present.end()) {
        read_present(spec, it->second.first, it->second.second, sc);
      } else {
        read_absent(spec, sc);
      }
    }
  }

  std::string unknown_key_message(const std::string& name, const std::vector<key_spec>& siblings) const {
    std::vector<std::string> names;
    names.reserve(siblings.size());
    for (const auto& s : siblings) names.push_back(s.name);
    if (const std::string guess = closest_match(name, names); !guess.empty()) {
      return "unknown key; did you mean " + backquoted(guess) + "?";
    }
    std::vector<std::string> all;
    collect_paths(m_schema.keys, "", all);
    for (const auto& path : all) {
      if (last_segment(path) == name) return "unknown key here; did you mean " + backquoted(path) + "?";
    }
    return "unknown key; the keys here are " + quoted_list(names);
  }

  void read_present(const key_spec& spec, const YAML::Node& key, const YAML::Node& node, const scope& sc) {
    const std::string path = sc.display + spec.name;
    const std::string store = sc.store + spec.name;
    m_marks[path] = at(key.Mark());
    const position where = node.IsNull() ? at(key.Mark()) : at(node.Mark());
    const bool secret = spec.secret_as.how == secrecy::kind::whole;

    if (node.IsNull() && spec.type != value_type::section) {
      read_absent(spec, sc);
      return;
    }
    if (is_scalar_type(spec.type)) {
      if (!node.IsScalar()) {
        std::string message = "expected " + expected(spec) + ", got " + describe(node, secret);
        if (node.IsMap() && node.Style() == YAML::EmitterStyle::Flow) {
          message += "; put text that starts with `{` in quotes, e.g. \"{aggregate_type}\"";
        }
        error(where, path, std::move(message));
        return;
      }
      if (auto v = read_scalar(spec, node, path)) store_checked(spec, std::move(*v), where, path, store, *sc.out);
      return;
    }
    switch (spec.type) {
      case value_type::section: {
        if (!node.IsNull() && !node.IsMap()) {
          error(where, path, "expected " + expected(spec) + ", got " + describe(node, secret));
          return;
        }
        sc.out->set(store, std::monostate{});
        walk_mapping(node, spec.children, scope{path + ".", store + ".", sc.out});
        return;
      }
      case value_type::object_list: {
        if (!node.IsSequence()) {
          error(where, path, "expected " + expected(spec) + ", got " + describe(node, secret));
          return;
        }
        std::vector<values> items;
        bool every_item_is_a_mapping = true;
        for (std::size_t i = 0; i < node.size(); ++i) {
          const YAML::Node item = node[i];
          const std::string item_path = path + "[" + std::to_string(i) + "]";
          m_marks[item_path] = at(item.Mark());
          if (!item.IsMap()) {
            std::string message = "expected a mapping of keys, got " + describe(item, secret);
            if (item.IsScalar() && !spec.children.empty()) {
              message += "; write `- " + spec.children.front().name + ": " + item.Scalar() + "`";
            }
            error(at(item.Mark()), item_path, std::move(message));
            every_item_is_a_mapping = false;
            continue;
          }
          values item_values;
          walk_mapping(item, spec.children, scope{item_path + ".", "", &item_values});
          items.push_back(std::move(item_values));
        }
        // A partial list would mislead the rules ("no tables"), so it is not stored.
        if (every_item_is_a_mapping) store_checked(spec, value(std::move(items)), where, path, store, *sc.out);
        return;
      }
      case value_type::string_list:
      case value_type::duration_list:
        read_list(spec, node, where, path, store, *sc.out);
        return;
      case value_type::string_map:
        read_map(spec, node, where, path, store, *sc.out);
        return;
      default:
        return;
    }
  }

  void read_absent(const key_spec& spec, const scope& sc) {
    const std::string path = sc.display + spec.name;
    const std::string store = sc.store + spec.name;
    if (spec.is_required) {
      error(nearest(path), path, "is required");
      return;
    }
    if (!spec.default_text) return;
    switch (spec.type) {
      case value_type::section:
        sc.out->set(store, std::monostate{});
        for (const auto& child : spec.children) read_absent(child, scope{path + ".", store + ".", sc.out});
        return;
      case value_type::object_list:
        sc.out->set(store, std::vector<values>{});
        return;
      case value_type::string_list:
        sc.out->set(store, std::vector<std::string>{});
        return;
      case value_type::duration_list:
        sc.out->set(store, std::vector<std::chrono::milliseconds>{});
        return;
      case value_type::string_map:
        sc.out->set(store, std::map<std::string, std::string>{});
        return;
      default:
        break;
    }
    auto v = convert_text(spec, *spec.default_text);
    if (!v) throw std::logic_error("the declared default of config key " + path + " is invalid: " + v.error);
    sc.out->set(store, std::move(*v.value), spec.secret_as);
  }

  /// The interpolated, converted value of one scalar node; nullopt after reporting why not.
  std::optional<value> read_scalar(const key_spec& spec, const YAML::Node& node, const std::string& path) {
    const position where = at(node.Mark());
    auto expanded = interpolate(node.Scalar());
    for (auto& e : expanded.errors) error(where, path, std::move(e));
    if (!expanded.errors.empty()) return std::nullopt;
    auto v = convert_text(spec, expanded.text);
    if (!v) {
      if (expanded.text.empty() && node.Scalar().find("${") != std::string::npos) {
        v.error += " (it comes from an empty environment variable)";
      }
      error(where, path, std::move(v.error));
      return std::nullopt;
    }
    return std::move(v.value);
  }

  void read_list(const key_spec& spec, const YAML::Node& given, position where, const std::string& path,
                 const std::string& store, values& out) {
    YAML::Node node = given;
    if (given.IsScalar()) {
      for (const auto& [name, list_text] : spec.presets) {
        if (given.Scalar() == name) node = YAML::Load(list_text);
      }
    }
    if (!node.IsSequence()) {
      if (node.IsScalar() && !spec.presets.empty()) {
        std::vector<std::string> names;
        for (const auto& p : spec.presets) names.push_back(p.first);
        error(where, path,
              "expected " + expected(spec) + " or one of " + quoted_list(names) + ", got " + describe(node, false));
        return;
      }
      error(where, path, "expected " + expected(spec) + ", got " + describe(node, false));
      return;
    }
    key_spec item_spec;
    item_spec.name = spec.name;
    item_spec.type = spec.type == value_type::string_list ? value_type::string : value_type::duration;
    std::vector<std::string> texts;
    std::vector<std::chrono::milliseconds> durations;
    bool ok = true;
    for (std::size_t i = 0; i < node.size(); ++i) {
      const YAML::Node item = node[i];
      const std::string item_path = path + "[" + std::to_string(i) + "]";
      if (!item.IsScalar()) {
        error(at(item.Mark()), item_path, "expected " + expected(item_spec) + ", got " + describe(item, false));
        ok = false;
        continue;
      }
      auto v = read_scalar(item_spec, item, item_path);
      if (!v) {
        ok = false;
      } else if (auto* text = std::get_if<std::string>(&*v)) {
        texts.push_back(std::move(*text));
      } else {
        durations.push_back(std::get<std::chrono::milliseconds>(*v));
      }
    }
    if (!ok) return;
    if (spec.type == value_type::string_list) {
      store_checked(spec, value(std::move(texts)), where, path, store, out);
    } else {
      store_checked(spec, value(std::move(durations)), where, path, store, out);
    }
  }

  void read_map(const key_spec& spec, const YAML::Node& node, position where, const std::string& path,
                const std::string& store, values& out) {
    if (!node.IsMap()) {
      error(where, path, "expected " + expected(spec) + ", got " + describe(node, false));
      return;
    }
    std::map<std::string, std::string> entries;
    std::map<std::string, position, std::less<>> first_seen;
    bool ok = true;
    for (const auto& entry : node) {
      const YAML::Node& key = entry.first;
      if (!key.IsScalar()) {
        error(at(key.Mark()), path, "keys must be plain names, not " + describe(key, true));
        ok = false;
        continue;
      }
      const std::string entry_path = path + "." + key.Scalar();
      if (const auto dup = first_seen.find(key.Scalar()); dup != first_seen.end()) {
        error(at(key.Mark()), entry_path,
              "duplicate key; the first is at line " + std::to_string(dup->second.line) + " (remove one)");
        ok = false;
        continue;
      }
      first_seen.emplace(key.Scalar(), at(key.Mark()));
      m_marks[entry_path] = at(key.Mark());  // so a rule can point at the entry itself
      const YAML::Node& v = entry.second;
      if (!v.IsScalar()) {
        error(v.IsNull() ? at(key.Mark()) : at(v.Mark()), entry_path,
              "expected a plain value, got " + describe(v, true) + "; these are flat `key: value` pairs");
        ok = false;
        continue;
      }
      key_spec text_spec;
      text_spec.name = key.Scalar();
      if (spec.secret_as.hides_entry(key.Scalar())) text_spec.secret_as = secrecy{secrecy::kind::whole, {}};
      if (auto text = read_scalar(text_spec, v, entry_path)) {
        entries.emplace(key.Scalar(), std::get<std::string>(*text));
      } else {
        ok = false;
      }
    }
    if (ok) store_checked(spec, value(std::move(entries)), where, path, store, out);
  }

  void store_checked(const key_spec& spec, value v, position where, const std::string& path, const std::string& store,
                     values& out) {
    if (spec.validate) {
      if (std::string problem = spec.validate(v); !problem.empty()) {
        error(where, path, std::move(problem));
        return;
      }
    }
    out.set(store, std::move(v), spec.secret_as);
  }

  const schema& m_schema;
  std::string m_file;
  std::vector<diagnostic> m_errors;
  std::map<std::string, position, std::less<>> m_marks;
};

}  // namespace detail

values parse_values(const schema& s, std::string_view yaml_text, std::string_view file_name) {
  return detail::document_parser(s, file_name).run(yaml_text);
}

values load_values(const schema& s, const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw config_error({diagnostic{path, 1, 1, "", "is a directory; pass the config file itself"}});
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    throw config_error({diagnostic{path, 1, 1, "", std::string("cannot open the config file: ") + std::strerror(err)}});
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_values(s, text.str(), path);
}

}  // namespace outbox::config
