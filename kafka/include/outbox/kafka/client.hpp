#pragma once

#include "outbox/base/log.hpp"
#include "outbox/kafka/handles.hpp"

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace outbox::kafka {

/// librdkafka's syslog levels mapped once for the whole project: 0-2 error; 3-4 warn (librdkafka logs
/// transient connection failures at 3); 5-6 info; 7 debug.
log::level level_of(int syslog_level) noexcept;

/// Builds a librdkafka configuration. Every set() says where the setting came from (`origin`, e.g.
/// "sink.properties."), so a refused setting becomes an outbox_error("config") naming the config key.
class conf_builder {
 public:
  conf_builder();
  conf_builder(const conf_builder&) = delete;
  conf_builder& operator=(const conf_builder&) = delete;

  /// Sets one property; throws outbox_error("config", "<origin><key>: <librdkafka's reason>").
  conf_builder& set(std::string_view key, std::string_view value, std::string_view origin = {});
  /// Sets every property whose name `keep` accepts (all when `keep` is empty), each named `<origin><key>`.
  conf_builder& set_all(const std::vector<std::pair<std::string, std::string>>& properties, std::string_view origin,
                        const std::function<bool(std::string_view key)>& keep = {});
  /// Routes librdkafka's log lines to outbox::log (component "kafka", the client's name as a field);
  /// `quiet` drops them instead (a command-line tool whose own messages say the same).
  conf_builder& log_lines(bool quiet = false);

  /// The configuration being built, for the callbacks and opaque a client needs.
  [[nodiscard]] rd_kafka_conf_t* get() const noexcept { return m_conf.get(); }

  /// Creates the client, which takes the configuration over; throws outbox_error("config") naming `what`.
  client_ptr create(rd_kafka_type_t type, std::string_view what);

 private:
  conf_ptr m_conf;
};

/// Whether the value of librdkafka property `key` is a secret (passwords, private keys, tokens, JAAS config):
/// never printed, and cut out of the error a refused setting gives.
bool secret_property(std::string_view key) noexcept;

/// Whether `key` is a librdkafka consumer-only setting (group.*, auto.*, fetch.*, isolation.level, ...),
/// which a producer built from the same `properties` must leave out.
bool consumer_only_property(std::string_view key) noexcept;

}  // namespace outbox::kafka
