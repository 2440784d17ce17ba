#!/usr/bin/env python3
"""Static checks of deploy/: the files parse, and agree with each other and with the tested project.

  check_deploy.py --source-dir REPO [--promtool PATH] [--binary PATH ...] [--extra-consumer-key KEY ...]

- deploy/config/*.yaml: every key is in the generated reference docs/configuration.md, with a value
  of the documented type; required keys are present.
- compose.yaml: every mounted or built file exists; images pinned to the versions the suite runs
  (PostgreSQL of scripts/install.sh, Kafka of scripts/kafka/pom.xml, Prometheus of promtool); every
  service's config is mounted, gets the environment it needs, and its metrics.listen port is the one
  Prometheus scrapes and the healthcheck asks; brokers and database hosts are compose services.
- kubernetes/relay-sidecar.yaml: the ConfigMaps hold deploy/config/relay.yaml and
  deploy/postgres/init.sh verbatim; probes and ports match metrics.listen; secrets exist.
- kubernetes/relay-standby.yaml: the pair's second relay runs the sidecar's image and relay ConfigMap, sets every
  variable relay.yaml needs, and reaches the StatefulSet's pod by its DNS name.
- kubernetes/reconcile-cronjob.yaml: outboxctl reconcile from the same image, with relay-sidecar.yaml's relay
  ConfigMap and every variable relay.yaml needs; the group is deploy/config/ledger.yaml's; --tz is the
  CronJob's timeZone; exit 3 fails the Job at once (podFailurePolicy); a writable /tmp for sorted runs.
- Dockerfile: Debian 12 stages; build packages are those of scripts/install.sh; the runtime packages
  provide every shared library of the built binaries (--binary); non-root runtime.
- systemd unit: restart policy, hardening, stop timeout above relay.shutdown_timeout.
- grafana/outbox.json and prometheus/alerts.yml: structure, coverage of the metrics, every alert
  documented in docs/operations.md and tested (fires and does not fire) in alerts_test.yml.

Prints every problem found, then exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

RELAY_ALERTS = ["OutboxRelayDown", "OutboxRelayStalled", "OutboxSlotRetainingTooMuchWAL", "OutboxRelayPublishErrors"]
CONSUMER_ALERTS = ["OutboxConsumerDLQRate", "OutboxConsumerHalted"]
# Every metric a panel must show (SPEC §4 and §5, plus what the lead adds: stalled, halted, retries).
DASHBOARD_METRICS = [
    "outbox_relay_events_published_total", "outbox_relay_transactions_total", "outbox_relay_publish_errors_total",
    "outbox_relay_inflight_messages", "outbox_relay_inflight_bytes", "outbox_relay_replication_lag_bytes",
    "outbox_relay_slot_retained_wal_bytes", "outbox_relay_commit_to_ack_seconds_bucket", "outbox_relay_leader",
    "outbox_relay_stalled", "outbox_relay_up", "process_resident_memory_bytes", "process_cpu_seconds_total",
    "outbox_consumer_messages_total", "outbox_consumer_handler_seconds_bucket", "outbox_consumer_dedupe_seconds_bucket",
    "outbox_consumer_retries_total", "outbox_consumer_halted",
]
# Grafana's own variables, substituted at query time.
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}
# Test-only libraries of scripts/install.sh that the image does not need.
TEST_ONLY_PACKAGES = {"libgtest-dev", "libgmock-dev", "libbenchmark-dev", "libclang-rt-14-dev"}  # tests, benchmarks, fuzzing
SERVICE_KEYS = {"relay": "outbox-relay", "payment-ledger": "Consumer SDK"}


class problems:
    """Collects what is wrong, with the file it is in."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.checked = 0

    def check(self, ok: bool, where: str, message: str) -> bool:
        self.checked += 1
        if not ok:
            self.items.append(f"{where}: {message}")
        return ok


# ---- small helpers ----------------------------------------------------------------------------------

def resolve(value: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """Expands ${VAR} and ${VAR:-default} like the config loader; returns the text and the unset variables."""
    missing: list[str] = []

    def one(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        missing.append(name)
        return ""

    return VAR_RE.sub(one, value), missing


def required_vars(node: object) -> set[str]:
    """Variables used without a default anywhere in a config tree: the environment must set them."""
    found: set[str] = set()
    if isinstance(node, dict):
        for v in node.values():
            found |= required_vars(v)
    elif isinstance(node, list):
        for v in node:
            found |= required_vars(v)
    elif isinstance(node, str):
        found |= {m.group(1) for m in VAR_RE.finditer(node) if m.group(2) is None}
    return found


def split_listen(listen: str) -> tuple[str, int] | None:
    host, sep, port = listen.rpartition(":")
    return (host, int(port)) if sep and port.isdigit() else None


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


def load_yaml(p: problems, path: Path, all_docs: bool = False):
    if not p.check(path.is_file(), str(path), "missing"):
        return None
    try:
        with path.open() as f:
            return list(yaml.safe_load_all(f)) if all_docs else yaml.safe_load(f)
    except yaml.YAMLError as e:
        p.check(False, str(path), f"does not parse: {e}")
        return None


# ---- the configuration reference ---------------------------------------------------------------------

def parse_reference(path: Path) -> dict[str, dict[str, dict[str, str]]]:
    """docs/configuration.md: per `## heading`, key -> {type, default}."""
    tables: dict[str, dict[str, dict[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("## "):
            current = tables.setdefault(line[3:].strip(), {})
            continue
        m = re.match(r"^\| `([^`]+)` \| (.*?) \| (.*?) \|", line)
        if m and current is not None:
            current[m.group(1)] = {"type": m.group(2), "default": m.group(3)}
    return tables


def flatten(node: object, reference: dict[str, dict[str, str]], path: str = ""):
    """Yields (key path, value) for every key of a config tree; list items of sections as `key[]`."""
    if path and reference.get(path, {}).get("type", "").startswith("map"):
        yield path, node
        return
    if isinstance(node, dict):
        if path and not path.endswith("[]"):
            yield path, node
        for k, v in node.items():
            yield from flatten(v, reference, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list) and any(isinstance(i, dict) for i in node):
        yield path, node
        for item in node:
            yield from flatten(item, reference, path + "[]")
    else:
        yield path, node


def value_ok(type_text: str, value: object) -> bool:
    """Whether a scalar (already expanded) fits a type column of the reference."""
    if value is None:
        return True  # `key:` takes the default
    values = value if isinstance(value, list) else [value]
    for v in values:
        s = str(v)
        if "duration" in type_text and not re.fullmatch(r"\d+(ms|s|m|h|d)", s):
            return False
        if "size" in type_text and not re.fullmatch(r"\d+(KiB|MiB|GiB|TiB|KB|MB|GB|TB|B)?", s):
            return False
        if type_text == "bool" and not isinstance(v, bool):
            return False
        if type_text.startswith("int") and not (isinstance(v, int) and not isinstance(v, bool)):
            return False
        if type_text.startswith("number") and not isinstance(v, (int, float)):
            return False
        if "\\|" in type_text and s not in re.findall(r"`([^`]+)`", type_text):
            return False
        if type_text.startswith("section") and not isinstance(v, dict):
            return False
    return True


def check_config(p: problems, path: Path, reference: dict[str, dict[str, str]], extra_keys: set[str]) -> dict | None:
    tree = load_yaml(p, path)
    if tree is None:
        return None
    where = str(path)
    extra_keys = extra_keys | {k.rsplit(".", i)[0] for k in extra_keys for i in range(1, k.count(".") + 1)}
    seen = set()
    for key, value in flatten(tree, reference):
        seen.add(key)
        if key in extra_keys:
            continue
        if not p.check(key in reference, where, f"key `{key}` is not in docs/configuration.md"):
            continue
        type_text = reference[key]["type"]
        if isinstance(value, (dict, list)) and not type_text.startswith("list of"):
            continue
        text_value = value
        if isinstance(value, str):
            text_value, missing = resolve(value, {})
            if missing:
                continue  # from the environment: checked per deployment below
            if type_text.startswith("int") and text_value.isdigit():
                text_value = int(text_value)
        p.check(value_ok(type_text, text_value), where, f"`{key}: {value}` is not a {type_text}")
    for key, info in reference.items():
        if info["default"] == "**required**" and "[]" not in key:
            parent = key.rpartition(".")[0]
            if parent in seen or not parent:
                p.check(key in seen, where, f"required key `{key}` is missing")
    return tree


# ---- prometheus, alerts, dashboard --------------------------------------------------------------------

def prometheus_jobs(prom: dict) -> dict[str, list[str]]:
    jobs: dict[str, list[str]] = {}
    for sc in prom.get("scrape_configs") or []:
        targets = [t for stc in sc.get("static_configs") or [] for t in stc.get("targets") or []]
        jobs[sc["job_name"]] = targets
    return jobs


def check_alerts(p: problems, deploy: Path, docs_ops: Path, jobs: dict[str, list[str]]) -> None:
    alerts = load_yaml(p, deploy / "prometheus/alerts.yml")
    tests = load_yaml(p, deploy / "prometheus/alerts_test.yml")
    if not alerts:
        return
    where = str(deploy / "prometheus/alerts.yml")
    anchors = set()
    if docs_ops.is_file():
        anchors = {slug(line.lstrip("#")) for line in docs_ops.read_text().splitlines() if line.startswith("#")}
    names = set()
    for group in alerts.get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" not in rule:
                continue
            name = rule["alert"]
            names.add(name)
            p.check("for" in rule, where, f"{name}: no `for:`")
            p.check((rule.get("labels") or {}).get("severity") in ("warning", "critical"), where,
                    f"{name}: severity must be warning or critical")
            ann = rule.get("annotations") or {}
            for key in ("summary", "description", "runbook"):
                p.check(bool(ann.get(key)), where, f"{name}: no `{key}` annotation")
            runbook = ann.get("runbook", "")
            if runbook.startswith("docs/operations.md#"):
                p.check(runbook.split("#", 1)[1] in anchors, where,
                        f"{name}: runbook {runbook} has no such heading in docs/operations.md")
            for job in re.findall(r'job="([^"]+)"', rule.get("expr", "")):
                p.check(job in jobs, where, f"{name}: job \"{job}\" is not a job of prometheus/prometheus.yml")
    for name in RELAY_ALERTS + CONSUMER_ALERTS:
        p.check(name in names, where, f"alert {name} is missing")
    if not tests:
        return
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests.get("tests") or []:
        for t in case.get("alert_rule_test") or []:
            (fires if t.get("exp_alerts") else quiet).add(t["alertname"])
    for name in names:
        p.check(name in fires, str(deploy / "prometheus/alerts_test.yml"), f"no test where {name} fires")
        p.check(name in quiet, str(deploy / "prometheus/alerts_test.yml"), f"no test where {name} does not fire")


def check_dashboard(p: problems, path: Path) -> None:
    where = str(path)
    if not p.check(path.is_file(), where, "missing"):
        return
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        p.check(False, where, f"not JSON: {e}")
        return
    p.check(dash.get("schemaVersion", 0) >= 36, where, "schemaVersion older than 36 (Grafana 9)")
    p.check(bool(dash.get("uid")) and bool(dash.get("title")), where, "no uid or title")
    variables = {v["name"]: v for v in (dash.get("templating") or {}).get("list") or []}
    ds_vars = {n for n, v in variables.items() if v.get("type") == "datasource" and v.get("query") == "prometheus"}
    p.check(bool(ds_vars), where, "no Prometheus datasource variable")
    ids = set()
    exprs: list[str] = []
    panels = list(dash.get("panels") or [])
    for panel in panels:
        panels.extend(panel.get("panels") or [])  # panels of collapsed rows
        pid = panel.get("id")
        p.check(pid not in ids, where, f"panel id {pid} used twice")
        ids.add(pid)
        p.check(bool(panel.get("title")) and "gridPos" in panel, where, f"panel {pid}: no title or gridPos")
        if panel.get("type") == "row":
            continue
        uid = (panel.get("datasource") or {}).get("uid", "")
        p.check(uid.strip("${}") in ds_vars, where, f"panel {pid} ({panel.get('title')}): datasource is not the variable")
        p.check(bool(panel.get("targets")), where, f"panel {pid} ({panel.get('title')}): no queries")
        for target in panel.get("targets") or []:
            expr = target.get("expr", "")
            p.check(bool(expr.strip()), where, f"panel {pid}: empty expression")
            exprs.append(expr)
    for v in variables.values():
        if v.get("type") == "query":
            q = v.get("query")
            exprs.append(q.get("query", "") if isinstance(q, dict) else str(q))
    for expr in exprs:
        for name in re.findall(r"\$\{?(\w+)", expr):
            p.check(name in variables or name in GRAFANA_BUILTINS, where, f"`${name}` is not a variable: {expr}")
    text = "\n".join(exprs)
    for metric in DASHBOARD_METRICS:
        p.check(re.search(rf"\b{metric}\b", text) is not None, where, f"no panel shows {metric}")


# ---- compose --------------------------------------------------------------------------------------------

def volume_mounts(service: dict) -> list[tuple[str, str]]:
    """(source, target) of the bind mounts of a service, short and long syntax."""
    mounts = []
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            if len(parts) >= 2:
                mounts.append((parts[0], parts[1]))
        elif isinstance(v, dict) and v.get("type") == "bind":
            mounts.append((v["source"], v["target"]))
    return mounts


def config_arg(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def mounted_source(mounts: list[tuple[str, str]], base: Path, container_path: str) -> Path | None:
    """The host file behind `container_path`, through a file or directory mount."""
    for src, dst in mounts:
        if container_path == dst:
            return (base / src).resolve()
        if container_path.startswith(dst.rstrip("/") + "/"):
            return (base / src / container_path[len(dst.rstrip("/")) + 1:]).resolve()
    return None


def image_tag(image: str) -> str:
    return image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""


def check_compose(p: problems, root: Path, ctx: dict) -> None:
    deploy = root / "deploy"
    path = deploy / "compose.yaml"
    compose = load_yaml(p, path)
    if not compose:
        return
    where = str(path)
    services: dict[str, dict] = compose.get("services") or {}
    for name in ("postgres", "kafka", "relay", "relay-standby", "payment-ledger", "prometheus", "grafana"):
        p.check(name in services, where, f"no `{name}` service")
    compose_env = {}  # compose-level ${VAR:-default} take their defaults here

    def env_of(svc: dict) -> dict[str, str]:
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) for e in env)
        return {k: resolve(str(v), compose_env)[0] for k, v in env.items()}

    for name, svc in services.items():
        for src, dst in volume_mounts(svc):
            if src.startswith((".", "/")):
                p.check((deploy / src).exists(), where, f"{name}: mounted {src} does not exist")
        build = svc.get("build")
        if isinstance(build, dict):
            context = (deploy / build.get("context", ".")).resolve()
            p.check(context.is_dir(), where, f"{name}: build context {build.get('context')} does not exist")
            p.check((context / build.get("dockerfile", "Dockerfile")).is_file(), where,
                    f"{name}: dockerfile {build.get('dockerfile')} does not exist")
            ctx["build_context"] = context
    # Images pinned to what the suite runs.
    pg = services.get("postgres", {})
    p.check(image_tag(pg.get("image", "")).split("-")[0].split(".")[0] == ctx["pg_major"], where,
            f"postgres image {pg.get('image')} is not PostgreSQL {ctx['pg_major']} (scripts/install.sh)")
    p.check("wal_level=logical" in " ".join(map(str, pg.get("command") or [])), where, "postgres: no wal_level=logical")
    kafka = services.get("kafka", {})
    p.check(image_tag(kafka.get("image", "")) == ctx["kafka_version"], where,
            f"kafka image {kafka.get('image')} is not Kafka {ctx['kafka_version']} (scripts/kafka/pom.xml)")
    if ctx.get("prometheus_version"):
        prom_img = services.get("prometheus", {}).get("image", "")
        p.check(image_tag(prom_img).lstrip("v") == ctx["prometheus_version"], where,
                f"prometheus image {prom_img} is not {ctx['prometheus_version']}, the promtool that tests the rules")
    kafka_env = env_of(kafka)
    advertised = {l.split("://", 1)[1] for l in kafka_env.get("KAFKA_ADVERTISED_LISTENERS", "").split(",") if "://" in l}
    p.check(bool(advertised), where, "kafka: no KAFKA_ADVERTISED_LISTENERS")

    prom_jobs = ctx["jobs"]
    for name, job in (("relay", "outbox-relay"), ("relay-standby", "outbox-relay"), ("payment-ledger", "payment-ledger")):
        svc = services.get(name)
        if not svc:
            continue
        ctx.setdefault("images", {})[name] = svc.get("image")
        p.check(svc.get("image") == f"outbox-relay:{ctx['version']}", where,
                f"{name}: image {svc.get('image')} is not outbox-relay:{ctx['version']} (project version)")
        argv = svc.get("command") or []
        cfg_path = config_arg(argv)
        if not p.check(cfg_path is not None, where, f"{name}: no --config in the command"):
            continue
        host_file = mounted_source(volume_mounts(svc), deploy, cfg_path)
        if not p.check(host_file is not None and host_file.is_file(), where,
                       f"{name}: --config {cfg_path} is not a mounted file"):
            continue
        tree = ctx["configs"].get(host_file)
        if tree is None:
            p.check(False, where, f"{name}: {host_file} is not one of deploy/config/*.yaml")
            continue
        env = env_of(svc)
        for var in sorted(required_vars(tree)):
            p.check(var in env, where, f"{name}: {host_file.name} needs ${{{var}}} but the service does not set it")
        listen = split_listen(resolve(str(tree["metrics"]["listen"]), env)[0])
        if not p.check(listen is not None, where, f"{name}: metrics.listen is not host:port"):
            continue
        host, port = listen
        p.check(host not in LOOPBACK, where, f"{name}: metrics.listen {host}:{port} is loopback; Prometheus cannot scrape it")
        p.check(f"{name}:{port}" in prom_jobs.get(job, []), where,
                f"{name}: prometheus.yml job {job} does not scrape {name}:{port} (metrics.listen)")
        health = " ".join(map(str, (svc.get("healthcheck") or {}).get("test") or []))
        for hp in re.findall(r"//[^/:]+:(\d+)/", health):
            p.check(int(hp) == port, where, f"{name}: healthcheck asks port {hp}, metrics.listen is {port}")
        section = tree.get("sink") or tree.get("consumer") or {}
        brokers = resolve(str(section.get("brokers", "")), env)[0]
        for b in brokers.split(","):
            p.check(b in advertised, where, f"{name}: broker {b} is not an advertised listener of the kafka service")
        for dsn_host in re.findall(r"host=(\S+)", resolve(json.dumps(tree), env)[0]):
            p.check(dsn_host in services, where, f"{name}: database host {dsn_host} is not a compose service")
        deps = svc.get("depends_on") or {}
        for dep in ("postgres", "kafka"):
            p.check(dep in deps, where, f"{name}: does not depend on {dep}")
    # Prometheus: its config and rules are the ones in deploy/prometheus.
    prom = services.get("prometheus", {})
    mounts = volume_mounts(prom)
    cfg = next((a.split("=", 1)[1] for a in prom.get("command") or [] if str(a).startswith("--config.file=")), None)
    src = mounted_source(mounts, deploy, cfg) if cfg else None
    p.check(src == (deploy / "prometheus/prometheus.yml").resolve(), where,
            "prometheus: --config.file is not deploy/prometheus/prometheus.yml")
    for rule_file in ctx["rule_files"]:
        rf = mounted_source(mounts, deploy, str(Path(cfg).parent / rule_file)) if cfg else None
        p.check(rf is not None and rf.is_file(), where, f"prometheus: rule file {rule_file} is not mounted next to the config")
    # Grafana: provisioning and the dashboard.
    graf = services.get("grafana", {})
    gm = volume_mounts(graf)
    prov = mounted_source(gm, deploy, "/etc/grafana/provisioning")
    if p.check(prov is not None and prov.is_dir(), where, "grafana: /etc/grafana/provisioning is not mounted"):
        for ds_file in sorted((prov / "datasources").glob("*.y*ml")):
            for ds in (load_yaml(p, ds_file) or {}).get("datasources") or []:
                m = re.match(r"https?://([^:/]+):(\d+)", ds.get("url", ""))
                p.check(m is not None and m.group(1) in services, str(ds_file), f"datasource url {ds.get('url')} is not a service")
                if m and m.group(1) == "prometheus":
                    listen = next((a.split("=", 1)[1] for a in prom.get("command") or []
                                   if str(a).startswith("--web.listen-address=")), "0.0.0.0:9090")
                    p.check(listen.endswith(":" + m.group(2)), str(ds_file), f"prometheus listens on {listen}, not {m.group(2)}")
        for dash_file in sorted((prov / "dashboards").glob("*.y*ml")):
            for provider in (load_yaml(p, dash_file) or {}).get("providers") or []:
                folder = (provider.get("options") or {}).get("path", "")
                found = mounted_source(gm, deploy, folder.rstrip("/") + "/outbox.json")
                p.check(found == (deploy / "grafana/outbox.json").resolve(), str(dash_file),
                        f"provider path {folder} does not hold deploy/grafana/outbox.json in the grafana service")


# ---- kubernetes ----------------------------------------------------------------------------------------

def check_kubernetes(p: problems, root: Path, ctx: dict) -> None:
    path = root / "deploy/kubernetes/relay-sidecar.yaml"
    docs = load_yaml(p, path, all_docs=True)
    if not docs:
        return
    where = str(path)
    by_kind: dict[tuple[str, str], dict] = {}
    for d in docs:
        if d:
            by_kind[(d["kind"], d["metadata"]["name"])] = d
    workloads = [d for (k, _), d in by_kind.items() if k in ("StatefulSet", "Deployment")]
    if not p.check(len(workloads) == 1, where, "expected one StatefulSet or Deployment"):
        return
    pod = workloads[0]["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod.get("containers") or []}
    relay = next((c for c in containers.values() if "outbox-relay" in (c.get("command") or []) + (c.get("args") or [])), None)
    pg = next((c for c in containers.values() if str(c.get("image", "")).startswith("postgres:")), None)
    if not p.check(relay is not None and pg is not None, where, "the pod needs a postgres container and an outbox-relay sidecar"):
        return
    p.check(relay.get("image") == f"outbox-relay:{ctx['version']}", where,
            f"relay image {relay.get('image')} is not outbox-relay:{ctx['version']}")
    p.check(image_tag(pg["image"]).split("-")[0].split(".")[0] == ctx["pg_major"], where,
            f"postgres image {pg['image']} is not PostgreSQL {ctx['pg_major']}")
    p.check("wal_level=logical" in " ".join(pg.get("args") or []), where, "postgres: no wal_level=logical")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}

    def configmap_file(container: dict, container_path: str) -> tuple[str, str] | None:
        for vm in container.get("volumeMounts") or []:
            mp = vm["mountPath"].rstrip("/")
            vol = volumes.get(vm["name"], {})
            if "configMap" in vol and container_path.startswith(mp + "/"):
                return vol["configMap"]["name"], container_path[len(mp) + 1:]
        return None

    # The relay's config is deploy/config/relay.yaml, verbatim.
    argv = (relay.get("command") or []) + (relay.get("args") or [])
    cfg_path = config_arg(argv)
    cm = configmap_file(relay, cfg_path or "")
    relay_yaml = root / "deploy/config/relay.yaml"
    if p.check(cm is not None, where, f"relay --config {cfg_path} is not in a mounted ConfigMap"):
        data = (by_kind.get(("ConfigMap", cm[0])) or {}).get("data") or {}
        p.check(data.get(cm[1]) == relay_yaml.read_text(), where,
                f"ConfigMap {cm[0]} key {cm[1]} differs from deploy/config/relay.yaml (copy it over)")
    init = root / "deploy/postgres/init.sh"
    for vm in pg.get("volumeMounts") or []:
        vol = volumes.get(vm["name"], {})
        if vm["mountPath"].startswith("/docker-entrypoint-initdb.d") and "configMap" in vol:
            data = (by_kind.get(("ConfigMap", vol["configMap"]["name"])) or {}).get("data") or {}
            p.check(list(data.values()) == [init.read_text()], where,
                    f"ConfigMap {vol['configMap']['name']} differs from deploy/postgres/init.sh (copy it over)")
    # Environment: every ${VAR} the config needs; secrets that exist.
    tree = ctx["configs"].get(relay_yaml.resolve()) or {}
    env: dict[str, str] = {}
    for container in (relay, pg):
        for e in container.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                secret = by_kind.get(("Secret", ref["name"]))
                if secret:
                    keys = set((secret.get("stringData") or {}) | (secret.get("data") or {}))
                    p.check(ref["key"] in keys, where, f"Secret {ref['name']} has no key {ref['key']}")
                if container is relay:
                    env[e["name"]] = "from-secret"
            elif container is relay:
                env[e["name"]] = str(e.get("value", ""))
    for var in sorted(required_vars(tree)):
        p.check(var in env, where, f"relay container does not set ${{{var}}} that relay.yaml needs")
    p.check("valueFrom" in next((e for e in relay.get("env") or [] if e["name"] == "OUTBOX_PG_PASSWORD"), {}), where,
            "OUTBOX_PG_PASSWORD must come from a Secret")
    listen = split_listen(resolve(str((tree.get("metrics") or {}).get("listen", "")), env)[0])
    if not p.check(listen is not None, where, "relay metrics.listen does not resolve to host:port"):
        return
    host, port = listen
    p.check(host not in LOOPBACK, where, f"relay metrics.listen {host}:{port} is loopback: probes cannot reach it")
    ports = {cp.get("name"): cp["containerPort"] for cp in relay.get("ports") or []}
    p.check(port in ports.values(), where, f"relay container does not declare port {port}")
    probes = {k: relay.get(k) for k in ("livenessProbe", "readinessProbe", "startupProbe") if relay.get(k)}
    paths = set()
    for kind, probe in probes.items():
        get = probe.get("httpGet") or {}
        paths.add(get.get("path"))
        pp = get.get("port")
        p.check(ports.get(pp, pp) == port, where, f"{kind} uses port {pp}, metrics.listen is {port}")
    # The relay shares the pod with PostgreSQL: a readinessProbe on /readyz would take the database out of its
    # Service while Kafka is down (then no event is written and nothing makes the relay ready again).
    p.check("readinessProbe" not in probes, where,
            "the relay container gates the PostgreSQL pod's readiness: give it no readinessProbe")
    p.check(probes.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", where, "livenessProbe is not /healthz")
    annotations = workloads[0]["spec"]["template"]["metadata"].get("annotations") or {}
    if "prometheus.io/port" in annotations:
        p.check(int(annotations["prometheus.io/port"]) == port, where, "prometheus.io/port differs from metrics.listen")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    p.check(grace > ctx["shutdown_timeout_s"], where,
            f"terminationGracePeriodSeconds {grace} is not above relay.shutdown_timeout ({ctx['shutdown_timeout_s']}s)")


def beside_the_sidecar(p: problems, root: Path, rel: str) -> tuple[list, dict[tuple[str, str], dict]] | None:
    """The documents of deploy/kubernetes/<rel> and, by (kind, name), those and relay-sidecar.yaml's (whose
    ConfigMaps and Secrets the file uses); None when the file does not load."""
    docs = load_yaml(p, root / "deploy/kubernetes" / rel, all_docs=True)
    sidecar = load_yaml(p, root / "deploy/kubernetes/relay-sidecar.yaml", all_docs=True) or []
    if not docs:
        return None
    by_kind: dict[tuple[str, str], dict] = {}
    for d in list(docs) + list(sidecar):
        if d:
            by_kind[(d["kind"], d["metadata"]["name"])] = d
    return list(docs), by_kind


def container_env(p: problems, where: str, c: dict, by_kind: dict[tuple[str, str], dict]) -> dict[str, str]:
    """A container's environment (name to value, "from-secret" for a Secret's); each Secret key it uses exists."""
    env = {}
    for e in c.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            secret = by_kind.get(("Secret", ref["name"]))
            keys = set(((secret or {}).get("stringData") or {}) | ((secret or {}).get("data") or {}))
            p.check(ref["key"] in keys, where, f"Secret {ref['name']} has no key {ref['key']}")
        env[e["name"]] = str(e.get("value", "from-secret"))
    return env


def check_reconcile_cronjob(p: problems, root: Path, ctx: dict) -> None:
    loaded = beside_the_sidecar(p, root, "reconcile-cronjob.yaml")
    if loaded is None:
        return
    docs, by_kind = loaded
    where = str(root / "deploy/kubernetes/reconcile-cronjob.yaml")
    jobs = [d for d in docs if d and d.get("kind") == "CronJob"]
    if not p.check(len(jobs) == 1, where, "expected one CronJob"):
        return
    spec = jobs[0]["spec"]
    job = spec["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    p.check(pod.get("restartPolicy") == "Never", where, "restartPolicy must be Never: the Job, not the kubelet, retries")
    containers = pod.get("containers") or []
    if not p.check(len(containers) == 1, where, "expected one container"):
        return
    c = containers[0]
    argv = (c.get("command") or []) + (c.get("args") or [])
    p.check(argv[:2] == ["outboxctl", "reconcile"], where, "the container does not run outboxctl reconcile")
    p.check(c.get("image") == f"outbox-relay:{ctx['version']}", where,
            f"image {c.get('image')} is not outbox-relay:{ctx['version']}")

    def flag(name: str) -> str | None:
        return next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name), None)

    ledger = ctx["configs"].get((root / "deploy/config/ledger.yaml").resolve()) or {}
    group = (ledger.get("consumer") or {}).get("group_id")
    p.check(flag("--group") == group, where, f"--group {flag('--group')} is not deploy/config/ledger.yaml's {group}")
    p.check(flag("--tz") == spec.get("timeZone"), where, "--tz differs from the CronJob's timeZone")
    rules = (job.get("podFailurePolicy") or {}).get("rules") or []
    p.check(any(r.get("action") == "FailJob" and 3 in ((r.get("onExitCodes") or {}).get("values") or [])
                and (r.get("onExitCodes") or {}).get("containerName") == c["name"] for r in rules), where,
            "exit 3 (a gap) must fail the Job at once: podFailurePolicy FailJob onExitCodes [3]")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = {vm["mountPath"].rstrip("/"): volumes.get(vm["name"], {}) for vm in c.get("volumeMounts") or []}
    if (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
        p.check("emptyDir" in mounts.get("/tmp", {}), where, "a read-only root needs an emptyDir on /tmp for sorted runs")
    cfg = flag("--config")
    if p.check(cfg is not None, where, "no --config: the CronJob reads the relay's config"):
        vol = mounts.get(str(Path(cfg).parent), {})
        name = (vol.get("configMap") or {}).get("name")
        cm = by_kind.get(("ConfigMap", name or ""))
        p.check(cm is not None and Path(cfg).name in (cm.get("data") or {}), where,
                f"--config {cfg} is not a key of a ConfigMap of relay-sidecar.yaml")
    env = container_env(p, where, c, by_kind)
    tree = ctx["configs"].get((root / "deploy/config/relay.yaml").resolve()) or {}
    for var in sorted(required_vars(tree)):
        p.check(var in env, where, f"the container does not set ${{{var}}} that relay.yaml needs")
    p.check("OUTBOX_INBOX_DSN" in env or flag("--inbox-dsn") is not None, where, "no inbox DSN")


def check_relay_standby(p: problems, root: Path, ctx: dict) -> None:
    """deploy/kubernetes/relay-standby.yaml: the second relay of the pair runs the sidecar's config and image and
    reaches the StatefulSet's pod by its DNS name."""
    loaded = beside_the_sidecar(p, root, "relay-standby.yaml")
    if loaded is None:
        return
    docs, by_kind = loaded
    sidecar = [d for (kind, _), d in by_kind.items() if kind == "StatefulSet"]
    where = str(root / "deploy/kubernetes/relay-standby.yaml")
    deployments = [d for d in docs if d and d.get("kind") == "Deployment"]
    if not p.check(len(deployments) == 1, where, "expected one Deployment"):
        return
    pod = deployments[0]["spec"]["template"]["spec"]
    containers = pod.get("containers") or []
    if not p.check(len(containers) == 1, where, "expected one container"):
        return
    c = containers[0]
    p.check(c.get("image") == f"outbox-relay:{ctx['version']}", where,
            f"image {c.get('image')} is not outbox-relay:{ctx['version']}")
    argv = (c.get("command") or []) + (c.get("args") or [])
    cfg = config_arg(argv)
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = {vm["mountPath"].rstrip("/"): volumes.get(vm["name"], {}) for vm in c.get("volumeMounts") or []}
    if p.check(cfg is not None, where, "no --config"):
        name = ((mounts.get(str(Path(cfg).parent)) or {}).get("configMap") or {}).get("name")
        cm = by_kind.get(("ConfigMap", name or ""))
        p.check(cm is not None and (cm.get("data") or {}).get(Path(cfg).name) == (root / "deploy/config/relay.yaml").read_text(),
                where, f"--config {cfg} is not relay-sidecar.yaml's ConfigMap holding deploy/config/relay.yaml")
    env = container_env(p, where, c, by_kind)
    tree = ctx["configs"].get((root / "deploy/config/relay.yaml").resolve()) or {}
    for var in sorted(required_vars(tree)):
        p.check(var in env, where, f"the container does not set ${{{var}}} that relay.yaml needs")
    if sidecar:
        ss = sidecar[0]
        pod_dns = f"{ss['metadata']['name']}-0.{ss['spec']['serviceName']}"
        p.check(env.get("OUTBOX_PG_HOST") == pod_dns, where,
                f"OUTBOX_PG_HOST {env.get('OUTBOX_PG_HOST')} is not the sidecar's database pod {pod_dns}")
    listen = split_listen(resolve(str((tree.get("metrics") or {}).get("listen", "")), env)[0])
    if p.check(listen is not None, where, "metrics.listen does not resolve to host:port"):
        ports = {cp.get("name"): cp["containerPort"] for cp in c.get("ports") or []}
        p.check(listen[1] in ports.values(), where, f"the container does not declare port {listen[1]}")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    p.check(grace > ctx["shutdown_timeout_s"], where,
            f"terminationGracePeriodSeconds {grace} is not above relay.shutdown_timeout ({ctx['shutdown_timeout_s']}s)")


# ---- Dockerfile ----------------------------------------------------------------------------------------

def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", "\n".join(l for l in path.read_text().splitlines() if not l.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def apt_packages(run: str) -> list[str]:
    pkgs = []
    for m in re.finditer(r"apt-get install ([^&;]*)", run):
        pkgs += [t for t in m.group(1).split() if not t.startswith("-")]
    return pkgs


def install_sh_packages(path: Path) -> set[str]:
    m = re.search(r"packages=\((.*?)\)", path.read_text(), re.S)
    return set(m.group(1).split()) if m else set()


def check_dockerfile(p: problems, root: Path, ctx: dict) -> None:
    path = root / "deploy/Dockerfile"
    where = str(path)
    if not p.check(path.is_file(), where, "missing"):
        return
    stages: list[dict] = []
    for word, rest in dockerfile_instructions(path):
        if word == "FROM":
            stages.append({"from": rest.split()[0], "runs": [], "copies": [], "user": None})
        elif stages and word == "RUN":
            stages[-1]["runs"].append(rest)
        elif stages and word == "COPY":
            stages[-1]["copies"].append(rest)
        elif stages and word == "USER":
            stages[-1]["user"] = rest
    if not p.check(len(stages) >= 2, where, "not multi-stage"):
        return
    for s in stages:
        p.check(re.match(r"debian:(12|bookworm)", s["from"]) is not None, where, f"stage FROM {s['from']} is not Debian 12")
    build_pkgs = {pkg for r in stages[0]["runs"] for pkg in apt_packages(r)}
    wanted = install_sh_packages(root / "scripts/install.sh")
    for pkg in sorted(build_pkgs - wanted):
        p.check(False, where, f"build stage installs {pkg}, which scripts/install.sh does not")
    for pkg in sorted(w for w in wanted if w.endswith("-dev") and w not in TEST_ONLY_PACKAGES):
        p.check(pkg in build_pkgs, where, f"build stage lacks {pkg} of scripts/install.sh")
    user = stages[-1]["user"]
    p.check(user is not None and user.split(":")[0] not in ("root", "0"), where, "the runtime stage runs as root")
    context = ctx.get("build_context", root)
    ignore = path.with_name(path.name + ".dockerignore")
    patterns = [l.strip() for l in ignore.read_text().splitlines() if l.strip() and not l.startswith("#")] if ignore.is_file() else []
    for s in stages:
        for c in s["copies"]:
            if c.startswith("--from"):
                continue
            for src in c.split()[:-1]:
                p.check((context / src).exists(), where, f"COPY {src}: not in the build context {context}")
    for sub in re.findall(r"add_subdirectory\((\w+)\)", (root / "CMakeLists.txt").read_text()):
        p.check(not any(fnmatch.fnmatch(sub, pat) for pat in patterns), where,
                f"{ignore.name} leaves out {sub}/, which the build needs")
    text = path.read_text()
    for binary in ("outbox-relay", "payment-ledger"):
        p.check(f"/usr/local/bin/{binary}" in text, where, f"the image does not install {binary}")


def installed_packages() -> dict[str, tuple[bool, set[str]]]:
    """Every installed Debian package: (essential, names it depends on, alternatives included)."""
    out = subprocess.run(["dpkg-query", "-W", "-f=${Package}\t${Essential}\t${Depends}, ${Pre-Depends}\n"],
                         capture_output=True, text=True, check=True).stdout
    pkgs = {}
    for line in out.splitlines():
        name, essential, deps = line.split("\t")
        names = {re.split(r"[\s:(]", d.strip())[0] for d in re.split(r"[,|]", deps) if d.strip()}
        pkgs[name] = (essential == "yes", names)
    return pkgs


def packages_of(libs: set[str]) -> dict[str, str]:
    """Library path -> the Debian package that ships it (one dpkg-query for all: it is slow per call)."""
    candidates: dict[str, str] = {}
    for lib in libs:
        real = str(Path(lib).resolve())
        for c in (real, lib, real.removeprefix("/usr"), "/usr" + real):
            candidates.setdefault(c, lib)
    out = subprocess.run(["dpkg-query", "-S", *candidates], capture_output=True, text=True).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        pkg, _, file = line.partition(": ")
        if file in candidates:
            found.setdefault(candidates[file], pkg.split(":", 1)[0].split(",", 1)[0])
    return found


def check_runtime_libraries(p: problems, root: Path, binaries: list[str]) -> None:
    """The runtime stage's packages (with their dependencies, on top of Debian's essential set) provide
    every shared library the built binaries load. Uses this machine's dpkg (Debian 12 too)."""
    path = root / "deploy/Dockerfile"
    if not binaries or not shutil.which("dpkg-query") or not path.is_file():
        return
    runtime: list[str] = []
    for word, rest in dockerfile_instructions(path):
        if word == "FROM":
            runtime = []
        elif word == "RUN":
            runtime += apt_packages(rest)
    pkgs = installed_packages()
    have = set(runtime) | {n for n, (essential, _) in pkgs.items() if essential}
    todo = list(have)
    while todo:
        for dep in pkgs.get(todo.pop(), (False, set()))[1]:
            if dep not in have:
                have.add(dep)
                todo.append(dep)
    needs: dict[str, set[str]] = {}
    for binary in binaries:
        if not Path(binary).is_file():
            print(f"note: {binary} is not built; its shared libraries are not checked")
            continue
        out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
        needs[binary] = set(re.findall(r"=> (/\S+)", out))
    owner = packages_of(set().union(*needs.values())) if needs else {}
    for binary, libs in needs.items():
        for lib in sorted(libs):
            pkg = owner.get(lib)
            if pkg and pkg not in have:
                p.check(False, str(path), f"{Path(binary).name} needs {Path(lib).name} from {pkg}, "
                                          "which the runtime stage does not install")


# ---- systemd ------------------------------------------------------------------------------------------

def seconds(text: str) -> float:
    total = 0.0
    for num, unit in re.findall(r"(\d+)\s*(ms|s|min|m|h|d)?", text):
        total += int(num) * {"ms": 0.001, "s": 1, "": 1, "min": 60, "m": 60, "h": 3600, "d": 86400}[unit or ""]
    return total


def check_systemd(p: problems, root: Path, ctx: dict) -> None:
    path = root / "deploy/systemd/outbox-relay.service"
    where = str(path)
    if not p.check(path.is_file(), where, "missing"):
        return
    unit: dict[str, dict[str, list[str]]] = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = unit.setdefault(line.strip("[]"), {})
        elif section is not None and "=" in line:
            k, v = line.split("=", 1)
            section.setdefault(k.strip(), []).append(v.strip())
    svc = unit.get("Service", {})

    def one(key: str) -> str:
        return (svc.get(key) or [""])[-1]

    p.check(one("Restart") == "on-failure", where, "Restart is not on-failure")
    p.check("2" in one("RestartPreventExitStatus").split(), where, "exit code 2 (bad config) should not restart")
    for key, values in (("NoNewPrivileges", {"yes", "true"}), ("ProtectSystem", {"strict"}),
                        ("ProtectHome", {"yes", "true", "read-only", "tmpfs"}), ("PrivateTmp", {"yes", "true"})):
        p.check(one(key) in values, where, f"{key} is not set to {'/'.join(sorted(values))}")
    p.check(one("DynamicUser") in ("yes", "true") or bool(one("User")), where, "runs as root: set DynamicUser or User")
    argv = one("ExecStart").split()
    p.check(bool(argv) and argv[0] == "/usr/local/bin/outbox-relay", where,
            "ExecStart is not /usr/local/bin/outbox-relay (the Dockerfile's and cmake's install prefix)")
    p.check(config_arg(argv) is not None, where, "ExecStart has no --config")
    p.check(seconds(one("TimeoutStopSec")) > ctx["shutdown_timeout_s"], where,
            f"TimeoutStopSec is not above relay.shutdown_timeout ({ctx['shutdown_timeout_s']}s)")
    tree = ctx["configs"].get((root / "deploy/config/relay.yaml").resolve()) or {}
    env_set = {e.split("=", 1)[0] for v in svc.get("Environment", []) for e in v.split()}
    if required_vars(tree) - env_set:
        p.check(bool(svc.get("EnvironmentFile")), where,
                f"relay.yaml needs {sorted(required_vars(tree) - env_set)}: set them or an EnvironmentFile")
    analyze = shutil.which("systemd-analyze")
    if analyze:
        out = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
        for line in (out.stdout + out.stderr).splitlines():
            if "is not executable" in line or "No such file" in line:
                continue  # the binary is not installed on this machine
            p.check(False, where, f"systemd-analyze verify: {line}")


# ---- main ---------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source-dir", required=True, type=Path)
    ap.add_argument("--promtool", help="promtool whose version the compose Prometheus image must match")
    ap.add_argument("--binary", action="append", default=[],
                    help="a built binary the image ships: its shared libraries must be in the runtime stage")
    ap.add_argument("--extra-consumer-key", action="append", default=[],
                    help="a key a consumer service declares itself (payment-ledger: ledger.dsn)")
    args = ap.parse_args()
    root: Path = args.source_dir.resolve()
    deploy = root / "deploy"
    p = problems()

    reference = parse_reference(root / "docs/configuration.md")
    relay_ref, consumer_ref = reference.get("outbox-relay", {}), reference.get("Consumer SDK", {})
    p.check(bool(relay_ref) and bool(consumer_ref), "docs/configuration.md", "no outbox-relay or Consumer SDK table")
    ctx: dict = {"configs": {}}
    relay_tree = check_config(p, deploy / "config/relay.yaml", relay_ref, set())
    ledger_tree = check_config(p, deploy / "config/ledger.yaml", consumer_ref, set(args.extra_consumer_key))
    ctx["configs"][(deploy / "config/relay.yaml").resolve()] = relay_tree
    ctx["configs"][(deploy / "config/ledger.yaml").resolve()] = ledger_tree
    if ledger_tree:
        p.check((ledger_tree.get("dedupe") or {}).get("store") == "postgres", "deploy/config/ledger.yaml",
                "payment-ledger needs dedupe.store: postgres")
        p.check((ledger_tree.get("dedupe") or {}).get("dsn") == (ledger_tree.get("ledger") or {}).get("dsn"),
                "deploy/config/ledger.yaml", "payment-ledger needs dedupe.dsn written exactly as ledger.dsn")
    ctx["shutdown_timeout_s"] = seconds(str(((relay_tree or {}).get("relay") or {}).get("shutdown_timeout", "30s")))
    ctx["version"] = re.search(r"project\(\w+ VERSION ([\d.]+)", (root / "CMakeLists.txt").read_text()).group(1)
    ctx["kafka_version"] = re.search(r"<kafka.version>(.*?)</kafka.version>", (root / "scripts/kafka/pom.xml").read_text()).group(1)
    pg = re.search(r"postgresql-(\d+)", (root / "scripts/install.sh").read_text())
    ctx["pg_major"] = pg.group(1) if pg else "?"
    if args.promtool:
        out = subprocess.run([args.promtool, "--version"], capture_output=True, text=True).stdout
        m = re.search(r"version (\d+\.\d+\.\d+)", out)
        ctx["prometheus_version"] = m.group(1) if m else None

    prom = load_yaml(p, deploy / "prometheus/prometheus.yml") or {}
    ctx["jobs"] = prometheus_jobs(prom)
    ctx["rule_files"] = prom.get("rule_files") or []
    for rf in ctx["rule_files"]:
        p.check((deploy / "prometheus" / rf).is_file(), "deploy/prometheus/prometheus.yml", f"rule file {rf} missing")
    p.check("outbox-relay" in ctx["jobs"], "deploy/prometheus/prometheus.yml", "no job outbox-relay")

    check_alerts(p, deploy, root / "docs/operations.md", ctx["jobs"])
    check_dashboard(p, deploy / "grafana/outbox.json")
    check_compose(p, root, ctx)
    check_kubernetes(p, root, ctx)
    check_relay_standby(p, root, ctx)
    check_reconcile_cronjob(p, root, ctx)
    check_dockerfile(p, root, ctx)
    check_runtime_libraries(p, root, args.binary)
    check_systemd(p, root, ctx)

    for item in p.items:
        print("PROBLEM " + item.replace(str(root) + "/", ""))
    print(f"{p.checked} checks, {len(p.items)} problems")
    return 1 if p.items else 0


if __name__ == "__main__":
    sys.exit(main())
