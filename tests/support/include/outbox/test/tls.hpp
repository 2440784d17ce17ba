#pragma once

#include <string>

namespace outbox::test {

/// The TLS and SASL settings scripts/services.sh exports (services.env), for tests that connect the
/// way a production deployment would: `sslmode=verify-full` to PostgreSQL, SASL_SSL to Kafka.
struct tls_services {
  std::string ca;             ///< OUTBOX_TLS_CA: the local CA that signed both servers' certificates
  std::string client_cert;    ///< OUTBOX_TLS_CLIENT_CERT: a client certificate from the same CA
  std::string client_key;     ///< OUTBOX_TLS_CLIENT_KEY: its private key (PEM, unencrypted)
  std::string pg_dsn;         ///< OUTBOX_PG_TLS_DSN: superuser, sslmode=verify-full sslrootcert=<ca>
  std::string tls_brokers;    ///< OUTBOX_KAFKA_TLS_BROKERS: the SSL listener
  std::string sasl_brokers;   ///< OUTBOX_KAFKA_SASL_BROKERS: the SASL_SSL listener (SCRAM-SHA-512 and PLAIN)
  std::string sasl_user;      ///< OUTBOX_KAFKA_SASL_USER
  std::string sasl_password;  ///< OUTBOX_KAFKA_SASL_PASSWORD
};

/// The settings, or a test failure naming the missing variable.
const tls_services& require_tls_services();

/// Writes a self-signed CA certificate that signed neither server into `dir` and returns its path.
std::string write_untrusted_ca(const std::string& dir);

/// True when the linked librdkafka cannot authenticate with SCRAM against Kafka 4 brokers (versions
/// below 2.6.1, such as Debian 12's 2.0.2: the broker answers "invalid credentials").
bool librdkafka_scram_broken_with_kafka4();

}  // namespace outbox::test
