#!/usr/bin/env python3
"""A seeded, reproducible soak of the whole path against the real services: a steady load of payment callbacks
written to an outbox table, published by outbox-relay, and credited to accounts by two payment-ledger instances
(one consumer group, the PostgreSQL inbox in the credit's transaction), while the soak kill -9s the relay and the
ledgers at random moments, restarts the broker and PostgreSQL now and then, and blackholes the network between the
clients and Kafka for a few seconds.

At the end, with every process running again and the load stopped, it checks:
  - every outbox row is in Kafka (`outboxctl verify`, and kcat reading the topic as a second witness);
  - every event is applied by the group (`outboxctl reconcile`: nothing missing, nothing dead-lettered);
  - every account's balance equals the sum of its callbacks in the outbox (no loss, no double credit);
  - the inbox holds each event once.

  tests/soak/soak.py [--kills N] [--minutes M] [--seed S] [--rate ROWS_PER_S] [--out DIR]

Needs the services (scripts/services.sh start) and a build (scripts/build.sh). Not part of the test suite: a run
of 1,000 kills takes about an hour. Every action goes to DIR/history.jsonl (one JSON object per line: seconds
since the start, the action, its target and detail); the result goes to DIR/result.json and to stdout. Exit 0
when nothing was lost and nothing applied twice, 1 otherwise. The same seed gives the same schedule of actions
(the moments depend on the machine's speed, the order and the choice do not).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def services_env() -> dict[str, str]:
    run_dir = Path(os.environ.get("OUTBOX_RUN_DIR", ROOT / ".run"))
    env_file = run_dir / "services.env"
    if not env_file.exists():
        sys.exit(f"soak: {env_file} not found: start the services first (scripts/services.sh start)")
    out = {}
    for line in env_file.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].split("=", 1)
            out[k] = v.strip("'")
    return out


class History:
    """Every action, one JSON object per line, flushed as it happens (a run cut short keeps what it did)."""

    def __init__(self, path: Path):
        self.t0 = time.monotonic()
        self.f = path.open("w")
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, action: str, target: str = "", **detail) -> None:
        with self.lock:
            self.counts[action] = self.counts.get(action, 0) + 1
            rec = {"t": round(time.monotonic() - self.t0, 3), "action": action, "target": target}
            rec.update(detail)
            self.f.write(json.dumps(rec) + "\n")
            self.f.flush()


class Proxy:
    """A TCP proxy in front of the broker's PROXIED listener (which advertises this proxy's port), so that every
    connection the relay and the ledgers make to Kafka passes here. blackhole(s) stops forwarding in both
    directions for s seconds (bytes wait in the kernel's buffers, as on a cut link) and then either resumes or
    resets every connection, as a long cut does."""

    def __init__(self, listen_port: int, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.server = socket.create_server(("127.0.0.1", listen_port), reuse_port=False)
        self.open = threading.Event()
        self.open.set()
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self.open.wait()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self.lock:
            self.conns += [client, upstream]
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                self.open.wait()
                data = src.recv(65536)
                if not data:
                    break
                self.open.wait()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def blackhole(self, seconds: float, reset: bool) -> None:
        self.open.clear()
        time.sleep(seconds)
        if reset:
            with self.lock:
                conns, self.conns = self.conns, []
            for s in conns:
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    s.close()
                except OSError:
                    pass
        self.open.set()


class Proc:
    """One supervised process: started again at once after every kill, its output appended to one log."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path):
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.p: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("a") as f:
            f.write(f"---- start {self.starts} ----\n")
        for attempt in range(10):
            try:
                with self.log_path.open("a") as log_file:
                    self.p = subprocess.Popen(self.argv, env=self.env, stdout=log_file, stderr=subprocess.STDOUT,
                                              start_new_session=True)
                break
            except OSError:
                if attempt == 9:
                    raise
                time.sleep(0.5)
        self.starts += 1

    def kill9(self) -> int:
        assert self.p is not None
        pid = self.p.pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()
        return pid

    def ensure_running(self, history: History) -> None:
        if self.p is not None and self.p.poll() is not None:
            history.add("exited", self.name, code=self.p.returncode)
            self.start()

    def stop(self) -> int | None:
        if self.p is None or self.p.poll() is not None:
            return self.p.returncode if self.p else None
        self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()


def psql(dsn: str, sql: str, timeout: float = 60) -> str:
    r = subprocess.run(["psql", dsn, "-qtAX", "-v", "ON_ERROR_STOP=1", "-c", sql], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return r.stdout.strip()


def wait_until(cond, timeout: float, every: float = 1.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return True
        except Exception:  # a service that is restarting: ask again
            pass
        time.sleep(every)
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=1000, help="kill -9 this many processes in all (default 1000)")
    ap.add_argument("--minutes", type=float, default=0, help="or run this long (whichever comes first; 0: no limit)")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--rate", type=int, default=200, help="outbox rows per second (default 200)")
    ap.add_argument("--accounts", type=int, default=500)
    ap.add_argument("--broker-restart-every", type=int, default=150, help="restart Kafka every N kills (0: never)")
    ap.add_argument("--postgres-restart-every", type=int, default=200,
                    help="crash and restart PostgreSQL every N kills (0: never)")
    ap.add_argument("--blackhole-every", type=int, default=40, help="cut the network to Kafka every N kills (0: never)")
    ap.add_argument("--delivery", choices=["at_least_once", "exactly_once"], default="at_least_once")
    ap.add_argument("--out", type=Path, default=None, help="where the logs, history and result go")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    svc = services_env()
    build = Path(os.environ.get("OUTBOX_BUILD_DIR", ROOT / "build"))
    relay_bin = build / "relay/outbox-relay"
    ledger_bin = build / "examples/payment-ledger/payment-ledger"
    ctl_bin = build / "outboxctl/outboxctl"
    for b in (relay_bin, ledger_bin, ctl_bin):
        if not b.exists():
            sys.exit(f"soak: {b} not found: build first (scripts/build.sh)")
    tag = f"soak_{args.seed}"
    out = args.out or (ROOT / ".run" / tag)
    out.mkdir(parents=True, exist_ok=True)
    # Copies of the binaries: a build during the run must not change (or lock) what the soak restarts.
    (out / "bin").mkdir(exist_ok=True)
    for b in (relay_bin, ledger_bin, ctl_bin):
        shutil.copy2(b, out / "bin" / b.name)
    relay_bin, ledger_bin, ctl_bin = (out / "bin" / b.name for b in (relay_bin, ledger_bin, ctl_bin))
    history = History(out / "history.jsonl")
    history.add("begin", "", seed=args.seed, kills=args.kills, minutes=args.minutes, rate=args.rate,
                delivery=args.delivery)
    log(f"soak {tag}: seed {args.seed}, {args.kills} kills, output in {out}")

    dsn = svc["OUTBOX_PG_DSN"]
    topic = f"{tag}_payments"
    table = f"{tag}_outbox"
    ledger_db = f"{tag}_ledger"
    group = f"{tag}_ledger"
    admin = dsn
    psql(admin, f"DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
                "aggregate_type text NOT NULL, aggregate_id text NOT NULL, event_type text NOT NULL, payload jsonb, "
                "headers jsonb NOT NULL DEFAULT '{}', created_at timestamptz NOT NULL DEFAULT now())")
    base_dsn = " ".join(kv for kv in dsn.split() if not kv.startswith("dbname="))
    psql(base_dsn + " dbname=postgres", f"DROP DATABASE IF EXISTS {ledger_db}")
    psql(base_dsn + " dbname=postgres", f"CREATE DATABASE {ledger_db}")
    ledger_dsn = base_dsn + f" dbname={ledger_db}"
    psql(ledger_dsn, (ROOT / "examples/payment-ledger/schema.sql").read_text())
    psql(ledger_dsn, f"INSERT INTO accounts SELECT 'acct-' || g, 0 FROM generate_series(0, {args.accounts - 1}) g")

    proxy_port = int(svc["OUTBOX_KAFKA_PROXY_PORT"])
    proxy = Proxy(proxy_port, int(svc["OUTBOX_KAFKA_PROXIED_PORT"]))
    proxied_brokers = f"127.0.0.1:{proxy_port}"
    direct_brokers = svc["OUTBOX_KAFKA_BROKERS"]

    (out / "relay.yaml").write_text(f"""source:
  dsn: "{dsn}"
  slot: {tag}
  publication: {tag}_pub
  tables:
    - name: public.{table}
  connect_timeout: 5s
  stream_timeout: 20s
sink:
  brokers: {proxied_brokers}
  delivery: {args.delivery}
  checkpoint_topic: {tag}_checkpoints
relay:
  status_interval: 500ms
metrics:
  listen: 127.0.0.1:0
""")
    (out / "ledger.yaml").write_text(f"""consumer:
  brokers: {proxied_brokers}
  group_id: {group}
  topics: [{topic}]
dedupe:
  store: postgres
  dsn: "{ledger_dsn}"
  retention: 15d
retry:
  schedule: exponential
  initial: 200ms
  max: 5s
  attempts: 50
  ordering: per_key
dlq:
  topic: "{{topic}}.{{group}}.dlq"
metrics:
  listen: 127.0.0.1:0
ledger:
  dsn: "{ledger_dsn}"
""")
    env = dict(os.environ)
    env.update(svc)
    procs = {
        "relay": Proc("relay", [str(relay_bin), "--config", str(out / "relay.yaml")], env, out / "relay.log"),
        "ledger-a": Proc("ledger-a", [str(ledger_bin), "--config", str(out / "ledger.yaml")], env, out / "ledger-a.log"),
        "ledger-b": Proc("ledger-b", [str(ledger_bin), "--config", str(out / "ledger.yaml")], env, out / "ledger-b.log"),
    }
    for p in procs.values():
        p.start()
        history.add("start", p.name)

    # The load: transactions of 1-20 callbacks at about --rate rows per second. PostgreSQL's restarts fail some
    # inserts; what counts is what the outbox table holds at the end.
    stop_writing = threading.Event()
    written = {"tx": 0, "failed": 0}

    def writer() -> None:
        wr = random.Random(args.seed ^ 0x5eed)
        while not stop_writing.is_set():
            rows = wr.randint(1, 20)
            sql = (f"INSERT INTO {table} (aggregate_type, aggregate_id, event_type, payload) SELECT '{topic}', a, "
                   "'payment.succeeded', jsonb_build_object('account_id', a, 'amount_cents', 1 + (random() * 99999)::int) "
                   f"FROM (SELECT 'acct-' || (random() * {args.accounts - 1})::int AS a FROM generate_series(1, {rows})) s")
            try:
                psql(dsn, sql, timeout=30)
                written["tx"] += 1
            except Exception:
                written["failed"] += 1
                time.sleep(0.5)
            time.sleep(rows / args.rate)

    wthread = threading.Thread(target=writer, daemon=True)
    wthread.start()

    def run_services(*a: str) -> None:
        r = subprocess.run([str(ROOT / "scripts/services.sh"), *a], capture_output=True, text=True, env=env,
                           timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"services.sh {' '.join(a)}: {r.stderr.strip()[-2000:]}")

    def stop_all() -> None:
        for p in procs.values():
            if p.p is not None and p.p.poll() is None:
                p.p.kill()
                p.p.wait()

    kills = 0
    started = time.monotonic()
    deadline = started + args.minutes * 60 if args.minutes > 0 else float("inf")
    last_report = started
    try:
        while kills < args.kills and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 2.5))
            for p in procs.values():
                p.ensure_running(history)
            target = rng.choices(["relay", "ledger-a", "ledger-b"], weights=[50, 25, 25])[0]
            pid = procs[target].kill9()
            kills += 1
            history.add("kill9", target, pid=pid, n=kills)
            procs[target].start()
            if args.blackhole_every and kills % args.blackhole_every == 0:
                seconds = round(rng.uniform(2, 8), 1)
                reset = rng.random() < 0.5
                history.add("blackhole", "kafka", seconds=seconds, reset=reset)
                proxy.blackhole(seconds, reset)
            if args.broker_restart_every and kills % args.broker_restart_every == 0:
                history.add("restart", "kafka")
                run_services("stop", "kafka")
                run_services("start", "kafka")
            if args.postgres_restart_every and kills % args.postgres_restart_every == 0:
                history.add("crash", "postgres")
                run_services("crash-primary")
                run_services("start", "postgres")
            if time.monotonic() - last_report > 60:
                last_report = time.monotonic()
                log(f"{kills} kills, {written['tx']} transactions written ({written['failed']} failed), "
                    f"{history.counts}")
    except BaseException:
        stop_writing.set()
        stop_all()
        raise
    finally:
        stop_writing.set()
        wthread.join(60)
    history.add("load_stopped", "", transactions=written["tx"], failed=written["failed"])
    log(f"load stopped after {kills} kills in {time.monotonic() - started:.0f} s; draining")

    # Drain: every process running, the slot past the end of the load, every event applied.
    for p in procs.values():
        p.ensure_running(history)
    end_lsn = psql(dsn, "SELECT pg_current_wal_lsn()")
    rows = int(psql(dsn, f"SELECT count(*) FROM {table}"))
    drained = wait_until(lambda: psql(dsn, f"SELECT confirmed_flush_lsn >= '{end_lsn}' FROM pg_replication_slots "
                                           f"WHERE slot_name = '{tag}'") == "t", 600)
    applied = wait_until(lambda: int(psql(ledger_dsn, f"SELECT count(*) FROM outbox_inbox WHERE consumer_group = "
                                                      f"'{group}'")) >= rows, 900, 2)
    # The checks, each by a tool of its own.
    since = psql(dsn, f"SELECT to_char((min(created_at) - interval '1 minute') AT TIME ZONE 'UTC', "
                      f"'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM {table}")
    until = psql(dsn, f"SELECT to_char((max(created_at) + interval '1 minute') AT TIME ZONE 'UTC', "
                      f"'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM {table}")
    verify = subprocess.run([str(ctl_bin), "verify", "--dsn", dsn, "--brokers", direct_brokers, "--table",
                             f"public.{table}", "--topic-template", topic, "--since", since, "--until", until,
                             "--grace", "0s", "--json"], capture_output=True, text=True, env=env, timeout=600)
    reconcile = subprocess.run([str(ctl_bin), "reconcile", "--group", group, "--inbox-dsn", ledger_dsn,
                                "--outbox-dsn", dsn, "--table", f"public.{table}", "--topic-template", topic,
                                "--since", since, "--until", until, "--grace", "0s", "--json"],
                               capture_output=True, text=True, env=env, timeout=600)
    kcat = subprocess.run(["kcat", "-C", "-b", direct_brokers, "-t", topic, "-o", "beginning", "-e", "-q", "-f",
                           "%h\n"], capture_output=True, text=True, timeout=900)
    in_kafka: dict[str, int] = {}
    for line in kcat.stdout.splitlines():
        at = line.find("event_id=")
        if at >= 0:
            eid = line[at + 9:at + 45]
            in_kafka[eid] = in_kafka.get(eid, 0) + 1
    ids = set(psql(dsn, f"SELECT id FROM {table}", timeout=600).split())
    missing_in_kafka = sorted(ids - set(in_kafka))
    expected_bal = dict(l.split("|") for l in psql(dsn, f"SELECT payload->>'account_id', sum((payload->>'amount_cents')::bigint) "
                                                        f"FROM {table} GROUP BY 1").splitlines())
    actual_bal = dict(l.split("|") for l in psql(ledger_dsn, "SELECT account_id, balance_cents FROM accounts "
                                                             "WHERE balance_cents <> 0").splitlines())
    wrong = sorted(a for a in set(expected_bal) | set(actual_bal) if expected_bal.get(a, "0") != actual_bal.get(a, "0"))
    inbox_rows, inbox_distinct = psql(ledger_dsn, f"SELECT count(*), count(DISTINCT event_id) FROM outbox_inbox "
                                                  f"WHERE consumer_group = '{group}'").split("|")
    over = sum(1 for a in wrong if int(actual_bal.get(a, "0")) > int(expected_bal.get(a, "0")))

    for p in procs.values():
        history.add("stop", p.name, code=p.stop())
    try:
        verify_json = json.loads(verify.stdout)
    except ValueError:
        verify_json = {"exit": verify.returncode, "output": (verify.stdout + verify.stderr)[-2000:]}
    try:
        reconcile_json = json.loads(reconcile.stdout)
    except ValueError:
        reconcile_json = {"exit": reconcile.returncode, "output": (reconcile.stdout + reconcile.stderr)[-2000:]}
    result = {
        "seed": args.seed,
        "command": " ".join(sys.argv),
        "delivery": args.delivery,
        "duration_s": round(time.monotonic() - started),
        "kills": kills,
        "actions": history.counts,
        "events": len(ids),
        "transactions_written": written["tx"],
        "writes_failed": written["failed"],
        "drained": drained,
        "all_applied_in_time": applied,
        "missing_in_kafka": len(missing_in_kafka),
        "kafka_records": sum(in_kafka.values()),
        "kafka_copies_beyond_one": sum(n - 1 for n in in_kafka.values() if n > 1),
        "verify_exit": verify.returncode,
        "reconcile_exit": reconcile.returncode,
        "reconcile_missing": reconcile_json.get("missing"),
        "reconcile_dead_lettered": reconcile_json.get("dead_lettered"),
        "accounts_wrong": len(wrong),
        "accounts_over_credited": over,
        "inbox_rows": int(inbox_rows),
        "inbox_distinct": int(inbox_distinct),
        "relay_starts": procs["relay"].starts,
        "ledger_starts": procs["ledger-a"].starts + procs["ledger-b"].starts,
    }
    result["losses"] = len(missing_in_kafka) + (reconcile_json.get("missing") or 0) + (len(wrong) - over)
    result["double_effects"] = over + (int(inbox_rows) - int(inbox_distinct))
    ok = (result["losses"] == 0 and result["double_effects"] == 0 and verify.returncode == 0 and
          reconcile.returncode == 0 and drained and applied)
    result["ok"] = ok
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "verify.json").write_text(json.dumps(verify_json, indent=2) + "\n")
    (out / "reconcile.json").write_text(json.dumps(reconcile_json, indent=2) + "\n")
    if wrong:
        (out / "wrong_accounts.txt").write_text(
            "".join(f"{a} expected {expected_bal.get(a, '0')} got {actual_bal.get(a, '0')}\n" for a in wrong))
    history.add("end", "", ok=ok)
    print(json.dumps(result, indent=2))
    log(f"soak {'passed' if ok else 'FAILED'}: {kills} kills, {len(ids)} events, {result['losses']} lost, "
        f"{result['double_effects']} applied twice; {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
