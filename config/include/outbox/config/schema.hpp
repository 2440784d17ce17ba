#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace outbox::config {

class values;

namespace detail {
class document_parser;
}

/// The kind of value a key holds: decides how its text is read, checked and documented.
enum class value_type {
  string,
  boolean,
  integer,
  number,
  duration,
  size,
  enumeration,
  string_list,
  duration_list,
  string_map,
  section,
  object_list,
};

/// The name used in error messages and the docs, e.g. "duration", "list of strings".
std::string_view to_string(value_type t) noexcept;

/// A loaded value. Enumerations keep their text; sizes are bytes (`uint64_t`); a present section is `monostate`.
using value = std::variant<std::monostate, std::string, bool, std::int64_t, double, std::chrono::milliseconds,
                           std::uint64_t, std::vector<std::string>, std::vector<std::chrono::milliseconds>,
                           std::map<std::string, std::string>, std::vector<values>>;

/// How a key's value is shown when a config is printed (`--check`, dumps); declared on the key.
struct secrecy {
  enum class kind : std::uint8_t {
    none,     ///< shown as is (passwords inside DSNs and URLs are still hidden)
    whole,    ///< the whole value is a secret
    entries,  ///< a map whose entries named by `patterns` are secrets
  };
  kind how = kind::none;
  std::vector<std::string> patterns;  ///< map entry names; `*` matches any run of characters

  /// Whether the map entry `name` is a secret under this declaration.
  [[nodiscard]] bool hides_entry(std::string_view name) const noexcept;
};

/// Every key of a loaded file (or of one list item) after defaults, by dotted path, in declaration order.
class values {
 public:
  /// The value at `path`; throws std::logic_error if it is absent or of another type (a bug in the caller).
  template <typename T>
  [[nodiscard]] const T& get(std::string_view path) const;

  /// The value at `path`, or nullptr when the key was neither given nor defaulted.
  template <typename T>
  [[nodiscard]] const T* find(std::string_view path) const;

  [[nodiscard]] bool contains(std::string_view path) const noexcept { return lookup(path) != nullptr; }
  [[nodiscard]] const std::vector<std::pair<std::string, value>>& entries() const noexcept { return m_entries; }
  /// The secrecy declared on the key of entries()[i].
  [[nodiscard]] const secrecy& secrecy_of(std::size_t i) const noexcept { return m_secrecy[i]; }

  friend bool operator==(const values& a, const values& b) { return a.m_entries == b.m_entries; }

 private:
  friend class detail::document_parser;

  [[nodiscard]] const value* lookup(std::string_view path) const noexcept;
  void set(std::string path, value v, secrecy s = {});

  std::vector<std::pair<std::string, value>> m_entries;
  std::vector<secrecy> m_secrecy;  ///< parallel to m_entries
};

/// Checks one value: returns an empty string when it is fine, else what is wrong and how to fix it.
using validator = std::function<std::string(const value&)>;

/// One declared key: all the loader, `dump_redacted` and the docs know about it.
struct key_spec {
  std::string name;
  value_type type = value_type::string;
  std::optional<std::string> default_text;  ///< scalars as written in YAML; "[]" or "{}" for lists, maps, sections
  bool is_required = false;
  std::string unit;
  std::string description;
  std::vector<std::string> choices;  ///< the accepted texts of an enumeration
  std::int64_t min = std::numeric_limits<std::int64_t>::min();
  std::int64_t max = std::numeric_limits<std::int64_t>::max();
  validator validate;
  std::string constraint;          ///< what `validate` enforces, in a few words for the docs
  std::vector<key_spec> children;  ///< keys of a section, or of each item of an object list
  secrecy secret_as;               ///< how the value is redacted when printed
  /// A list key may be written as one of these names instead of a list: (name, the list it stands for).
  std::vector<std::pair<std::string, std::string>> presets;

  key_spec defaults(std::string text) &&;
  key_spec required() &&;
  /// A section or key that stays absent (no defaults filled in) unless the file has it.
  key_spec optional() &&;
  key_spec in_unit(std::string u) &&;
  key_spec describe(std::string text) &&;
  key_spec between(std::int64_t lo, std::int64_t hi) &&;
  key_spec check(validator v, std::string what = {}) &&;
  /// The value is a secret: never printed, never quoted in an error message.
  key_spec secret() &&;
  /// A map whose entries matching `patterns` (`*` = any characters, e.g. `sasl.*`) are secrets.
  key_spec secret_entries(std::vector<std::string> patterns) &&;
  /// Lets a list key be written as `preset_name`, standing for `list_text` (YAML flow text such as `[15s, 30s]`).
  key_spec preset(std::string preset_name, std::string list_text) &&;
};

key_spec string_key(std::string name);
key_spec bool_key(std::string name);
key_spec int_key(std::string name);
key_spec number_key(std::string name);
key_spec duration_key(std::string name);
key_spec size_key(std::string name);
key_spec enum_key(std::string name, std::vector<std::string> choices);
key_spec string_list_key(std::string name);
key_spec duration_list_key(std::string name);
/// A flat map of text to text, e.g. librdkafka `properties`; scalar values keep their text.
key_spec string_map_key(std::string name);
/// A nested mapping; absent means every child takes its default.
key_spec section(std::string name, std::vector<key_spec> children);
/// A list of mappings that all follow `item_keys`.
key_spec object_list_key(std::string name, std::vector<key_spec> item_keys);

/// What a cross-key rule sees: the loaded values, and where to report a problem.
class rule_context {
 public:
  virtual ~rule_context() = default;
  [[nodiscard]] virtual const values& loaded() const noexcept = 0;
  /// Reports `message` at the line of `path`, or of its nearest ancestor present in the file.
  virtual void fail(std::string_view path, std::string message) = 0;
};

/// A check that spans keys; `description` goes into the docs.
struct rule {
  std::string description;
  std::function<void(rule_context&)> check;
};

/// A whole file's declaration.
struct schema {
  std::string title;
  std::vector<key_spec> keys;
  std::vector<rule> rules;
};

/// Parses and checks `yaml_text` against `s`; throws config_error listing every problem in the file.
values parse_values(const schema& s, std::string_view yaml_text, std::string_view file_name);

/// Reads `path` and parses it like parse_values; an unreadable file is a config_error too.
values load_values(const schema& s, const std::string& path);

/// The values as YAML in declaration order, with every value declared secret (and every password inside a DSN or
/// URL) replaced by `*****`.
std::string dump_redacted(const values& v);

template <typename T>
const T* values::find(std::string_view path) const {
  const value* v = lookup(path);
  if (v == nullptr) return nullptr;
  const T* typed = std::get_if<T>(v);
  if (typed == nullptr) throw std::logic_error("config key " + std::string(path) + " is read with the wrong type");
  return typed;
}

template <typename T>
const T& values::get(std::string_view path) const {
  const T* typed = find<T>(path);
  if (typed == nullptr) throw std::logic_error("config key " + std::string(path) + " has no value");
  return *typed;
}

}  // namespace outbox::config
