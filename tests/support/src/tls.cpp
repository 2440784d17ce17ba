#include "outbox/test/tls.hpp"

#include "outbox/test/process.hpp"

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>

namespace outbox::test {
namespace {

std::string env_or_throw(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') {
    throw std::runtime_error(std::string(name) +
                             " is not set: start the services with scripts/services.sh (TLS is always on) and "
                             "source .run/services.env, or run scripts/test.sh");
  }
  return v;
}

}  // namespace

const tls_services& require_tls_services() {
  static const tls_services s = [] {
    tls_services t;
    t.ca = env_or_throw("OUTBOX_TLS_CA");
    t.client_cert = env_or_throw("OUTBOX_TLS_CLIENT_CERT");
    t.client_key = env_or_throw("OUTBOX_TLS_CLIENT_KEY");
    t.pg_dsn = env_or_throw("OUTBOX_PG_TLS_DSN");
    t.tls_brokers = env_or_throw("OUTBOX_KAFKA_TLS_BROKERS");
    t.sasl_brokers = env_or_throw("OUTBOX_KAFKA_SASL_BROKERS");
    t.sasl_user = env_or_throw("OUTBOX_KAFKA_SASL_USER");
    t.sasl_password = env_or_throw("OUTBOX_KAFKA_SASL_PASSWORD");
    return t;
  }();
  return s;
}

std::string write_untrusted_ca(const std::string& dir) {
  const std::string cert = dir + "/untrusted-ca.crt";
  const auto r =
      run_command({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                   "/CN=a CA that signed neither server", "-keyout", dir + "/untrusted-ca.key", "-out", cert},
                  std::chrono::seconds(60));
  if (r.exit_code != 0) throw std::runtime_error("openssl could not make a CA: " + r.output);
  return cert;
}

bool librdkafka_scram_broken_with_kafka4() { return rd_kafka_version() < 0x02060100; }

}  // namespace outbox::test
