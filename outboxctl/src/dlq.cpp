// outboxctl dlq list | show | replay: read a dead-letter topic and send its records back.
#include "commands.hpp"
#include "dlq_kafka.hpp"
#include "dlq_record.hpp"
#include "outbox/base/record_format.hpp"
#include "outbox/base/text.hpp"
#include "outbox/kafka/client.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>
#include <tuple>

namespace outbox::ctl {
namespace {

using clock = std::chrono::steady_clock;

constexpr const char* k_dlq_usage =
    "usage: outboxctl dlq list   --brokers B --topic T.dlq [filters] [--json]\n"
    "       outboxctl dlq show   --brokers B --topic T.dlq --partition P --offset O [--json]\n"
    "       outboxctl dlq replay --brokers B --topic T.dlq [filters] [--to TOPIC] [--rate N/s] [--limit N]\n"
    "                            [--dedupe-retention D] [--force] [--all-copies] [--dry-run]\n"
    "filters: [--since TIME] [--until TIME] [--key K] [--event-id ID] [--error-contains S]\n"
    "         [--partition P] [--offset O]\n"
    "Kafka:   [--property KEY=VALUE]... [--kafka-config FILE]   librdkafka settings (security.protocol, sasl.*,\n"
    "         ssl.*); FILE holds KEY=VALUE lines; --property wins; secret values are never printed\n"
    "TIME is RFC 3339 (2026-11-23T10:00:00Z) or a duration ago (90s, 15m, 2h, 7d)\n";

/// The SDK's default `dedupe.retention`: older dead letters are refused by replay unless --force.
constexpr std::int64_t k_default_dedupe_retention_ms = std::int64_t{7} * 86'400'000;
/// The slowest --rate: one record every 100 s.
constexpr double k_min_rate = 0.01;

/// A command line the command cannot run; exit code 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct dlq_options {
  std::string brokers;
  std::string topic;
  kafka_properties properties;
  dlq_filter filter;
  bool json = false;
  std::optional<std::string> to;
  std::optional<double> rate;
  std::optional<std::int64_t> limit;
  std::int64_t dedupe_retention_ms = k_default_dedupe_retention_ms;
  bool force = false;
  bool all_copies = false;
  bool dry_run = false;
};

/// `KEY=VALUE` of --property, or of one line of --kafka-config (`where` names it in errors).
std::pair<std::string, std::string> property(const std::string& text, const std::string& where) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) throw usage_error(where + ": expected KEY=VALUE, e.g. security.protocol=SSL");
  return {text.substr(0, eq), text.substr(eq + 1)};
}

/// The KEY=VALUE lines of a librdkafka properties file; `#` starts a comment line.
kafka_properties read_kafka_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw usage_error("--kafka-config: cannot read " + path);
  kafka_properties out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t\r");
    auto kv = property(line.substr(first, last - first + 1), path + ":" + std::to_string(n));
    const auto key_end = kv.first.find_last_not_of(" \t");
    kv.first.resize(key_end + 1);
    const auto value_start = kv.second.find_first_not_of(" \t");
    kv.second = value_start == std::string::npos ? "" : kv.second.substr(value_start);
    out.push_back(std::move(kv));
  }
  return out;
}

std::int64_t parse_integer(const std::string& flag, const std::string& text, std::int64_t min) {
  const auto v = parse_int64(text);
  if (!v || *v < min) {
    throw usage_error(flag + ": '" + text + "' is not " + (min > 0 ? "a positive" : "a non-negative") + " integer");
  }
  return *v;
}

double parse_rate(const std::string& text) {
  const auto slash = text.find('/');
  const std::string number = text.substr(0, slash);
  double v = 0;
  const auto* end = number.data() + number.size();
  const auto [p, ec] = std::from_chars(number.data(), end, v);
  if (slash == std::string::npos || text.substr(slash) != "/s" || number.empty() || ec != std::errc() || p != end ||
      !(v > 0)) {
    throw usage_error("--rate: '" + text + "' is not a rate like 50/s (records per second, more than 0)");
  }
  if (v < k_min_rate) throw usage_error("--rate: '" + text + "' is too slow; the slowest is 0.01/s");
  return v;
}

dlq_options parse_options(const std::string& command, const std::vector<std::string>& args) {
  static const std::set<std::string> k_common = {"--brokers", "--topic", "--property", "--kafka-config"};
  static const std::set<std::string> k_filters = {"--since",          "--until",     "--key",   "--event-id",
                                                  "--error-contains", "--partition", "--offset"};
  static const std::map<std::string, std::set<std::string>> k_own = {
      {"list", {"--json"}},
      {"show", {"--partition", "--offset", "--json"}},
      {"replay", {"--to", "--rate", "--limit", "--dry-run", "--force", "--all-copies", "--dedupe-retention"}},
  };
  std::set<std::string> allowed = k_common;
  allowed.insert(k_own.at(command).begin(), k_own.at(command).end());
  if (command != "show") allowed.insert(k_filters.begin(), k_filters.end());
  kafka_properties from_file;
  kafka_properties from_flags;
  const auto now = std::chrono::system_clock::now();
  dlq_options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::optional<std::string> inline_value;
    if (const auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag.resize(eq);
    }
    if (allowed.count(flag) == 0) {
      throw usage_error(flag.rfind("--", 0) == 0 ? "unknown flag '" + flag + "' for dlq " + command
                                                 : "unexpected argument '" + flag + "'");
    }
    if (flag == "--json" || flag == "--dry-run" || flag == "--force" || flag == "--all-copies") {
      if (inline_value) throw usage_error(flag + " takes no value");
      (flag == "--json" ? o.json : flag == "--dry-run" ? o.dry_run : flag == "--force" ? o.force : o.all_copies) = true;
      continue;
    }
    std::string value;
    if (inline_value) {
      value = *inline_value;
    } else if (i + 1 < args.size() && !(args[i + 1].rfind("--", 0) == 0 && args[i + 1].size() > 2)) {
      value = args[++i];
    } else {
      throw usage_error(flag + " needs a value");
    }
    if (flag == "--brokers") {
      o.brokers = value;
    } else if (flag == "--topic") {
      o.topic = value;
    } else if (flag == "--since" || flag == "--until") {
      const auto t = parse_time(value, now);
      if (!t) {
        throw usage_error(flag + ": '" + value + "' is neither RFC 3339 (2026-11-23T10:00:00Z) nor a duration ago " +
                          "(90s, 15m, 2h, 7d)");
      }
      (flag == "--since" ? o.filter.since_ms : o.filter.until_ms) = t;
    } else if (flag == "--key") {
      o.filter.key = value;
    } else if (flag == "--event-id") {
      o.filter.event_id = value;
    } else if (flag == "--property") {
      auto kv = property(value, "--property");
      if (kv.first == "bootstrap.servers") throw usage_error("--property: give the brokers with --brokers");
      from_flags.push_back(std::move(kv));
    } else if (flag == "--kafka-config") {
      from_file = read_kafka_config(value);
    } else if (flag == "--dedupe-retention") {
      const auto d = parse_duration(value);
      if (!d || *d <= 0) {
        throw usage_error("--dedupe-retention: '" + value +
                          "' is not a duration like 7d (the consumer's "
                          "dedupe.retention)");
      }
      o.dedupe_retention_ms = *d;
    } else if (flag == "--error-contains") {
      o.filter.error_contains = value;
    } else if (flag == "--partition") {
      const auto p = parse_integer(flag, value, 0);
      if (p > std::numeric_limits<int>::max()) throw usage_error("--partition: '" + value + "' is too large");
      o.filter.partition = static_cast<int>(p);
    } else if (flag == "--offset") {
      o.filter.offset = parse_integer(flag, value, 0);
    } else if (flag == "--to") {
      if (value.empty()) throw usage_error("--to needs a topic name");
      o.to = value;
    } else if (flag == "--rate") {
      o.rate = parse_rate(value);
    } else if (flag == "--limit") {
      o.limit = parse_integer(flag, value, 1);
    }
  }
  if (o.brokers.empty()) throw usage_error("--brokers is required");
  if (o.topic.empty()) throw usage_error("--topic is required (the dead-letter topic, e.g. payments.dlq)");
  if (command == "show" && !o.filter.partition) throw usage_error("--partition is required");
  if (command == "show" && !o.filter.offset) throw usage_error("--offset is required");
  if (o.filter.offset && !o.filter.partition) throw usage_error("--offset needs --partition");
  // The file first, then the flags, so that a --property overrides a line of the file.
  o.properties = std::move(from_file);
  o.properties.insert(o.properties.end(), from_flags.begin(), from_flags.end());
  return o;
}

std::string label(const dlq_record& r) {
  return "partition " + std::to_string(r.partition) + " offset " + std::to_string(r.offset);
}

/// Bytes as JSON: a string when valid UTF-8, else base64 with `<name>_base64: true`.
void put_bytes(nlohmann::ordered_json& j, const std::string& name, const std::optional<std::string>& bytes) {
  const bool binary = bytes && !valid_utf8(*bytes);
  j[name] = !bytes ? nlohmann::ordered_json() : nlohmann::ordered_json(binary ? base64(*bytes) : *bytes);
  j[name + "_base64"] = binary;
}

template <typename T>
nlohmann::ordered_json maybe(const std::optional<T>& v) {
  return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json();
}

nlohmann::ordered_json to_json(const std::string& topic, const dlq_record& r) {
  const auto o = interpret(r);
  nlohmann::ordered_json j;
  j["topic"] = topic;
  j["partition"] = r.partition;
  j["offset"] = r.offset;
  j["timestamp_ms"] = r.timestamp_ms;
  j["timestamp"] = format_time(r.timestamp_ms);
  j["format"] = std::string(to_string(o.format));
  j["original_topic"] = maybe(o.topic);
  j["original_partition"] = maybe(o.partition);
  j["original_offset"] = maybe(o.offset);
  j["original_timestamp_ms"] = maybe(o.timestamp_ms);
  j["consumer_group"] = maybe(o.consumer_group);
  j["error_class"] = maybe(o.error_class);
  j["error_message"] = maybe(o.error_message);
  j["attempts"] = maybe(o.attempts);
  j["first_failure_ms"] = maybe(o.first_failure_ms);
  j["last_failure_ms"] = maybe(o.last_failure_ms);
  j["replay_count"] = o.replay_count;
  if (o.format == dlq_format::relay) {
    j["source_table"] = maybe(o.source_table);
    j["source_lsn"] = maybe(o.source_lsn);
    j["value_kind"] = maybe(o.value_kind);
    j["truncated"] = o.truncated;
  }
  put_bytes(j, "key", r.key);
  put_bytes(j, "value", r.value);
  auto headers = nlohmann::ordered_json::array();
  for (const auto& h : r.headers) {
    nlohmann::ordered_json hj;
    hj["name"] = h.name;
    put_bytes(hj, "value", h.value);
    headers.push_back(hj);
  }
  j["headers"] = headers;
  return j;
}

std::string original_of(const dlq_origin& o) {
  if (o.format == dlq_format::relay) {
    // Never in Kafka: where the row is in the WAL, and where it was going.
    std::string s = o.source_table.value_or("?") + "@" + o.source_lsn.value_or("?");
    if (o.topic) s += " -> " + *o.topic;
    return s;
  }
  if (!o.topic) return "?";
  std::string s = *o.topic;
  if (o.partition) s += "[" + std::to_string(*o.partition) + "]";
  if (o.offset) s += "@" + std::to_string(*o.offset);
  return s;
}

std::string display_bytes(const std::optional<std::string>& b) {
  if (!b) return "(null)";
  if (!valid_utf8(*b)) return "base64:" + base64(*b);
  return *b;
}

int list(const dlq_options& opt) {
  topic_reader reader(opt.brokers, opt.properties, opt.topic);
  std::vector<std::vector<std::string>> rows;
  auto json = nlohmann::ordered_json::array();
  const auto total = reader.read_all([&](dlq_record&& r) {
    if (!opt.filter.matches(r)) return true;
    if (opt.json) {
      json.push_back(to_json(opt.topic, r));
      return true;
    }
    const auto o = interpret(r);
    rows.push_back({std::to_string(r.partition), std::to_string(r.offset), format_time(r.timestamp_ms),
                    printable(original_of(o), 48), printable(r.key ? display_bytes(r.key) : "(null)", 24),
                    printable(o.error_class.value_or("-"), 48), o.attempts ? std::to_string(*o.attempts) : "-",
                    printable(o.error_message.value_or(""), 60)});
    return true;
  });
  if (opt.json) {
    std::cout << json.dump(2) << "\n";
    return k_exit_ok;
  }
  const std::vector<std::string> head = {"PARTITION", "OFFSET", "DEAD-LETTERED", "ORIGINAL",
                                         "KEY",       "ERROR",  "ATTEMPTS",      "MESSAGE"};
  std::vector<std::size_t> width(head.size());
  for (std::size_t c = 0; c < head.size(); ++c) {
    width[c] = head[c].size();
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(width[c] - row[c].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  };
  print_row(head);
  for (const auto& row : rows) print_row(row);
  std::cout << rows.size() << " of " << total << " record" << (total == 1 ? "" : "s") << " in " << opt.topic
            << " matched\n";
  return k_exit_ok;
}

int show(const dlq_options& opt) {
  topic_reader reader(opt.brokers, opt.properties, opt.topic);
  const auto& parts = reader.partitions();
  const int partition = *opt.filter.partition;
  const std::int64_t offset = *opt.filter.offset;
  if (std::find(parts.begin(), parts.end(), partition) == parts.end()) {
    std::cerr << "outboxctl: topic " << opt.topic << " has no partition " << partition << " (it has " << parts.size()
              << ")\n";
    return k_exit_failure;
  }
  const auto r = reader.read_one(partition, offset);
  if (!r) {
    std::cerr << "outboxctl: no record at " << opt.topic << " partition " << partition << " offset " << offset
              << " (deleted by retention, compacted, or not written yet); `outboxctl dlq list` "
              << "shows the offsets that exist\n";
    return k_exit_failure;
  }
  if (opt.json) {
    std::cout << to_json(opt.topic, *r).dump(2) << "\n";
    return k_exit_ok;
  }
  const auto o = interpret(*r);
  std::cout << "topic:          " << opt.topic << "\n"
            << "partition:      " << r->partition << "\n"
            << "offset:         " << r->offset << "\n"
            << "dead-lettered:  " << format_time(r->timestamp_ms) << " (" << r->timestamp_ms << " ms)\n"
            << "written by:     " << to_string(o.format) << "\n"
            << "original:       " << original_of(o) << "\n"
            << "error:          " << o.error_class.value_or("-") << "\n";
  if (o.format == dlq_format::relay) {
    std::cout << "message:        " << printable(o.error_message.value_or("-"), std::string::npos) << "\n"
              << "value kind:     " << o.value_kind.value_or("-") << (o.truncated ? " (value cut)" : "") << "\n";
  }
  std::cout
            << "replay count:   " << o.replay_count << "\n"
            << "key:            " << display_bytes(r->key) << "\n"
            << "headers (" << r->headers.size() << "):\n";
  for (const auto& h : r->headers) {
    std::string shown = h.value ? printable(display_bytes(h.value), std::string::npos) : "(null)";
    // Spring Kafka writes partition, offset and timestamp headers as big-endian binary integers.
    if (h.value && shown != *h.value) {
      if (const auto n = header_number(*h.value)) {
        shown = std::to_string(*n) + " (" + std::to_string(h.value->size()) + "-byte big-endian)";
      }
    }
    std::cout << "  " << h.name << ": " << shown << "\n";
  }
  std::cout << "value (" << (r->value ? std::to_string(r->value->size()) + " bytes" : "null") << "):\n"
            << display_bytes(r->value) << "\n";
  return k_exit_ok;
}

/// Paces sends to `rate` per second; a burst of at most `rate / 10` (at least one) after a pause.
class token_bucket {
 public:
  explicit token_bucket(double rate) : m_rate(rate), m_capacity(std::max(1.0, rate / 10)) {}

  void take() {
    refill();
    if (m_tokens < 1) {
      std::this_thread::sleep_for(std::chrono::duration<double>((1 - m_tokens) / m_rate));
      refill();
    }
    m_tokens -= 1;
  }

 private:
  void refill() {
    const auto now = clock::now();
    m_tokens = std::min(m_capacity, m_tokens + std::chrono::duration<double>(now - m_last).count() * m_rate);
    m_last = now;
  }

  double m_rate;
  double m_capacity;
  double m_tokens = 1;
  clock::time_point m_last = clock::now();
};

/// How long ago, as a duration people read.
std::string ago(std::int64_t ms) {
  if (ms >= 86'400'000) return std::to_string(ms / 86'400'000) + "d";
  if (ms >= 3'600'000) return std::to_string(ms / 3'600'000) + "h";
  if (ms >= 60'000) return std::to_string(ms / 60'000) + "m";
  return std::to_string(ms / 1000) + "s";
}

int replay(const dlq_options& opt) {
  topic_reader reader(opt.brokers, opt.properties, opt.topic);
  std::optional<replay_producer> producer;
  if (!opt.dry_run) producer.emplace(opt.brokers, opt.properties);
  std::optional<token_bucket> bucket;
  if (opt.rate && !opt.dry_run) bucket.emplace(*opt.rate);
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();

  // One replay per event: an event dead-lettered again after an earlier replay has several dead letters, and
  // only its newest is sent (unless --all-copies).
  std::map<std::string, std::tuple<std::int64_t, int, std::int64_t>> newest;  // event id -> (time, partition, offset)
  if (!opt.all_copies) {
    reader.read_all([&](dlq_record&& r) {
      if (!opt.filter.matches(r)) return true;
      if (auto id = r.find(record_format::k_event_id)) {
        const auto candidate = std::make_tuple(r.timestamp_ms, r.partition, r.offset);
        const auto [it, fresh] = newest.emplace(*id, candidate);
        if (!fresh && it->second < candidate) it->second = candidate;
      }
      return true;
    });
  }

  std::set<std::pair<int, std::int64_t>> seen;
  std::map<std::string, std::optional<int>> partitions_of;
  std::vector<std::pair<std::string, std::string>> skipped;
  std::int64_t selected = 0;
  std::int64_t sent = 0;
  std::int64_t older_copies = 0;
  bool limit_reached = false;
  const auto started = clock::now();

  reader.read_all([&](dlq_record&& r) {
    if (!opt.filter.matches(r)) return true;
    if (!seen.insert({r.partition, r.offset}).second) return true;
    const auto o = interpret(r);
    if (!opt.all_copies && o.event_id) {
      const auto it = newest.find(*o.event_id);
      if (it != newest.end() && it->second != std::make_tuple(r.timestamp_ms, r.partition, r.offset)) {
        ++older_copies;
        return true;
      }
    }
    ++selected;
    if (const auto why = not_replayable(o)) {
      skipped.emplace_back(label(r), *why);
      return true;
    }
    // By default a dead letter of ours goes back to the group that failed it, through that group's replay topic;
    // other stacks' dead letters go to their original topic.
    const bool to_group = !opt.to && o.format == dlq_format::outbox && o.topic && o.consumer_group;
    if (!opt.to && !o.topic) {
      skipped.emplace_back(label(r),
                           "no original topic (no dlq_original_topic, outbox_dlq_topic, kafka_dlt-original-topic or "
                           "__connect.errors.topic header); pass --to TOPIC to choose one");
      return true;
    }
    const std::string target = opt.to     ? *opt.to
                               : to_group ? record_format::replay_topic_name(*o.topic, *o.consumer_group)
                                          : *o.topic;
    const std::int64_t age = now_ms - first_seen_ms(r, o);
    if (!opt.force && age > opt.dedupe_retention_ms) {
      skipped.emplace_back(label(r), "its event first arrived " + ago(age) + " ago, longer than --dedupe-retention " +
                                         ago(opt.dedupe_retention_ms) +
                                         ": the consumer may have forgotten that it applied it, and apply it again; "
                                         "pass --force to replay it anyway");
      return true;
    }
    auto it = partitions_of.find(target);
    if (it == partitions_of.end()) it = partitions_of.emplace(target, reader.partition_count(target)).first;
    if (!it->second) {
      skipped.emplace_back(label(r), "topic " + target + " does not exist" +
                                         (to_group ? std::string("; group ") + *o.consumer_group +
                                                         "'s consumer creates its replay topic at start (or pass "
                                                         "--to TOPIC)"
                                                   : std::string()));
      return true;
    }
    // Back to the partition it came from (a replay topic has its source's partitions).
    std::optional<int> partition;
    if (!opt.to && o.partition && *o.partition >= 0 && *o.partition < *it->second) {
      partition = static_cast<int>(*o.partition);
    }
    const auto headers = replay_headers(r, o, to_group);
    std::cout << (opt.dry_run ? "would replay " : "replay ") << label(r) << " -> " << target
              << (partition ? "[" + std::to_string(*partition) + "]" : "")
              << " key=" << printable(display_bytes(r.key), 40) << " dlq_replay_count=" << o.replay_count + 1 << "\n";
    if (producer) {
      if (bucket) bucket->take();
      producer->send(target, partition, r, headers, label(r) + " -> " + target);
    }
    ++sent;
    if (opt.limit && sent >= *opt.limit) {
      limit_reached = true;
      return false;
    }
    return true;
  });

  std::vector<std::string> failures;
  if (producer) failures = producer->finish(std::chrono::seconds(90));
  const auto seconds = std::chrono::duration<double>(clock::now() - started).count();

  const auto delivered =
      sent - static_cast<std::int64_t>(std::min<std::size_t>(failures.size(), static_cast<std::size_t>(sent)));
  std::cout << (opt.dry_run ? "dry run: " : "") << "selected " << selected << ", "
            << (opt.dry_run ? "would replay " : "replayed ") << (opt.dry_run ? sent : delivered) << ", skipped "
            << skipped.size();
  if (!opt.dry_run && sent > 0) {
    std::ostringstream rate;
    rate.precision(1);
    rate << std::fixed << static_cast<double>(sent) / std::max(seconds, 1e-3);
    std::cout << " in " << static_cast<long long>(seconds * 1000) << " ms (" << rate.str() << "/s)";
  }
  std::cout << "\n";
  if (older_copies > 0) {
    std::cout << "not replayed: " << older_copies << " older dead letter(s) of events replayed from their newest "
              << "(--all-copies sends every one)\n";
  }
  if (limit_reached) std::cout << "stopped at --limit " << *opt.limit << "\n";
  for (const auto& [where, why] : skipped) std::cout << "skipped " << where << ": " << why << "\n";
  if (!failures.empty()) {
    for (const auto& f : failures) std::cerr << "outboxctl: delivery failed: " << f << "\n";
    std::cerr << "outboxctl: " << failures.size() << " record(s) were not replayed; rerun after fixing the cause "
              << "(records that were delivered will be replayed again)\n";
    return k_exit_failure;
  }
  if (!skipped.empty()) {
    std::cerr << "outboxctl: " << skipped.size() << " selected record(s) were skipped (see above)\n";
    return k_exit_failure;
  }
  return k_exit_ok;
}

}  // namespace

int dlq(const std::vector<std::string>& args) {
  if (args.empty() || (args[0] != "list" && args[0] != "show" && args[0] != "replay")) {
    std::cerr << "outboxctl dlq: " << (args.empty() ? "missing subcommand" : "unknown subcommand '" + args[0] + "'")
              << " (list, show or replay)\n"
              << k_dlq_usage;
    return k_exit_usage;
  }
  const std::string& command = args[0];
  dlq_options opt;
  try {
    opt = parse_options(command, {args.begin() + 1, args.end()});
  } catch (const usage_error& e) {
    std::cerr << "outboxctl dlq " << command << ": " << e.what() << "\n" << k_dlq_usage;
    return k_exit_usage;
  } catch (const bad_property& e) {
    std::cerr << "outboxctl dlq " << command << ": " << e.what() << "\n";
    return k_exit_usage;
  }
  try {
    if (command == "list") return list(opt);
    if (command == "show") return show(opt);
    return replay(opt);
  } catch (const bad_property& e) {
    std::cerr << "outboxctl dlq " << command << ": " << e.what() << "\n";
    return k_exit_usage;
  } catch (const kafka_failure& e) {
    std::cerr << "outboxctl: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "outboxctl: " << e.what() << "\n";
  }
  return k_exit_failure;
}

}  // namespace outbox::ctl
