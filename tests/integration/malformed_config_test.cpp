// Every configuration key written once with a wrong value: the relay's `--check` and the consumer's loader refuse
// the file, exit 2 (the relay) and name the key. The keys come from the declarations that also produce
// docs/configuration.md, so a key added later is covered without touching this test.
#include "outbox/config/config_error.hpp"
#include "outbox/config/consumer_config.hpp"
#include "outbox/config/relay_config.hpp"
#include "outbox/test/process.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace outbox::test {
namespace {

using namespace std::chrono_literals;
using config::key_spec;
using config::value_type;

/// One key of a schema by its dotted path (`source.tables[].name`), with its declaration.
struct declared_key {
  std::string path;
  const key_spec* spec;
};

void collect(const std::vector<key_spec>& keys, const std::string& prefix, std::vector<declared_key>& out) {
  for (const auto& k : keys) {
    const std::string path = prefix.empty() ? k.name : prefix + "." + k.name;
    out.push_back({path, &k});
    if (k.type == value_type::section) collect(k.children, path, out);
    if (k.type == value_type::object_list) collect(k.children, path + "[]", out);
  }
}

std::vector<declared_key> keys_of(const config::schema& s) {
  std::vector<declared_key> out;
  collect(s.keys, "", out);
  return out;
}

/// Values that no key of type `k` accepts: a wrong type, then an out-of-range number or an unknown name.
std::vector<nlohmann::json> wrong_values(const key_spec& k) {
  const nlohmann::json a_map = {{"wrong", 1}};
  switch (k.type) {
    case value_type::string:
    case value_type::string_list:
      return {a_map};
    case value_type::boolean:
      return {"maybe", a_map};
    case value_type::integer: {
      std::vector<nlohmann::json> v{"many", a_map};
      if (k.max != std::numeric_limits<std::int64_t>::max()) v.emplace_back(k.max + 1);
      if (k.min != std::numeric_limits<std::int64_t>::min()) v.emplace_back(k.min - 1);
      return v;
    }
    case value_type::number:
      return {"lots", a_map};
    case value_type::duration:
      return {"10 parsecs", a_map};
    case value_type::size:
      return {"12 zorkbytes", a_map};
    case value_type::enumeration:
      return {"no_such_choice", a_map};
    case value_type::duration_list:
      return {nlohmann::json::array({"10 parsecs"}), a_map};
    case value_type::string_map:
      return {nlohmann::json::array({1, 2})};
    case value_type::section:
      return {"not a section"};
    case value_type::object_list:
      return {"not a list"};
  }
  return {};
}

/// `doc` with the key at `path` set to `v`; list items are the list's first item, missing sections are made.
nlohmann::json with_value(nlohmann::json doc, const std::string& path, const nlohmann::json& v) {
  nlohmann::json* at = &doc;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool item = part.ends_with("[]");
    if (item) part.resize(part.size() - 2);
    if (dot == std::string::npos && !item) {
      (*at)[part] = v;
      return doc;
    }
    at = &(*at)[part];
    if (item) {
      if (!at->is_array() || at->empty()) *at = nlohmann::json::array({nlohmann::json::object()});
      at = &(*at)[0];
    } else if (!at->is_object()) {
      *at = nlohmann::json::object();
    }
    start = dot + 1;
  }
}

/// The path as an error message names it: the first list item is `[0]`.
std::string as_named(std::string path) {
  for (std::size_t p = path.find("[]"); p != std::string::npos; p = path.find("[]", p)) path.replace(p, 2, "[0]");
  return path;
}

/// Writes `doc` (JSON is YAML) to a file of this test and returns its path.
std::string write(const nlohmann::json& doc, const std::string& name) {
  const std::string path = scratch_dir("malformed_config") + "/" + name;
  std::ofstream(path) << doc.dump(2) << "\n";
  return path;
}

const nlohmann::json k_relay = {
    {"source",
     {{"dsn", "host=127.0.0.1 dbname=outbox"},
      {"slot", "outbox_relay"},
      {"publication", "outbox_pub"},
      {"tables", {{{"name", "public.outbox"}}}},
      {"logical_messages", {{"prefix", "outbox"}}}}},
    {"sink", {{"brokers", "127.0.0.1:9092"}}},
};

const nlohmann::json k_consumer = {
    {"consumer", {{"brokers", "127.0.0.1:9092"}, {"group_id", "ledger"}, {"topics", {"payments"}}}},
};

TEST(malformed_config, the_valid_files_load) {
  EXPECT_NO_THROW(config::load_relay_config(write(k_relay, "relay.yaml")));
  EXPECT_NO_THROW(config::load_consumer_config(write(k_consumer, "consumer.yaml")));
}

TEST(malformed_config, every_relay_key_wrong_once_makes_check_exit_2_naming_the_key) {
  const auto keys = keys_of(config::relay_schema());
  ASSERT_GT(keys.size(), 30U);
  int files = 0;
  for (const auto& k : keys) {
    for (const auto& v : wrong_values(*k.spec)) {
      const std::string file = write(with_value(k_relay, k.path, v), "relay-wrong.yaml");
      const auto r = run_command({OUTBOX_RELAY_BIN, "--config", file, "--check"}, 30s);
      EXPECT_EQ(r.exit_code, 2) << k.path << " = " << v.dump() << "\n" << r.output;
      EXPECT_THAT(r.output, ::testing::HasSubstr(as_named(k.path))) << k.path << " = " << v.dump();
      ++files;
    }
  }
  RecordProperty("files", files);
}

TEST(malformed_config, every_consumer_key_wrong_once_is_refused_naming_the_key) {
  const config::schema schema = config::consumer_schema();
  const auto keys = keys_of(schema);
  ASSERT_GT(keys.size(), 30U);
  for (const auto& k : keys) {
    for (const auto& v : wrong_values(*k.spec)) {
      const std::string file = write(with_value(k_consumer, k.path, v), "consumer-wrong.yaml");
      try {
        config::load_consumer_config(file);
        ADD_FAILURE() << k.path << " = " << v.dump() << " was accepted";
      } catch (const config::config_error& e) {
        EXPECT_THAT(e.what(), ::testing::HasSubstr(as_named(k.path))) << k.path << " = " << v.dump();
      }
    }
  }
}

}  // namespace
}  // namespace outbox::test
