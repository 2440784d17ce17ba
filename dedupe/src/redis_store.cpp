#include "outbox/dedupe/redis_url.hpp"
#include "outbox/dedupe/store.hpp"

#include "outbox/base/error.hpp"

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

constexpr std::string_view k_in_progress = "in_progress";
constexpr std::string_view k_done = "done";

/// Deletes the key only while it still holds an in-progress claim (a done mark stays).
constexpr std::string_view k_release_script =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

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

class redis_store final : public store {
 public:
  explicit redis_store(redis_options o) : m_options(std::move(o)) {
    auto ep = parse_redis_url(m_options.url);
    if (!ep) {
      throw outbox_error(
          "dedupe", "redis store: dedupe.url is not a Redis URL; expected redis://[user:password@]host[:port][/db]",
          retry_class::fatal);
    }
    m_endpoint = std::move(*ep);
    m_where = "redis " + m_endpoint.host + ":" + std::to_string(m_endpoint.port) + "/" + std::to_string(m_endpoint.db);
    if (m_options.retention.count() <= 0 || m_options.lease.count() <= 0) {
      throw outbox_error("dedupe", m_where + ": retention and lease must be positive", retry_class::fatal);
    }
    m_lease_ms = std::to_string(m_options.lease.count());
    m_retention_ms = std::to_string(m_options.retention.count());
    // Fail at start-up, not on the first record, when Redis is unreachable or the credentials are wrong.
    give_back(connect());
  }

  claim_result claim(std::string_view group, std::string_view event_id) override {
    const std::string k = key(group, event_id);
    // The key may expire between SET NX and GET: then claim again.
    for (int attempt = 0; attempt < 3; ++attempt) {
      reply_ptr set = run({"SET", k, k_in_progress, "NX", "PX", m_lease_ms}, "claim (SET NX)");
      if (set->type == REDIS_REPLY_STATUS) return claim_result::claimed;
      reply_ptr get = run({"GET", k}, "claim (GET)");
      if (get->type == REDIS_REPLY_NIL) continue;
      const std::string_view value = get->type == REDIS_REPLY_STRING
                                         ? std::string_view(get->str, static_cast<std::size_t>(get->len))
                                         : std::string_view();
      if (value == k_done) return claim_result::duplicate;
      if (value == k_in_progress) return claim_result::in_progress;
      throw outbox_error("dedupe",
                         m_where + ": key " + k + " holds a value this store did not write; is key_prefix '" +
                             m_options.key_prefix + "' shared with something else?",
                         retry_class::fatal);
    }
    throw outbox_error("dedupe", m_where + ": claim of key " + k + " kept racing with its expiry; try again",
                       retry_class::retryable);
  }

  void complete(std::string_view group, std::string_view event_id) override {
    run({"SET", key(group, event_id), k_done, "PX", m_retention_ms}, "complete (SET)");
  }

  void release(std::string_view group, std::string_view event_id) override {
    run({"EVAL", k_release_script, "1", key(group, event_id), k_in_progress}, "release (EVAL)");
  }

  /// Keys expire on their own (PX): nothing to delete.
  std::size_t cleanup(std::size_t /*limit*/) override { return 0; }

 private:
  [[nodiscard]] std::string key(std::string_view group, std::string_view event_id) const {
    std::string k = m_options.key_prefix;
    k += escape_group(group);
    k += ':';
    k += event_id;
    return k;
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

  /// Runs one command; a broken connection is dropped and the command tried once more on a new one
  /// (every command here is safe to repeat).
  reply_ptr run(std::initializer_list<std::string_view> args, const char* what) {
    for (int attempt = 0;; ++attempt) {
      context_ptr c = acquire();
      reply_ptr r = exec(c.get(), args);
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

  redis_options m_options;
  redis_endpoint m_endpoint;
  std::string m_where;  ///< "redis host:port/db", never the password
  std::string m_lease_ms;
  std::string m_retention_ms;
  std::mutex m_pool_mutex;
  std::vector<context_ptr> m_idle;
};

}  // namespace

std::unique_ptr<store> make_redis_store(redis_options options) {
  return std::make_unique<redis_store>(std::move(options));
}

}  // namespace outbox::dedupe
