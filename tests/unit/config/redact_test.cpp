#include "outbox/config/consumer_config.hpp"
#include "outbox/config/redact.hpp"
#include "outbox/config/relay_config.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace outbox::config {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(config_redact, secrecy_is_declared_on_the_key) {
  const secrecy kafka{secrecy::kind::entries,
                      {"*password*", "*secret*", "ssl.key.*", "ssl_key", "ssl.keystore.*", "sasl.password",
                       "sasl.oauthbearer.*", "sasl.kerberos.keytab"}};
  for (const char* k : {"sasl.password", "ssl.key.password", "ssl.key.pem", "ssl_key", "ssl.keystore.password",
                        "ssl.keystore.location", "sasl.oauthbearer.client.secret", "sasl.oauthbearer.config",
                        "sasl.kerberos.keytab", "SASL.PASSWORD", "my.Secret.token"}) {
    EXPECT_TRUE(kafka.hides_entry(k)) << k;
  }
  for (const char* k : {"sasl.username", "sasl.mechanism", "security.protocol", "ssl.ca.location",
                        "ssl.certificate.pem", "linger.ms"}) {
    EXPECT_FALSE(kafka.hides_entry(k)) << k;
  }
  EXPECT_TRUE((secrecy{secrecy::kind::whole, {}}.hides_entry("anything")));
  EXPECT_FALSE(secrecy{}.hides_entry("password")) << "nothing is guessed from a name";
}

TEST(config_redact, check_output_never_shows_key_material) {
  const auto c = parse_relay_config(
      "source:\n"
      "  dsn: \"postgresql://relay:dsn-pw@db:5432/shop?sslmode=verify-full\"\n"
      "  tables: [{name: public.outbox}]\n"
      "sink:\n"
      "  properties:\n"
      "    security.protocol: SASL_SSL\n"
      "    sasl.mechanism: SCRAM-SHA-512\n"
      "    sasl.username: relay\n"
      "    sasl.password: scram-pw\n"
      "    ssl.key.pem: \"-----BEGIN PRIVATE KEY-----MIIEvQ\"\n"
      "    ssl.keystore.password: ks-pw\n"
      "    sasl.oauthbearer.config: \"clientId=app clientSecret=oauth-pw\"\n"
      "    sasl.oauthbearer.client.secret: oauth-secret\n",
      "relay.yaml");
  const std::string dump = dump_redacted(c);
  for (const char* secret :
       {"dsn-pw", "scram-pw", "BEGIN PRIVATE KEY", "MIIEvQ", "ks-pw", "oauth-pw", "oauth-secret"}) {
    EXPECT_THAT(dump, Not(HasSubstr(secret))) << dump;
  }
  EXPECT_THAT(dump, HasSubstr("sasl.username: relay"));
  EXPECT_THAT(dump, HasSubstr("sasl.mechanism: SCRAM-SHA-512"));
  EXPECT_THAT(dump, HasSubstr("postgresql://relay:*****@db:5432/shop"));
}

TEST(config_redact, credentials_in_dsns_and_urls) {
  EXPECT_EQ(redact_credentials("host=db user=app password=s3cret"), "host=db user=app password=*****");
  EXPECT_EQ(redact_credentials("postgresql://app:s3cret@db:5432/shop"), "postgresql://app:*****@db:5432/shop");
  EXPECT_EQ(redact_credentials("redis://:s3cret@cache:6379/0"), "redis://:*****@cache:6379/0");
  EXPECT_EQ(redact_credentials("redis://u:p@ss@cache:6379"), "redis://u:*****@cache:6379");
  EXPECT_EQ(redact_credentials("{aggregate_type}"), "{aggregate_type}");
}

TEST(config_redact, relay_dump_hides_every_password) {
  const auto c = parse_relay_config(
      "source:\n"
      "  dsn: host=db user=app password=dsn-pw dbname=shop\n"
      "  tables: [{name: public.outbox}]\n"
      "sink:\n"
      "  properties:\n"
      "    security.protocol: SASL_SSL\n"
      "    sasl.username: relay\n"
      "    sasl.password: sasl-pw\n"
      "    ssl.key.password: key-pw\n"
      "    sasl.oauthbearer.client.secret: oauth-secret\n"
      "    my.Secret.token: other-secret\n",
      "relay.yaml");
  const std::string dump = dump_redacted(c);
  for (const char* secret : {"dsn-pw", "sasl-pw", "key-pw", "oauth-secret", "other-secret"}) {
    EXPECT_THAT(dump, Not(HasSubstr(secret))) << dump;
  }
  EXPECT_THAT(dump, HasSubstr("dsn: host=db user=app password=***** dbname=shop"));
  EXPECT_THAT(dump, HasSubstr("sasl.password: \"*****\""));
  EXPECT_THAT(dump, HasSubstr("sasl.username: relay"));
  EXPECT_THAT(dump, HasSubstr("security.protocol: SASL_SSL"));
  EXPECT_EQ(c.sink.properties.at("sasl.password"), "sasl-pw");
}

TEST(config_redact, consumer_dump_hides_store_credentials) {
  const auto c = parse_consumer_config(
      "consumer: {group_id: g, topics: [t], properties: {sasl.password: pw1}}\n"
      "dedupe: {store: redis, url: \"redis://:pw2@cache:6379\", dsn: \"postgres://u:pw3@db/x\"}\n",
      "consumer.yaml");
  const std::string dump = dump_redacted(c);
  for (const char* secret : {"pw1", "pw2", "pw3"}) EXPECT_THAT(dump, Not(HasSubstr(secret))) << dump;
  EXPECT_THAT(dump, HasSubstr("redis://:*****@cache:6379"));
}

TEST(config_redact, dump_is_yaml_the_loader_reads_back) {
  const std::string text =
      "source:\n"
      "  dsn: host=db\n"
      "  tables:\n"
      "    - name: billing.events\n"
      "      columns: {id: event_id}\n"
      "  logical_messages: {prefix: app}\n"
      "sink:\n"
      "  topic_template: \"{schema}.{table}\"\n"
      "  properties: {linger.ms: 5, acks: all}\n"
      "relay: {max_inflight_bytes: 1000000, shutdown_timeout: 90s}\n";
  const auto first = parse_relay_config(text, "relay.yaml");
  const std::string dump = dump_redacted(first);
  const auto second = parse_relay_config(dump, "dump.yaml");
  EXPECT_EQ(first.tree, second.tree) << dump;
  EXPECT_EQ(dump_redacted(second), dump);
  EXPECT_THAT(dump, HasSubstr("max_inflight_bytes: 1MB"));
  EXPECT_THAT(dump, HasSubstr("shutdown_timeout: 90s"));

  const auto consumer =
      parse_consumer_config("consumer: {group_id: g, topics: [a, b]}\nretry: {topics: [10s, 1m]}\n", "consumer.yaml");
  EXPECT_EQ(parse_consumer_config(dump_redacted(consumer), "dump.yaml").tree, consumer.tree);
}

}  // namespace
}  // namespace outbox::config
