// outboxctl: operators' tool for the outbox relay.
#include "commands.hpp"

#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr const char* k_usage =
    "usage: outboxctl slot status --dsn DSN [--slot S] [--json]\n"
    "       outboxctl dlq list   --brokers B --topic T.dlq [--since TIME] [--until TIME] [--key K]\n"
    "                            [--event-id ID] [--error-contains S] [--partition P [--offset O]] [--json]\n"
    "       outboxctl dlq show   --brokers B --topic T.dlq --partition P --offset O [--json]\n"
    "       outboxctl dlq replay --brokers B --topic T.dlq [list's filters] [--to TOPIC] [--rate N/s]\n"
    "                            [--limit N] [--dedupe-retention D] [--force] [--all-copies] [--dry-run]\n"
    "       every dlq command: [--property KEY=VALUE]... [--kafka-config FILE]  (librdkafka settings)\n"
    "       outboxctl verify --dsn DSN --brokers B [--table SCHEMA.TABLE] [--since TIME] [--grace D] [--json]\n"
    "       outboxctl verify --config relay.yaml [--since TIME] [--grace D] [--json]\n"
    "       outboxctl reconcile --group G --inbox-dsn DSN (--outbox-dsn DSN [--table SCHEMA.TABLE ...]\n"
    "                           | --config relay.yaml | --from-kafka --brokers B --topic T ...)\n"
    "                           [--since TIME] [--until TIME] [--date YYYY-MM-DD] [--tz ZONE] [--grace D] [--json]\n"
    "       outboxctl --version | --help\n"
    "exit codes: 0 ok, 1 runtime failure, 2 bad usage, 3 verify found rows missing from Kafka or reconcile found\n"
    "            events neither applied nor dead-lettered\n";

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << k_usage;
    return args.empty() ? outbox::ctl::k_exit_usage : outbox::ctl::k_exit_ok;
  }
  if (args[0] == "--version") {
    std::cout << "outboxctl " OUTBOX_VERSION "\n";
    return outbox::ctl::k_exit_ok;
  }
  if (args.size() >= 2 && args[0] == "slot" && args[1] == "status") {
    return outbox::ctl::slot_status({args.begin() + 2, args.end()});
  }
  if (args[0] == "dlq") return outbox::ctl::dlq({args.begin() + 1, args.end()});
  if (args[0] == "verify") return outbox::ctl::verify_command({args.begin() + 1, args.end()});
  if (args[0] == "reconcile") return outbox::ctl::reconcile_command({args.begin() + 1, args.end()});
  std::cerr << "outboxctl: unknown command '" << args[0] << (args.size() > 1 ? " " + args[1] : "") << "'\n" << k_usage;
  return outbox::ctl::k_exit_usage;
}
