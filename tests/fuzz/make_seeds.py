#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (except the config files, copied from deploy/ and
examples/ by hand). pgoutput and the replication COPY protocol are built byte by byte after PostgreSQL's
"Logical Streaming Replication Protocol" and "Streaming Replication Protocol" chapters (proto_version 1).
Run from anywhere: tests/fuzz/make_seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

OUTBOX_OID = 16385
UUID, TEXT, JSONB, BYTEA, INT4 = 2950, 25, 3802, 17, 23
LSN = 0x16B374D848
COMMIT_TIME_US = 817_948_800_000_000  # 2025-12-02 in microseconds since 2000-01-01


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def cstr(s):
    return s.encode() + b"\0"


def begin(xid=771):
    return b"B" + struct.pack(">QqI", LSN, COMMIT_TIME_US, xid)


def commit():
    return b"C" + struct.pack(">BQQq", 0, LSN, LSN + 0x30, COMMIT_TIME_US)


def relation(oid=OUTBOX_OID, ns="public", name="outbox", cols=None, ident=b"d"):
    cols = cols or [("id", UUID, True), ("aggregate_type", TEXT, False), ("aggregate_id", TEXT, False),
                    ("event_type", TEXT, False), ("payload", JSONB, False), ("headers", JSONB, False)]
    out = b"R" + struct.pack(">I", oid) + cstr(ns) + cstr(name) + ident + struct.pack(">H", len(cols))
    for name_, typ, key in cols:
        out += struct.pack(">B", 1 if key else 0) + cstr(name_) + struct.pack(">Ii", typ, -1)
    return out


def tuple_data(values):
    out = struct.pack(">H", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v == "<toast>":
            out += b"u"
        else:
            b = v.encode() if isinstance(v, str) else v
            out += b"t" + struct.pack(">i", len(b)) + b
    return out


def insert(values, oid=OUTBOX_OID):
    return b"I" + struct.pack(">I", oid) + b"N" + tuple_data(values)


def update(old, new, oid=OUTBOX_OID):
    return b"U" + struct.pack(">I", oid) + b"O" + tuple_data(old) + b"N" + tuple_data(new)


def delete(old, oid=OUTBOX_OID):
    return b"D" + struct.pack(">I", oid) + b"K" + tuple_data(old)


def truncate(oids):
    return b"T" + struct.pack(">IB", len(oids), 0) + b"".join(struct.pack(">I", o) for o in oids)


def message(prefix, content, transactional=True):
    c = content.encode()
    return b"M" + struct.pack(">BQ", 1 if transactional else 0, LSN - 8) + cstr(prefix) + struct.pack(">I", len(c)) + c


def type_msg(oid=16390, ns="public", name="mood"):
    return b"Y" + struct.pack(">I", oid) + cstr(ns) + cstr(name)


def origin(name="upstream"):
    return b"O" + struct.pack(">Q", LSN - 0x100) + cstr(name)


def xlog(payload, start=LSN):
    return b"w" + struct.pack(">QQq", start, start + len(payload), COMMIT_TIME_US + 5000) + payload


def keepalive(reply):
    return b"k" + struct.pack(">Qq?", LSN + 0x1000, COMMIT_TIME_US + 9000, reply)


def framed(msgs):
    return b"".join(struct.pack(">H", len(m)) + m for m in msgs)


ROW = ["6f1c1b2e-4d1f-4a2b-9c1e-2a7b9d0e5f11", "orders", "order-1042", "created",
       '{"order_id": 1042, "total_cents": 12990, "currency": "EUR"}',
       '{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "tenant": "acme"}']
ENVELOPE = ('{"id": "0d5e8a3c-5b7e-4f0a-8a53-1f4b1c2d3e4f", "aggregate_type": "payments", '
            '"aggregate_id": "pay-77", "event_type": "captured", "payload": {"amount_cents": 5000}, '
            '"headers": {"trace_id": "00f067aa0ba902b7", "retry": 3}}')


def pgoutput_seeds():
    rel = relation()
    write("pgoutput_decoder", "insert_tx", framed([begin(), rel, insert(ROW), commit()]))
    write("pgoutput_decoder", "two_rows_null_payload",
          framed([begin(), rel, insert(ROW), insert(ROW[:4] + [None, "{}"]), commit()]))
    write("pgoutput_decoder", "message_tx", framed([begin(), message("outbox", ENVELOPE), commit()]))
    write("pgoutput_decoder", "message_other_prefix", framed([message("audit", '{"x": 1}', False)]))
    write("pgoutput_decoder", "type_origin_update_delete_truncate",
          framed([begin(), origin(), type_msg(), rel, update(ROW, ROW), delete(ROW[:1] + [None] * 5),
                  truncate([OUTBOX_OID, 16400]), commit()]))
    write("pgoutput_decoder", "relation_changed",
          framed([rel, relation(cols=[("id", UUID, True), ("aggregate_type", TEXT, False)]), insert(ROW[:2])]))
    write("pgoutput_decoder", "other_table",
          framed([relation(oid=16500, ns="", name="audit_log", ident=b"f"), insert(["x"], oid=16500)]))
    write("pgoutput_decoder", "toast_and_bytea",
          framed([relation(cols=[("id", UUID, True), ("aggregate_type", TEXT, False), ("aggregate_id", TEXT, False),
                                 ("event_type", TEXT, False), ("payload", BYTEA, False)]),
                  insert(ROW[:4] + ["\\x0a0bff"]), insert(ROW[:4] + ["<toast>"])]))


def copy_protocol_seeds():
    write("copy_protocol", "xlog_begin", xlog(begin()))
    write("copy_protocol", "xlog_relation", xlog(relation()))
    write("copy_protocol", "xlog_message", xlog(message("outbox", ENVELOPE)))
    write("copy_protocol", "xlog_commit", xlog(commit()))
    write("copy_protocol", "keepalive", keepalive(False))
    write("copy_protocol", "keepalive_reply", keepalive(True))


def router_row(mode, values):
    return bytes([mode]) + b"\0".join((b"n" if v is None else b"t" + (v.encode() if isinstance(v, str) else v))
                                      for v in values)


def router_seeds():
    write("router", "row", router_row(0, ROW))
    write("router", "row_allowed_topics", router_row(0x10, ["a1", "payments", "p-1", "refunded", "{}", "{}"]))
    write("router", "row_bytea_payload", router_row(0x02, ROW[:4] + ["\\x7b7d", '{"k": "v"}']))
    write("router", "row_text_headers", router_row(0x04 | 0x08, ROW[:5] + ['{"a": "\\u00e9\\n", "n": -1.5e3}']))
    write("router", "row_null_headers", router_row(0, ROW[:4] + [None, None]))
    write("router", "row_reserved_header", router_row(0, ROW[:5] + ['{"outbox_lsn": "0/0"}']))
    write("router", "row_bad_utf8", router_row(0, [ROW[0], b"ord\xc3ers"] + ROW[2:]))
    write("router", "envelope", b"\x01outbox\0" + ENVELOPE.encode())
    write("router", "envelope_allowed", b"\x11outbox\0" + ENVELOPE.encode())
    write("router", "envelope_escaped", b"\x01outbox\0" +
          b'{"id": "e\\u0031", "aggregate_type": "orders", "aggregate_id": "k\\"1", "event_type": "x", '
          b'"payload": "quoted", "headers": {"na\\u006de": [1, {"deep": [true, false, null]}]}}')


def config_scalar_seeds():
    for i, t in enumerate(["250ms", "10s", "5m", "1h", "7d", "0s", "9223372036854775807ms", "1.5s", "-1s"]):
        write("config_scalars", "duration_%d" % i, b"\x00" + t.encode())
    for i, t in enumerate(["512KiB", "64MiB", "1GiB", "1TiB", "1KB", "1MB", "4096B", "4096", "18446744073709551615"]):
        write("config_scalars", "size_%d" % i, b"\x01" + t.encode())
    for i, t in enumerate(["${OUTBOX_KAFKA_BROKERS}", "host=${PGHOST:-127.0.0.1} port=${PGPORT:-5432}",
                           "$$5 ${EMPTY:-x} $PATH", "${TIMEOUT}", "${UNSET_VARIABLE}", "${1BAD}", "${OPEN"]):
        write("config_scalars", "interpolate_%d" % i, b"\x02" + t.encode())


def headers(pairs):
    return b"\0".join(b"%s\0%s" % (k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in pairs)


RELAY_HEADERS = [("event_id", ROW[0]), ("event_type", "created"), ("aggregate_type", "orders"),
                 ("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), ("outbox_lsn", "16/B374D848"),
                 ("outbox_xid", "771"), ("outbox_commit_ts_ms", "1764633600000"), ("outbox_table", "public.outbox")]


def consumer_header_seeds():
    write("consumer_headers", "relay_record", headers(RELAY_HEADERS))
    retry = [("retry_attempt", "5"), ("retry_due_ms", "1764633610000"), ("retry_original_topic", "payments"),
             ("retry_original_partition", "3"), ("retry_original_offset", "1042"),
             ("retry_original_timestamp_ms", "1764633600000"), ("retry_first_failure_ms", "1764633600123"),
             ("retry_consumer_group", "ledger"), ("retry_tier", "0"),
             ("retry_reason", "account acc-9 unknown (will retry)")]
    write("consumer_headers", "retry_copy", headers(RELAY_HEADERS + retry))
    write("consumer_headers", "replayed", headers(RELAY_HEADERS + [("dlq_replay_count", "2")] + retry[:5]))
    write("consumer_headers", "hostile_numbers",
          headers([("event_id", ""), ("retry_tier", "99999999999"), ("retry_attempt", "-4"),
                   ("retry_original_partition", "2147483648"), ("retry_due_ms", "9223372036854775807")]))


def dlq_seeds():
    def record(since, key, value, pairs):
        return since.encode() + b"\0" + key.encode() + b"\0" + value.encode() + b"\0" + headers(pairs)

    ours = RELAY_HEADERS + [("dlq_original_topic", "payments"), ("dlq_original_partition", "3"),
                            ("dlq_original_offset", "1042"), ("dlq_original_timestamp_ms", "1764633600000"),
                            ("dlq_consumer_group", "ledger"), ("dlq_error_class", "retry_exhausted"),
                            ("dlq_error_message", "account acc-9 unknown"), ("dlq_attempts", "8"),
                            ("dlq_first_failure_ms", "1764633600123"), ("dlq_last_failure_ms", "1764634200000")]
    write("dlq_record", "outbox", record("2h", "pay-77", '{"amount_cents": 5000}', ours))
    write("dlq_record", "outbox_replayed", record("2026-11-23T10:00:00Z", "pay-77", "{}",
                                                  ours + [("dlq_replay_count", "1")]))
    relay = [("event_id", ROW[0]), ("outbox_dlq_reason", "bad_topic"),
             ("outbox_dlq_error", "outbox table public.outbox (commit LSN 16/B374D848, xid 771): bad topic"),
             ("outbox_dlq_table", "public.outbox"), ("outbox_dlq_lsn", "16/B374D848"), ("outbox_dlq_xid", "771"),
             ("outbox_dlq_column", "aggregate_type"), ("outbox_dlq_topic", "orders"),
             ("outbox_dlq_value_kind", "record"), ("outbox_dlq_truncated", "false")]
    write("dlq_record", "relay", record("2026-11-23T10:00:00.250+02:00", "order-1042", ROW[4], relay))
    write("dlq_record", "relay_row", record("15m", "", "{}", relay[:8] + [("outbox_dlq_value_kind", "row"),
                                                                          ("outbox_dlq_truncated", "true")]))
    spring = [("kafka_dlt-original-topic", "payments"), ("kafka_dlt-original-partition", struct.pack(">i", 2)),
              ("kafka_dlt-original-offset", struct.pack(">q", 77)),
              ("kafka_dlt-original-timestamp", struct.pack(">q", 1764633600000)),
              ("kafka_dlt-original-consumer-group", "ledger-spring"),
              ("kafka_dlt-exception-fqcn", "java.lang.IllegalStateException"),
              ("kafka_dlt-exception-message", "no account pay-77"), ("event_id", "\x01")]
    write("dlq_record", "spring", record("7d", "pay-77", "{}", spring))
    connect = [("__connect.errors.topic", "payments"), ("__connect.errors.partition", "1"),
               ("__connect.errors.offset", "9"), ("__connect.errors.connector.name", "jdbc-sink"),
               ("__connect.errors.task.id", "0"), ("__connect.errors.stage", "VALUE_CONVERTER"),
               ("__connect.errors.exception.class.name", "org.apache.kafka.connect.errors.DataException"),
               ("__connect.errors.exception.message", "Converting byte[] to Kafka Connect data failed")]
    write("dlq_record", "connect", record("2026-02-29T23:59:60Z", "k", "\x00\x01binary", connect))


if __name__ == "__main__":
    pgoutput_seeds()
    copy_protocol_seeds()
    router_seeds()
    config_scalar_seeds()
    consumer_header_seeds()
    dlq_seeds()
