#include "relay_metrics.hpp"

#include <gtest/gtest.h>

#include <string>

namespace outbox::relay {
namespace {

config::relay_config two_tables() {
  config::relay_config c;
  config::table_source a;
  a.schema = "public";
  a.table = "orders_outbox";
  config::table_source b;
  b.schema = "billing";
  b.table = "outbox";
  c.source.tables = {a, b};
  return c;
}

TEST(relay_metrics, each_table_and_topic_has_its_own_published_counter_however_deliveries_alternate) {
  metrics::registry reg;
  relay_metrics m(reg, two_tables());
  // Runs of one pair (the last pair is remembered), then every change of table, of topic, and of both.
  for (int i = 0; i < 3; ++i) m.published(0, "orders").inc();
  m.published(0, "payments").inc();
  m.published(1, "orders").inc();
  m.published(1, "orders").inc();
  m.published(0, "orders").inc();
  m.published(1, "payments").inc();
  const std::string topic_a = "pay";
  m.published(1, topic_a + "ments").inc();  // the same topic from another string

  EXPECT_EQ(&m.published(0, "orders"), &m.published(0, std::string("orders")));
  EXPECT_NE(&m.published(0, "orders"), &m.published(1, "orders"));
  EXPECT_NE(&m.published(0, "orders"), &m.published(0, "payments"));
  EXPECT_EQ(m.published(0, "orders").value(), 4.0);
  EXPECT_EQ(m.published(0, "payments").value(), 1.0);
  EXPECT_EQ(m.published(1, "orders").value(), 2.0);
  EXPECT_EQ(m.published(1, "payments").value(), 2.0);

  const std::string text = reg.render();
  EXPECT_NE(text.find("outbox_relay_events_published_total{table=\"public.orders_outbox\",topic=\"orders\"} 4"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("outbox_relay_events_published_total{table=\"billing.outbox\",topic=\"payments\"} 2"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace outbox::relay
