#include "published_rows.hpp"

namespace outbox::relay {

published_rows::published_rows(std::size_t tables) : m_queued(tables) {}

void published_rows::remember(std::uint64_t event_id, std::size_t table, std::string_view row_id) {
  m_remembered.insert_or_assign(event_id, pending{table, std::string(row_id)});
}

void published_rows::acked(std::uint64_t event_id) {
  const auto it = m_remembered.find(event_id);
  if (it == m_remembered.end()) return;
  m_queued[it->second.table].push_back(std::move(it->second.id));
  ++m_queued_count;
  m_remembered.erase(it);
}

void published_rows::forget_unacked() { m_remembered.clear(); }

std::optional<delete_batch> published_rows::take_batch(bool force, std::size_t batch_size) {
  if (m_out) return std::nullopt;
  for (std::size_t t = 0; t < m_queued.size(); ++t) {
    auto& q = m_queued[t];
    if (q.empty() || (!force && q.size() < batch_size)) continue;
    delete_batch b;
    b.table = t;
    const std::size_t n = std::min(q.size(), batch_size);
    b.ids.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      b.ids.push_back(std::move(q.front()));
      q.pop_front();
    }
    m_queued_count -= n;
    m_out = b;
    return b;
  }
  return std::nullopt;
}

void published_rows::batch_done(bool ok) {
  if (!m_out) return;
  if (!ok) {
    auto& q = m_queued[m_out->table];
    for (auto it = m_out->ids.rbegin(); it != m_out->ids.rend(); ++it) q.push_front(std::move(*it));
    m_queued_count += m_out->ids.size();
  }
  m_out.reset();
}

std::size_t published_rows::backlog() const noexcept {
  return m_remembered.size() + m_queued_count + (m_out ? m_out->ids.size() : 0);
}

void delete_rows(pg_session& s, const config::table_source& t, std::string_view id_type,
                 const std::vector<std::string>& ids) {
  std::string array = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    array += i > 0 ? ",\"" : "\"";
    for (const char ch : ids[i]) {
      if (ch == '"' || ch == '\\') array += '\\';
      array += ch;
    }
    array += '"';
  }
  array += '}';
  const std::string type = id_type.empty() ? std::string("text") : std::string(id_type);
  s.exec("DELETE FROM " + quote_qualified(s, t.schema, t.table) + " WHERE " + s.quote_ident(t.columns.id) +
             " = ANY($1::" + type + "[])",
         {array});
}

}  // namespace outbox::relay
