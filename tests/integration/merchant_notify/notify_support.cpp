#include "notify_support.hpp"

#include "signature.hpp"

#include "outbox/test/environment.hpp"
#include "outbox/test/kafka.hpp"
#include "outbox/test/postgres.hpp"

#include <httplib.h>

#include <fstream>
#include <sstream>
#include <thread>

namespace outbox::notify_test {

using namespace std::chrono_literals;

struct fake_merchants::impl {
  httplib::Server http;
  std::thread thread;
  int port = 0;
  mutable std::mutex mu;
  std::map<std::string, std::vector<reply>> scripts;
  std::map<std::string, std::size_t> served;
  std::vector<received> log;
};

fake_merchants::fake_merchants() : m_impl(std::make_unique<impl>()) {
  m_impl->http.new_task_queue = [] { return new httplib::ThreadPool(32); };
  m_impl->http.Post(R"(/m/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string merchant = req.matches[1];
    reply r;
    {
      std::lock_guard lock(m_impl->mu);
      m_impl->log.push_back({merchant, req.get_header_value("Idempotency-Key"),
                             req.get_header_value("X-Notify-Timestamp"), req.get_header_value("X-Notify-Nonce"),
                             req.get_header_value("X-Notify-Signature"), req.body, std::chrono::steady_clock::now()});
      const auto& s = m_impl->scripts[merchant];
      std::size_t& n = m_impl->served[merchant];
      if (!s.empty()) r = s[std::min(n, s.size() - 1)];
      ++n;
    }
    if (r.delay.count() > 0) std::this_thread::sleep_for(r.delay);
    res.status = r.status;
    if (!r.retry_after.empty()) res.set_header("Retry-After", r.retry_after);
    res.set_content(r.body, "text/plain");
  });
  m_impl->port = m_impl->http.bind_to_any_port("127.0.0.1");
  m_impl->thread = std::thread([this] { m_impl->http.listen_after_bind(); });
}

fake_merchants::~fake_merchants() {
  m_impl->http.stop();
  m_impl->thread.join();
}

void fake_merchants::script(const std::string& merchant, std::vector<reply> replies) {
  std::lock_guard lock(m_impl->mu);
  m_impl->scripts[merchant] = std::move(replies);
  m_impl->served[merchant] = 0;
}

std::string fake_merchants::url(const std::string& merchant) const {
  return "http://127.0.0.1:" + std::to_string(m_impl->port) + "/m/" + merchant;
}

std::vector<received> fake_merchants::requests(const std::string& merchant) const {
  std::lock_guard lock(m_impl->mu);
  std::vector<received> out;
  for (const auto& r : m_impl->log) {
    if (r.merchant == merchant) out.push_back(r);
  }
  return out;
}

std::vector<received> fake_merchants::all_requests() const {
  std::lock_guard lock(m_impl->mu);
  return m_impl->log;
}

consumer_test::outgoing payment(const std::string& topic, const std::string& event_id, const std::string& merchant,
                                std::int64_t amount_cents) {
  const nlohmann::json value = {{"merchant_id", merchant},
                                {"payment_id", "pay-" + event_id},
                                {"amount_cents", amount_cents},
                                {"currency", "CNY"}};
  return {topic, -1, merchant, value.dump(), {{"event_id", event_id}, {"event_type", "payment.succeeded"}}};
}

bool signature_valid(const received& r, const std::string& key) {
  return r.signature == "v1=" + notify::hmac_sha256_hex(key, r.timestamp + "." + r.nonce + "." + r.body);
}

void notify_fixture::SetUp() {
  const auto& services = test::require_services();
  m_schema = test::unique_name("notify");
  m_topic = test::unique_name("payments");
  m_group = test::unique_name("notify_group");
  m_dir = test::scratch_dir("notify");
  m_dsn = services.pg_dsn + " options=-csearch_path=" + m_schema;
  test::pg_exec("CREATE SCHEMA " + m_schema);
  // The shipped schema.sql, as a role that may not create tables would apply it (the service then finds it).
  std::ifstream in(MERCHANT_NOTIFY_SCHEMA);
  std::stringstream schema_sql;
  schema_sql << in.rdbuf();
  ASSERT_FALSE(schema_sql.str().empty()) << "cannot read " << MERCHANT_NOTIFY_SCHEMA;
  test::pg_exec("SET search_path TO " + m_schema + "; " + schema_sql.str());
  test::kafka_create_topic(m_topic, 3);
}

void notify_fixture::TearDown() {
  if (!m_schema.empty()) test::pg_exec("DROP SCHEMA IF EXISTS " + m_schema + " CASCADE");
}

std::string notify_fixture::write_config(const std::map<std::string, std::string>& merchants,
                                         const std::string& extra_notify, const std::string& request_timeout,
                                         const std::string& properties, const std::string& consumer_keys) const {
  const std::string path = m_dir + "/notify.yaml";
  std::ofstream out(path);
  out << "consumer:\n"
      << "  brokers: " << test::require_services().kafka_brokers << "\n"
      << "  group_id: " << m_group << "\n"
      << "  topics: [" << m_topic << "]\n"
      << "  properties: " << properties << "\n"
      << consumer_keys << "dedupe:\n"
      << "  store: postgres\n"
      << "  dsn: \"" << m_dsn << "\"\n"
      << "  retention: 10d\n"  // covers the local broker's retention plus the replay window
      << "retry:\n"
      << "  attempts: 1\n"
      << "  topics: [1s, 2s, 4s]\n"
      << "  ordering: none\n"
      << "dlq:\n"
      << "  max_ratio: 1.0\n"
      << "  window: 10\n"
      << "log:\n"
      << "  level: info\n"
      << "  format: json\n"
      << "metrics:\n"
      << "  listen: 127.0.0.1:0\n"
      << "notify:\n"
      << "  dsn: \"" << m_dsn << "\"\n"
      << "  connect_timeout: 500ms\n"
      << "  request_timeout: " << request_timeout << "\n"
      << extra_notify << "  merchants:\n";
  for (const auto& [id, extra] : merchants) {
    out << "    - id: " << id << "\n"
        << "      url: " << m_merchants.url(id) << "\n"
        << "      key: " << key_of(id) << "\n";
    if (!extra.empty()) out << "      " << extra << "\n";
  }
  return path;
}

std::unique_ptr<test::child_process> notify_fixture::start_notifier(const std::string& config,
                                                                    const std::string& log_name) {
  auto p = std::make_unique<test::child_process>(std::vector<std::string>{MERCHANT_NOTIFY_BIN, "--config", config},
                                                 m_dir + "/" + log_name);
  p->start();
  return p;
}

int notify_fixture::api_port(test::child_process& p) {
  const std::string marker = "\"listen\":\"127.0.0.1:";
  if (!p.wait_for_log(marker, 30s)) return -1;
  const std::string log = p.log();
  return std::stoi(log.substr(log.find(marker) + marker.size()));
}

std::string notify_fixture::status_of(const std::string& event_id, const std::string& column) const {
  const auto rows = test::pg_column("SELECT coalesce(" + column + "::text, '') FROM " + m_schema +
                                    ".merchant_notifications WHERE event_id = '" + event_id + "'");
  return rows.empty() ? "" : rows.front();
}

long long notify_fixture::count_status(const std::string& status, const std::string& merchant) const {
  return std::stoll(test::pg_scalar("SELECT count(*) FROM " + m_schema + ".merchant_notifications WHERE status = '" +
                                    status + "'" + (merchant.empty() ? "" : " AND merchant = '" + merchant + "'")));
}

void notify_fixture::produce(const std::vector<consumer_test::outgoing>& records) const {
  consumer_test::test_producer p(test::require_services().kafka_brokers);
  for (const auto& r : records) p.send(r);
  p.flush();
}

}  // namespace outbox::notify_test
