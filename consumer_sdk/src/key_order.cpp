#include "key_order.hpp"

namespace outbox::consumer::detail {

key_order::key_order(dedupe::key_holds& holds, std::string group) : m_holds(holds), m_group(std::move(group)) {}

key_order::turn key_order::turn_of(std::string_view topic, std::string_view key, dedupe::held_record me) {
  const auto head = m_holds.head(m_group, topic, key);
  if (!head) return turn::free;
  return *head == me ? turn::first : turn::behind;
}

void key_order::parked(std::string_view topic, std::string_view key, dedupe::held_record me) {
  m_holds.add(m_group, topic, key, me);
}

void key_order::resolved(std::string_view topic, std::string_view key, dedupe::held_record me) {
  m_holds.remove(m_group, topic, key, me);
}

}  // namespace outbox::consumer::detail
