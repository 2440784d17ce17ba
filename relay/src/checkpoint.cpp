#include "checkpoint.hpp"

#include "outbox/base/error.hpp"
#include "outbox/kafka/admin.hpp"
#include "outbox/kafka/client.hpp"
#include "outbox/kafka/handles.hpp"
#include "outbox/relay/pg_session.hpp"

#include <librdkafka/rdkafka.h>
#include <nlohmann/json.hpp>

#include <ctime>

namespace outbox::relay {
namespace {

std::string now_rfc3339() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// Connection and security settings of sink.properties, for the relay's own consumer of the checkpoint topic.
bool connection_property(std::string_view key) {
  return key.starts_with("ssl.") || key.starts_with("sasl.") || key == "security.protocol" ||
         key.starts_with("socket.") || key.starts_with("broker.") || key == "client.dns.lookup" ||
         key.starts_with("enable.ssl.");
}

}  // namespace

std::string encode_checkpoint(const checkpoint& c) {
  nlohmann::ordered_json j;
  j["slot"] = c.slot;
  j["system_identifier"] = c.system_id;
  j["timeline"] = c.timeline;
  j["end_lsn"] = format_lsn(c.end_lsn);
  if (c.partial) {
    j["partial"] = {{"final_lsn", format_lsn(c.partial->final_lsn)}, {"rows", c.partial->rows}};
  }
  j["written_at"] = c.written_at.empty() ? now_rfc3339() : c.written_at;
  return j.dump();
}

std::optional<checkpoint> decode_checkpoint(std::string_view json, std::string& error) {
  const auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "not a JSON object";
    return std::nullopt;
  }
  checkpoint c;
  try {
    c.slot = j.at("slot").get<std::string>();
    c.system_id = j.at("system_identifier").get<std::string>();
    c.timeline = j.at("timeline").get<int>();
    const auto end = parse_lsn(j.at("end_lsn").get<std::string>());
    if (!end) {
      error = "end_lsn is not an LSN";
      return std::nullopt;
    }
    c.end_lsn = *end;
    if (const auto p = j.find("partial"); p != j.end() && !p->is_null()) {
      const auto final_lsn = parse_lsn(p->at("final_lsn").get<std::string>());
      if (!final_lsn) {
        error = "partial.final_lsn is not an LSN";
        return std::nullopt;
      }
      c.partial = partial_transaction{*final_lsn, p->at("rows").get<std::uint64_t>()};
    }
    if (const auto w = j.find("written_at"); w != j.end() && w->is_string()) c.written_at = w->get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    error = std::string("missing or wrong field: ") + e.what();
    return std::nullopt;
  }
  return c;
}

std::string transactional_id_of(const config::relay_config& c) {
  if (!c.sink.transactional_id.empty()) return c.sink.transactional_id;
  const conn_params p = conn_params::parse(c.source.dsn);
  const std::string db = p.get("dbname").value_or(p.get("user").value_or("postgres"));
  return "outbox-relay." + db + "." + c.source.slot;
}

std::optional<checkpoint> read_checkpoint(const config::sink_config& sink, const std::string& slot,
                                          std::chrono::milliseconds timeout) {
  kafka::conf_builder b;
  b.set("bootstrap.servers", sink.brokers, "sink.brokers: ");
  std::vector<std::pair<std::string, std::string>> props(sink.properties.begin(), sink.properties.end());
  b.set_all(props, "sink.properties.", [](std::string_view key) { return connection_property(key); });
  b.set("group.id", "outbox-relay-checkpoint-reader");
  b.set("enable.auto.commit", "false");
  b.set("isolation.level", "read_committed");
  b.set("enable.partition.eof", "true");
  b.set("client.id", "outbox-relay-checkpoints");
  b.log_lines();
  const kafka::consumer_ptr consumer(b.create(RD_KAFKA_CONSUMER, "the checkpoint reader").release());
  rd_kafka_t* rk = consumer.get();

  const auto info = kafka::describe_topic(rk, sink.checkpoint_topic, timeout);
  if (!info) {
    kafka::topic_spec spec{sink.checkpoint_topic, 1, -1, {{"cleanup.policy", "compact"}}};
    for (const auto& r : kafka::create_topics(rk, {spec}, timeout)) {
      if (r.error != RD_KAFKA_RESP_ERR_NO_ERROR && r.error != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        throw outbox_error("kafka",
                           "cannot create the checkpoint topic " + sink.checkpoint_topic + ": " + r.message +
                               " (create it compacted with one partition, or let the relay's principal create topics)",
                           retry_class::fatal);
      }
    }
    return std::nullopt;  // a new topic holds no checkpoint
  }
  if (info->partitions != 1) {
    throw outbox_error("kafka",
                       "the checkpoint topic " + sink.checkpoint_topic + " has " + std::to_string(info->partitions) +
                           " partitions; it needs exactly one (the relay reads it from start to end)",
                       retry_class::fatal);
  }
  // With read_committed the high watermark a consumer gets is the last stable offset: read up to it.
  std::int64_t low = 0;
  std::int64_t high = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return static_cast<int>(std::max<long long>(
        1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count()));
  };
  kafka::partition_list_ptr parts = kafka::make_partition_list(1);
  rd_kafka_topic_partition_list_add(parts.get(), sink.checkpoint_topic.c_str(), 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
  if (const auto e = rd_kafka_assign(rk, parts.get()); e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw outbox_error("kafka", std::string("cannot read the checkpoint topic: ") + rd_kafka_err2str(e),
                       retry_class::retryable);
  }
  // The end to read to, asked once: what was committed before this relay took the lead.
  if (const auto e = rd_kafka_query_watermark_offsets(rk, sink.checkpoint_topic.c_str(), 0, &low, &high, left());
      e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw outbox_error("kafka",
                       "cannot read the end of the checkpoint topic " + sink.checkpoint_topic + ": " +
                           rd_kafka_err2str(e),
                       retry_class::retryable);
  }
  std::optional<checkpoint> last;
  std::int64_t next = low;
  kafka::partition_list_ptr pos = kafka::make_partition_list(1);
  rd_kafka_topic_partition_list_add(pos.get(), sink.checkpoint_topic.c_str(), 0);
  while (true) {
    // The position skips transaction markers, which are never delivered as messages.
    if (rd_kafka_position(rk, pos.get()) == RD_KAFKA_RESP_ERR_NO_ERROR && pos->elems[0].offset >= 0) {
      next = std::max(next, pos->elems[0].offset);
    }
    if (next >= high) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      throw outbox_error("kafka", "reading the checkpoint topic " + sink.checkpoint_topic + " timed out",
                         retry_class::retryable);
    }
    const kafka::message_ptr m(rd_kafka_consumer_poll(rk, std::min(500, left())));
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      next = std::max(next, m->offset);
      continue;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw outbox_error("kafka",
                         "reading the checkpoint topic " + sink.checkpoint_topic + ": " +
                             rd_kafka_message_errstr(m.get()),
                         retry_class::retryable);
    }
    next = m->offset + 1;
    if (m->key == nullptr || std::string_view(static_cast<const char*>(m->key), m->key_len) != slot) continue;
    if (m->payload == nullptr) {
      last.reset();  // a tombstone: the checkpoint was removed on purpose
      continue;
    }
    std::string error;
    auto c = decode_checkpoint(std::string_view(static_cast<const char*>(m->payload), m->len), error);
    if (!c) {
      throw outbox_error("kafka",
                         "the checkpoint of slot " + slot + " at offset " + std::to_string(m->offset) + " of " +
                             sink.checkpoint_topic + " is unreadable (" + error + ")",
                         retry_class::fatal);
    }
    last = std::move(c);
  }
  rd_kafka_consumer_close(rk);
  return last;
}

}  // namespace outbox::relay
