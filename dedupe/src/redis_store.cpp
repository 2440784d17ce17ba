#include "outbox/dedupe/redis_url.hpp"
#include "outbox/dedupe/store.hpp"

#include "outbox/base/error.hpp"
#include "outbox/base/text.hpp"
#include "outbox/dedupe/key_holds.hpp"

#include "event_id_check.hpp"

#include <hiredis/hiredis.h>
#include <sys/time.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::dedupe {
namespace {

constexpr std::chrono::milliseconds k_connect_timeout{2000};
constexpr std::chrono::milliseconds k_command_timeout{5000};
/// Idle connections kept for reuse; more concurrent callers get their own connection, closed after use.
constexpr std::size_t k_max_idle = 16;

/// A claim's value: this prefix and the owner's token (a done mark is `done`).
constexpr std::string_view k_claim_prefix = "claim:";

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct free_reply {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using reply_ptr = std::unique_ptr<redisReply, free_reply>;

struct free_context {
  void operator()(redisContext* c) const { redisFree(c); }
};
using context_ptr = std::unique_ptr<redisContext, free_context>;

timeval to_timeval(std::chrono::milliseconds d) {
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(d.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((d.count() % 1000) * 1000);
  return tv;
}

/// Errors a server gives while it loads, fails over or is short of memory pass; anything else is a bug or config.
retry_class classify_reply_error(std::string_view message) {
  for (std::string_view transient : {"LOADING", "READONLY", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "OOM"}) {
    if (message.starts_with(transient)) return retry_class::retryable;
  }
  return retry_class::fatal;
}

/// `%` and `:` in the group are escaped so that `<prefix><group>:<event id>` names one pair only.
std::string escape_group(std::string_view group) {
  std::string out;
  out.reserve(group.size());
  for (char c : group) {
    if (c == '%') {
      out += "%25";
    } else if (c == ':') {
      out += "%3A";
    } else {
      out += c;
    }
  }
  return out;
}

/// A pool of blocking hiredis connections to one Redis, with scripts loaded once and run by digest.
class redis_client {
 public:
  explicit redis_client(const std::string& url) {
    auto ep = parse_redis_url(url);
    if (!ep) {
      throw outbox_error(
          "dedupe", "redis store: dedupe.url is not a Redis URL; expected redis://[user:password@]host[:port][/db]",
          retry_class::fatal);
    }
    m_endpoint = std::move(*ep);
    m_where = "redis " + m_endpoint.host + ":" + std::to_string(m_endpoint.port) + "/" + std::to_string(m_endpoint.db);
    // Fail at start-up, not on the first record, when Redis is unreachable or the credentials are wrong.
    give_back(connect());
  }

  [[nodiscard]] const std::string& where() const { return m_where; }

  /// Runs one command; a broken connection is dropped and the command tried once more on a new one (every
  /// command and script here is safe to repeat: a claim repeated after a lost reply finds its own token).
  reply_ptr run(std::initializer_list<std::string_view> args, const char* what) {
    return run_argv(std::vector<std::string_view>(args), what);
  }

  /// Runs `script` (EVALSHA, or EVAL when Redis lost its script cache) on one key; returns its integer reply.
  long long script(const std::string& body, const std::string& digest, std::string_view key,
                   std::initializer_list<std::string_view> args, const char* what) {
    std::vector<std::string_view> argv;
    argv.reserve(args.size() + 4);
    argv.insert(argv.end(), {"EVALSHA", digest, "1", key});
    argv.insert(argv.end(), args);
    reply_ptr r;
    try {
      r = run_argv(argv, what);
    } catch (const outbox_error& e) {
      if (std::string_view(e.what()).find("NOSCRIPT") == std::string_view::npos) throw;
      argv[0] = "EVAL";
      argv[1] = body;
      r = run_argv(argv, what);
    }
    if (r->type != REDIS_REPLY_INTEGER) {
      throw outbox_error("dedupe", m_where + ": " + what + " gave an unexpected reply", retry_class::retryable);
    }
    return r->integer;
  }

  /// SCRIPT LOAD: the digest EVALSHA runs `body` by.
  std::string load(const std::string& body) {
    reply_ptr r = run({"SCRIPT", "LOAD", body}, "SCRIPT LOAD");
    return std::string(r->str, static_cast<std::size_t>(r->len));
  }

 private:
  reply_ptr run_argv(const std::vector<std::string_view>& args, const char* what) {
    for (int attempt = 0;; ++attempt) {
      context_ptr c = acquire();
      std::vector<const char*> argv;
      std::vector<std::size_t> lengths;
      for (const auto a : args) {
        argv.push_back(a.data());
        lengths.push_back(a.size());
      }
      reply_ptr r(static_cast<redisReply*>(
          redisCommandArgv(c.get(), static_cast<int>(argv.size()), argv.data(), lengths.data())));
      if (!r) {
        if (attempt == 0) continue;
        throw outbox_error("dedupe", m_where + ": " + what + ": " + c->errstr + "; check that Redis is up",
                           retry_class::retryable);
      }
      give_back(std::move(c));
      if (r->type == REDIS_REPLY_ERROR) {
        throw outbox_error("dedupe", m_where + ": " + what + " failed: " + std::string(r->str),
                           classify_reply_error(r->str));
      }
      return r;
    }
  }

  context_ptr connect() {
    context_ptr c(redisConnectWithTimeout(m_endpoint.host.c_str(), m_endpoint.port, to_timeval(k_connect_timeout)));
    if (!c || c->err != 0) {
      throw outbox_error("dedupe",
                         m_where + ": cannot connect: " + (c ? std::string(c->errstr) : "out of memory") +
                             "; check that Redis runs and dedupe.url is right",
                         retry_class::retryable);
    }
    redisSetTimeout(c.get(), to_timeval(k_command_timeout));
    redisEnableKeepAlive(c.get());
    if (!m_endpoint.password.empty()) {
      reply_ptr r = m_endpoint.user.empty() ? exec(c.get(), {"AUTH", m_endpoint.password})
                                            : exec(c.get(), {"AUTH", m_endpoint.user, m_endpoint.password});
      check_setup(c.get(), r, "AUTH", "check the user and password in dedupe.url");
    }
    if (m_endpoint.db != 0) {
      reply_ptr r = exec(c.get(), {"SELECT", std::to_string(m_endpoint.db)});
      check_setup(c.get(), r, "SELECT", "check the database number in dedupe.url");
    }
    return c;
  }

  void check_setup(redisContext* c, const reply_ptr& r, const char* what, const char* hint) const {
    if (!r) {
      throw outbox_error("dedupe", m_where + ": " + what + ": " + c->errstr, retry_class::retryable);
    }
    if (r->type == REDIS_REPLY_ERROR) {
      throw outbox_error("dedupe", m_where + ": " + what + " failed: " + std::string(r->str) + "; " + hint,
                         classify_reply_error(r->str));
    }
  }

  static reply_ptr exec(redisContext* c, std::initializer_list<std::string_view> args) {
    std::array<const char*, 8> argv{};
    std::array<std::size_t, 8> lengths{};
    std::size_t n = 0;
    for (std::string_view a : args) {
      argv.at(n) = a.data();
      lengths.at(n) = a.size();
      ++n;
    }
    return reply_ptr(static_cast<redisReply*>(redisCommandArgv(c, static_cast<int>(n), argv.data(), lengths.data())));
  }

  context_ptr acquire() {
    {
      std::lock_guard lock(m_pool_mutex);
      if (!m_idle.empty()) {
        context_ptr c = std::move(m_idle.back());
        m_idle.pop_back();
        return c;
      }
    }
    return connect();
  }

  void give_back(context_ptr c) {
    std::lock_guard lock(m_pool_mutex);
    if (m_idle.size() < k_max_idle) m_idle.push_back(std::move(c));
  }

  redis_endpoint m_endpoint;
  std::string m_where;  ///< "redis host:port/db", never the password
  std::mutex m_pool_mutex;
  std::vector<context_ptr> m_idle;
};

/// A script and its digest.
struct loaded_script {
  std::string body;
  std::string digest;
};

/// `<prefix><group>:<event id>`: the done mark, or the token of the claim prefixed with `claim:`.
class redis_store final : public store {
 public:
  explicit redis_store(redis_options o) : m_options(std::move(o)), m_client(m_options.url) {
    if (m_options.retention.count() <= 0 || m_options.lease.count() <= 0) {
      throw outbox_error("dedupe", m_client.where() + ": retention and lease must be positive", retry_class::fatal);
    }
    m_lease_ms = std::to_string(m_options.lease.count());
    m_retention_ms = std::to_string(m_options.retention.count());
    for (auto* s : {&m_claim, &m_renew, &m_complete, &m_release}) s->digest = m_client.load(s->body);
  }

  claim_result claim(std::string_view group, std::string_view event_id, std::string_view token) override {
    detail::check_event_id(event_id);
    const std::string k = key(group, event_id);
    const std::string owner = owner_value(token);
    const long long r = m_client.script(m_claim.body, m_claim.digest, k, {owner, m_lease_ms}, "claim");
    switch (r) {
      case 1:
        return claim_result::claimed;
      case 2:
        return claim_result::duplicate;
      case 3:
        return claim_result::in_progress;
      default:
        throw outbox_error("dedupe",
                           m_client.where() + ": key " + k +
                               " holds a value this store did not write; is key_prefix '" + m_options.key_prefix +
                               "' shared with something else?",
                           retry_class::fatal);
    }
  }

  bool renew(std::string_view group, std::string_view event_id, std::string_view token) override {
    detail::check_event_id(event_id);
    return m_client.script(m_renew.body, m_renew.digest, key(group, event_id), {owner_value(token), m_lease_ms},
                           "renew") == 1;
  }

  bool complete(std::string_view group, std::string_view event_id, std::string_view token) override {
    detail::check_event_id(event_id);
    return m_client.script(m_complete.body, m_complete.digest, key(group, event_id),
                           {owner_value(token), m_retention_ms}, "complete") == 1;
  }

  bool release(std::string_view group, std::string_view event_id, std::string_view token) override {
    detail::check_event_id(event_id);
    return m_client.script(m_release.body, m_release.digest, key(group, event_id), {owner_value(token)}, "release") ==
           1;
  }

  /// Keys expire on their own (PX): nothing to delete.
  std::size_t cleanup(std::size_t /*limit*/) override { return 0; }

  [[nodiscard]] std::chrono::milliseconds retention() const noexcept override { return m_options.retention; }
  [[nodiscard]] std::chrono::milliseconds lease() const noexcept override { return m_options.lease; }

 private:
  [[nodiscard]] std::string key(std::string_view group, std::string_view event_id) const {
    std::string k = m_options.key_prefix;
    k += escape_group(group);
    k += ':';
    k += event_id;
    return k;
  }

  static std::string owner_value(std::string_view token) {
    std::string v(k_claim_prefix);
    v += token;
    return v;
  }

  redis_options m_options;
  redis_client m_client;
  std::string m_lease_ms;
  std::string m_retention_ms;
  // 1 claimed (new, expired, or the caller's own), 2 done, 3 another token's claim, 0 a foreign value.
  loaded_script m_claim{
      "local v = redis.call('GET', KEYS[1]) "
      "if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end "
      "if v == 'done' then return 2 end "
      "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end "
      "if string.sub(v, 1, 6) == 'claim:' or v == 'in_progress' then return 3 end "
      "return 0",
      {}};
  loaded_script m_renew{
      "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end return 0",
      {}};
  // The caller's claim, or no claim at all (it expired unrenewed): write the done mark. Another token's
  // claim: leave it (0). Already done: 1.
  loaded_script m_complete{
      "local v = redis.call('GET', KEYS[1]) "
      "if v == 'done' then return 1 end "
      "if not v or v == ARGV[1] then redis.call('SET', KEYS[1], 'done', 'PX', ARGV[2]) return 1 end "
      "return 0",
      {}};
  loaded_script m_release{
      "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0", {}};
};

/// Holds of one (group, topic, key): a sorted set `<prefix>%held:<group>:<topic length>:<topic><key>` whose
/// scores come from a counter (the order records were parked in), and a hash of when each was added.
class redis_key_holds final : public key_holds {
 public:
  redis_key_holds(const redis_options& o, std::chrono::milliseconds lapse)
      : m_prefix(o.key_prefix), m_client(o.url), m_lapse_ms(std::to_string(lapse.count())) {
    for (auto* s : {&m_add, &m_head, &m_remove}) s->digest = m_client.load(s->body);
  }

  void add(std::string_view group, std::string_view topic, std::string_view key, held_record r) override {
    m_client.script(m_add.body, m_add.digest, ident(group, topic, key),
                    {member(r), std::to_string(now_ms()), m_lapse_ms, m_prefix + "%held-seq"}, "hold");
  }

  std::optional<held_record> head(std::string_view group, std::string_view topic, std::string_view key) override {
    const std::string k = ident(group, topic, key);
    const long long n =
        m_client.script(m_head.body, m_head.digest, k, {std::to_string(now_ms()), m_lapse_ms}, "hold head");
    if (n == 0) return std::nullopt;
    reply_ptr first = m_client.run({"ZRANGE", k, "0", "0"}, "hold head (ZRANGE)");
    if (first->type != REDIS_REPLY_ARRAY || first->elements == 0) return std::nullopt;
    const std::string_view m(first->element[0]->str, static_cast<std::size_t>(first->element[0]->len));
    const auto colon = m.find(':');
    const auto partition = parse_int64(m.substr(0, colon));
    const auto offset = colon == std::string_view::npos ? std::nullopt : parse_int64(m.substr(colon + 1));
    if (!partition || !offset) {
      throw outbox_error("dedupe", m_client.where() + ": key " + k + " holds a member this store did not write",
                         retry_class::fatal);
    }
    return held_record{static_cast<std::int32_t>(*partition), *offset};
  }

  void remove(std::string_view group, std::string_view topic, std::string_view key, held_record r) override {
    m_client.script(m_remove.body, m_remove.digest, ident(group, topic, key), {member(r)}, "hold release");
  }

 private:
  [[nodiscard]] std::string ident(std::string_view group, std::string_view topic, std::string_view key) const {
    std::string k = m_prefix + "%held:";  // `%` never starts an escaped group: no store key looks like this
    k += escape_group(group);
    k += ':';
    k += std::to_string(topic.size());
    k += ':';
    k += topic;
    k += key;
    return k;
  }

  static std::string member(held_record r) { return std::to_string(r.partition) + ":" + std::to_string(r.offset); }

  std::string m_prefix;
  redis_client m_client;
  std::string m_lapse_ms;
  // KEYS[1] the set; its times live in KEYS[1] .. ':t'. New members get the next counter value and refresh
  // the keys' TTL (the lapse), so an abandoned key vanishes on its own.
  loaded_script m_add{
      "local t = KEYS[1] .. ':t' "
      "if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end "
      "local seq = redis.call('INCR', ARGV[4]) "
      "redis.call('ZADD', KEYS[1], seq, ARGV[1]) redis.call('HSET', t, ARGV[1], ARGV[2]) "
      "redis.call('PEXPIRE', KEYS[1], ARGV[3]) redis.call('PEXPIRE', t, ARGV[3]) return 1",
      {}};
  // Drops lapsed members from the front; returns how many remain.
  loaded_script m_head{
      "local t = KEYS[1] .. ':t' "
      "while true do "
      "  local first = redis.call('ZRANGE', KEYS[1], 0, 0) "
      "  if #first == 0 then return 0 end "
      "  local added = tonumber(redis.call('HGET', t, first[1]) or '0') "
      "  if added + tonumber(ARGV[2]) > tonumber(ARGV[1]) then return redis.call('ZCARD', KEYS[1]) end "
      "  redis.call('ZREM', KEYS[1], first[1]) redis.call('HDEL', t, first[1]) "
      "end",
      {}};
  loaded_script m_remove{"redis.call('HDEL', KEYS[1] .. ':t', ARGV[1]) return redis.call('ZREM', KEYS[1], ARGV[1])",
                         {}};
};

}  // namespace

std::unique_ptr<store> make_redis_store(redis_options options) {
  return std::make_unique<redis_store>(std::move(options));
}

std::unique_ptr<key_holds> make_redis_key_holds(const redis_options& options, std::chrono::milliseconds lapse) {
  return std::make_unique<redis_key_holds>(options, lapse);
}

}  // namespace outbox::dedupe
