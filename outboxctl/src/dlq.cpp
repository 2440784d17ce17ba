// outboxctl dlq list | show | replay: read a dead-letter topic and send its records back.
#include "commands.hpp"
#include "dlq_kafka.hpp"
#include "dlq_record.hpp"
#include "outbox/base/text.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

namespace outbox::ctl {
namespace {

using clock = std::chrono::steady_clock;

constexpr const char* k_dlq_usage =
    "usage: outboxctl dlq list   --brokers B --topic T.dlq [--since TIME] [--until TIME] [--key K]\n"
    "                            [--error-contains S] [--json]\n"
    "       outboxctl dlq show   --brokers B --topic T.dlq --partition P --offset O [--json]\n"
    "       outboxctl dlq replay --brokers B --topic T.dlq [--since TIME] [--until TIME] [--key K]\n"
    "                            [--error-contains S] [--to TOPIC] [--rate N/s] [--limit N] [--dry-run]\n"
    "TIME is RFC 3339 (2026-11-23T10:00:00Z) or a duration ago (90s, 15m, 2h, 7d)\n";

/// A command line the command cannot run; exit code 2.
class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct dlq_options {
  std::string brokers;
  std::string topic;
  dlq_filter filter;
  bool json = false;
  std::optional<int> partition;
  std::optional<std::int64_t> offset;
  std::optional<std::string> to;
  std::optional<double> rate;
  std::optional<std::int64_t> limit;
  bool dry_run = false;
};

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
  return v;
}

dlq_options parse_options(const std::string& command, const std::vector<std::string>& args) {
  static const std::map<std::string, std::set<std::string>> k_allowed = {
      {"list", {"--brokers", "--topic", "--since", "--until", "--key", "--error-contains", "--json"}},
      {"show", {"--brokers", "--topic", "--partition", "--offset", "--json"}},
      {"replay",
       {"--brokers", "--topic", "--since", "--until", "--key", "--error-contains", "--to", "--rate", "--limit",
        "--dry-run"}},
  };
  const auto& allowed = k_allowed.at(command);
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
    if (flag == "--json" || flag == "--dry-run") {
      if (inline_value) throw usage_error(flag + " takes no value");
      (flag == "--json" ? o.json : o.dry_run) = true;
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
    } else if (flag == "--error-contains") {
      o.filter.error_contains = value;
    } else if (flag == "--partition") {
      const auto p = parse_integer(flag, value, 0);
      if (p > std::numeric_limits<int>::max()) throw usage_error("--partition: '" + value + "' is too large");
      o.partition = static_cast<int>(p);
    } else if (flag == "--offset") {
      o.offset = parse_integer(flag, value, 0);
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
  if (command == "show" && !o.partition) throw usage_error("--partition is required");
  if (command == "show" && !o.offset) throw usage_error("--offset is required");
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
  topic_reader reader(opt.brokers, opt.topic);
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
  topic_reader reader(opt.brokers, opt.topic);
  const auto& parts = reader.partitions();
  if (std::find(parts.begin(), parts.end(), *opt.partition) == parts.end()) {
    std::cerr << "outboxctl: topic " << opt.topic << " has no partition " << *opt.partition << " (it has "
              << parts.size() << ")\n";
    return k_exit_failure;
  }
  const auto r = reader.read_one(*opt.partition, *opt.offset);
  if (!r) {
    std::cerr << "outboxctl: no record at " << opt.topic << " partition " << *opt.partition << " offset " << *opt.offset
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
            << "error:          " << o.error_class.value_or("-") << "\n"
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

int replay(const dlq_options& opt) {
  topic_reader reader(opt.brokers, opt.topic);
  std::optional<replay_producer> producer;
  if (!opt.dry_run) producer.emplace(opt.brokers);
  std::optional<token_bucket> bucket;
  if (opt.rate && !opt.dry_run) bucket.emplace(*opt.rate);

  std::set<std::pair<int, std::int64_t>> seen;
  std::map<std::string, std::optional<int>> partitions_of;
  std::vector<std::pair<std::string, std::string>> skipped;
  std::int64_t selected = 0;
  std::int64_t sent = 0;
  bool limit_reached = false;
  const auto started = clock::now();

  reader.read_all([&](dlq_record&& r) {
    if (!opt.filter.matches(r)) return true;
    if (!seen.insert({r.partition, r.offset}).second) return true;
    ++selected;
    const auto o = interpret(r);
    if (!opt.to && !o.topic) {
      skipped.emplace_back(label(r),
                           "no original topic (no dlq_original_topic, kafka_dlt-original-topic or "
                           "__connect.errors.topic header); pass --to TOPIC to choose one");
      return true;
    }
    const std::string target = opt.to ? *opt.to : *o.topic;
    auto it = partitions_of.find(target);
    if (it == partitions_of.end()) it = partitions_of.emplace(target, reader.partition_count(target)).first;
    if (!it->second) {
      skipped.emplace_back(label(r), "topic " + target + " does not exist");
      return true;
    }
    // Back to the partition it came from, so the key keeps its place in the original order.
    std::optional<int> partition;
    if (!opt.to && o.partition && *o.partition >= 0 && *o.partition < *it->second) {
      partition = static_cast<int>(*o.partition);
    }
    const auto headers = replay_headers(r, o.replay_count);
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
  if (limit_reached) std::cout << "stopped at --limit " << *opt.limit << "\n";
  for (const auto& [where, why] : skipped) std::cout << "skipped " << where << ": " << why << "\n";
  if (!failures.empty()) {
    for (const auto& f : failures) std::cerr << "outboxctl: delivery failed: " << f << "\n";
    std::cerr << "outboxctl: " << failures.size() << " record(s) were not replayed; rerun after fixing the cause "
              << "(records that were delivered will be replayed again)\n";
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
  }
  try {
    if (command == "list") return list(opt);
    if (command == "show") return show(opt);
    return replay(opt);
  } catch (const kafka_failure& e) {
    std::cerr << "outboxctl: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "outboxctl: " << e.what() << "\n";
  }
  return k_exit_failure;
}

}  // namespace outbox::ctl
