#include "outbox/config/schema.hpp"

namespace outbox::config {
namespace {

key_spec make(std::string name, value_type type) {
  key_spec k;
  k.name = std::move(name);
  k.type = type;
  return k;
}

}  // namespace

std::string_view to_string(value_type t) noexcept {
  switch (t) {
    case value_type::string:
      return "string";
    case value_type::boolean:
      return "bool";
    case value_type::integer:
      return "int";
    case value_type::number:
      return "number";
    case value_type::duration:
      return "duration";
    case value_type::size:
      return "size";
    case value_type::enumeration:
      return "enum";
    case value_type::string_list:
      return "list of strings";
    case value_type::duration_list:
      return "list of durations";
    case value_type::string_map:
      return "map of strings";
    case value_type::section:
      return "section";
    case value_type::object_list:
      return "list of sections";
  }
  return "string";
}

const value* values::lookup(std::string_view path) const noexcept {
  for (const auto& [key, v] : m_entries) {
    if (key == path) return &v;
  }
  return nullptr;
}

void values::set(std::string path, value v, secrecy s) {
  m_entries.emplace_back(std::move(path), std::move(v));
  m_secrecy.push_back(std::move(s));
}

namespace {

/// Glob match with `*` only, case-insensitive (librdkafka property names are lower case anyway).
bool glob_match(std::string_view pattern, std::string_view text) noexcept {
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star = std::string_view::npos;
  std::size_t resume = 0;
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.size() && lower(pattern[p]) == lower(text[t])) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace

bool secrecy::hides_entry(std::string_view name) const noexcept {
  if (how == kind::whole) return true;
  if (how != kind::entries) return false;
  for (const auto& pat : patterns) {
    if (glob_match(pat, name)) return true;
  }
  return false;
}

key_spec key_spec::secret() && {
  secret_as = secrecy{secrecy::kind::whole, {}};
  return std::move(*this);
}

key_spec key_spec::secret_entries(std::vector<std::string> patterns) && {
  secret_as = secrecy{secrecy::kind::entries, std::move(patterns)};
  return std::move(*this);
}

key_spec key_spec::defaults(std::string text) && {
  default_text = std::move(text);
  is_required = false;
  return std::move(*this);
}

key_spec key_spec::required() && {
  default_text.reset();
  is_required = true;
  return std::move(*this);
}

key_spec key_spec::optional() && {
  default_text.reset();
  is_required = false;
  return std::move(*this);
}

key_spec key_spec::in_unit(std::string u) && {
  unit = std::move(u);
  return std::move(*this);
}

key_spec key_spec::describe(std::string text) && {
  description = std::move(text);
  return std::move(*this);
}

key_spec key_spec::between(std::int64_t lo, std::int64_t hi) && {
  min = lo;
  max = hi;
  return std::move(*this);
}

key_spec key_spec::check(validator v, std::string what) && {
  validate = std::move(v);
  constraint = std::move(what);
  return std::move(*this);
}

key_spec key_spec::preset(std::string preset_name, std::string list_text) && {
  presets.emplace_back(std::move(preset_name), std::move(list_text));
  return std::move(*this);
}

key_spec string_key(std::string name) { return make(std::move(name), value_type::string); }
key_spec bool_key(std::string name) { return make(std::move(name), value_type::boolean); }
key_spec int_key(std::string name) { return make(std::move(name), value_type::integer); }
key_spec number_key(std::string name) { return make(std::move(name), value_type::number); }
key_spec duration_key(std::string name) { return make(std::move(name), value_type::duration); }
key_spec size_key(std::string name) { return make(std::move(name), value_type::size); }

key_spec enum_key(std::string name, std::vector<std::string> choices) {
  key_spec k = make(std::move(name), value_type::enumeration);
  k.choices = std::move(choices);
  return k;
}

key_spec string_list_key(std::string name) { return make(std::move(name), value_type::string_list).defaults("[]"); }
key_spec duration_list_key(std::string name) { return make(std::move(name), value_type::duration_list).defaults("[]"); }
key_spec string_map_key(std::string name) { return make(std::move(name), value_type::string_map).defaults("{}"); }

key_spec section(std::string name, std::vector<key_spec> children) {
  key_spec k = make(std::move(name), value_type::section).defaults("{}");
  k.children = std::move(children);
  return k;
}

key_spec object_list_key(std::string name, std::vector<key_spec> item_keys) {
  key_spec k = make(std::move(name), value_type::object_list).defaults("[]");
  k.children = std::move(item_keys);
  return k;
}

}  // namespace outbox::config
