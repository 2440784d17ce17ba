// A tiny consumer service using only the installed SDK headers and the outbox::consumer target.
#include <outbox/config/consumer_config.hpp>
#include <outbox/consumer/consumer.hpp>
#include <outbox/consumer/deserialize.hpp>

#include <iostream>

int main() {
  const auto cfg = outbox::config::parse_consumer_config(
      "consumer: {brokers: 127.0.0.1:1, group_id: install-check, topics: [payments]}\n", "inline.yaml");
  auto options = outbox::consumer::from_config(cfg);
  outbox::consumer::consumer c(std::move(options), [](const outbox::consumer::record& r) {
    const auto j = outbox::consumer::parse_json(r);
    return j.contains("amount_cents") ? outbox::consumer::outcome::done()
                                      : outbox::consumer::outcome::fatal("no amount_cents");
  });
  std::cout << "outbox consumer SDK: linked, processed=" << c.stats().processed << "\n";
  return 0;
}
