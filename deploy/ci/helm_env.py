#!/usr/bin/env python3
"""Reads manifests rendered by `helm template` and, for every container of a workload
(Deployment, StatefulSet, DaemonSet, Job, CronJob), writes the environment Kubernetes would
give it as KEY=VALUE lines (`envFrom` and `valueFrom` resolved against the ConfigMaps and
Secrets in the same render, `env` over `envFrom`, later sources over earlier ones), one file
per container, for `pynomaly config check --env-file` (values with other characters than
letters, digits and `_./:@,+=%-` single-quoted, so they are read literally).

A Secret the render refers to but does not contain (`secrets.existingSecret`) is taken to
hold the keys the chart documents, with placeholder values (PLACEHOLDER_SECRET below): the
note printed says so. Any other missing ConfigMap or Secret is an error.

It also checks the wiring between the rendered objects, which no schema sees: probes and
Services name ports the pods have, the listen addresses match those ports, volumes cover
the data directory on a read-only root filesystem, grace periods cover the drain, every
ServiceMonitor selects a rendered Service and names one of its ports, and with Redis some
process runs the jobs, and no Ingress path exposes /metrics.

Usage: helm_env.py RENDERED.yaml OUT_DIR
Prints one line per env file written ("FILE<TAB>kind/name/container<TAB>args"); exits 1
listing every problem found.
"""

import base64
import os
import re
import sys

import yaml

# What secrets.existingSecret must hold (deploy/helm/pynomaly/values.yaml), with values of
# the right shape: the chart cannot see them, so they stand in for the operator's.
PLACEHOLDER_SECRET = {
    "DATABASE_URL": "postgres://pynomaly:placeholder@postgres:5432/pynomaly",
    "REDIS_URL": "redis://:placeholder@redis:6379",
    "PYNOMALY_SECRET_KEY": "0123456789abcdef" * 4,
    "PYNOMALY_ENCRYPTION_KEY": "fedcba9876543210" * 4,
    "AWS_ACCESS_KEY_ID": "AKIAPLACEHOLDER",
    "AWS_SECRET_ACCESS_KEY": "placeholder",
}

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


class Problems:
    def __init__(self):
        self.items = []

    def add(self, where, what):
        self.items.append(f"{where}: {what}")


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def pod_spec(doc):
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {})


def secret_data(doc):
    data = {k: base64.b64decode(v).decode("utf-8") for k, v in (doc.get("data") or {}).items()}
    data.update(doc.get("stringData") or {})
    return data


def port_of(bind):
    m = re.fullmatch(r"(?:\[[^\]]*\]|[^:]*):(\d+)", bind or "")
    return int(m.group(1)) if m else None


def resolve_env(container, configmaps, secrets, where, problems, notes):
    """The container's environment, as Kubernetes builds it."""
    env = {}

    def source(kind, name):
        table = configmaps if kind == "ConfigMap" else secrets
        if name in table:
            return table[name]
        if kind == "Secret":
            notes.add(
                f"Secret '{name}' is not in the render (an existing Secret): its keys are "
                f"taken as {', '.join(sorted(PLACEHOLDER_SECRET))} with placeholder values"
            )
            return PLACEHOLDER_SECRET
        problems.add(where, f"refers to ConfigMap '{name}', which the render does not contain")
        return {}

    for ref in container.get("envFrom") or []:
        prefix = ref.get("prefix", "")
        if "configMapRef" in ref:
            data = source("ConfigMap", ref["configMapRef"]["name"])
        elif "secretRef" in ref:
            data = source("Secret", ref["secretRef"]["name"])
        else:
            problems.add(where, f"envFrom entry not understood: {ref}")
            continue
        for k, v in data.items():
            env[prefix + k] = v
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var:
            env[name] = str(var["value"])
            continue
        vf = var.get("valueFrom") or {}
        for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
            if key in vf:
                ref = vf[key]
                data = source(kind, ref["name"])
                if ref["key"] in data:
                    env[name] = data[ref["key"]]
                elif not ref.get("optional"):
                    problems.add(
                        where, f"{name} reads key '{ref['key']}' that {kind} '{ref['name']}' lacks"
                    )
                break
        else:
            if vf:
                problems.add(where, f"{name}: valueFrom {sorted(vf)} cannot be resolved offline")
            else:
                env[name] = ""
    for name, value in env.items():
        if "\n" in value:
            problems.add(where, f"{name} has a line break, which an env file cannot carry")
        if "$(" in value:
            problems.add(where, f"{name} uses $(VAR) expansion, not resolved here")
    return env


# Values written bare; any other is single-quoted, which an env file (as Docker Compose reads
# one) takes literally: no `#` comment, no `$` interpolation.
BARE = re.compile(r"[A-Za-z0-9_./:@,+=%-]*")


def env_line(name, value, where, problems):
    if BARE.fullmatch(value):
        return f"{name}={value}"
    if "'" in value:
        problems.add(where, f"{name} has a single quote, which this env file cannot carry exactly")
    return f"{name}='{value}'"


def named_ports(container):
    return {p["name"]: p["containerPort"] for p in container.get("ports") or [] if "name" in p}


def check_container(doc, pod, container, env, where, problems):
    ports = named_ports(container)
    # Probes name ports the container opens.
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        p = container.get(probe)
        if not p:
            continue
        for handler in ("httpGet", "tcpSocket"):
            port = (p.get(handler) or {}).get("port")
            if isinstance(port, str) and port not in ports:
                problems.add(where, f"{probe} names port '{port}', which the container lacks")
    # The listen addresses are the ports the container declares.
    for var, port_name in (("PYNOMALY_BIND", "http"), ("PYNOMALY_METRICS_BIND", "metrics")):
        if var in env:
            if port_name not in ports:
                problems.add(where, f"{var} is set but the container has no '{port_name}' port")
            elif port_of(env[var]) != ports[port_name]:
                problems.add(
                    where, f"{var}={env[var]} but port '{port_name}' is {ports[port_name]}"
                )
    # A read-only root filesystem needs the data directory on a volume.
    sc = container.get("securityContext") or {}
    mounts = [m["mountPath"].rstrip("/") for m in container.get("volumeMounts") or []]
    if (
        sc.get("readOnlyRootFilesystem")
        and "args" in container
        and container["args"][:1] != ["migrate"]
    ):
        data_dir = env.get("PYNOMALY_DATA_DIR", "./pynomaly-data")
        if not any(data_dir == m or data_dir.startswith(m + "/") for m in mounts):
            problems.add(
                where, f"readOnlyRootFilesystem but PYNOMALY_DATA_DIR={data_dir} is on no volume"
            )
    volumes = {v["name"] for v in pod.get("spec", {}).get("volumes") or []}
    for m in container.get("volumeMounts") or []:
        if m["name"] not in volumes:
            problems.add(where, f"mounts volume '{m['name']}', which the pod lacks")
    # The grace period covers the preStop pause and the drain.
    if doc["kind"] != "Job" and "PYNOMALY_SHUTDOWN_TIMEOUT_S" in env:
        grace = pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        pause = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get(
            "seconds", 0
        )
        need = int(env["PYNOMALY_SHUTDOWN_TIMEOUT_S"]) + pause
        if grace <= need:
            problems.add(
                where,
                f"terminationGracePeriodSeconds {grace} does not exceed the preStop pause {pause} s "
                f"+ PYNOMALY_SHUTDOWN_TIMEOUT_S {env['PYNOMALY_SHUTDOWN_TIMEOUT_S']} s",
            )


def routes_metrics(path):
    """Whether an Ingress path sends GET /metrics to its backend."""
    p = path["path"]
    if path["pathType"] == "Exact":
        return p == "/metrics"
    p = p.rstrip("/")
    return p == "" or p == "/metrics"


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_services(docs, pods, problems):
    services = [d for d in docs if d["kind"] == "Service"]
    for svc in services:
        where = f"Service/{svc['metadata']['name']}"
        selector = svc["spec"].get("selector") or {}
        chosen = [
            (w, p) for w, p in pods if matches(selector, p.get("metadata", {}).get("labels") or {})
        ]
        if not chosen:
            problems.add(where, f"selector {selector} matches no rendered pod")
            continue
        for port in svc["spec"].get("ports") or []:
            target = port.get("targetPort", port["port"])
            for w, p in chosen:
                names = {}
                for c in p["spec"]["containers"]:
                    names.update(named_ports(c))
                ok = target in names if isinstance(target, str) else target in names.values()
                if not ok:
                    problems.add(where, f"targetPort {target!r} is not a port of {w}")
    for sm in (d for d in docs if d["kind"] == "ServiceMonitor"):
        where = f"ServiceMonitor/{sm['metadata']['name']}"
        selector = (sm["spec"].get("selector") or {}).get("matchLabels") or {}
        chosen = [s for s in services if matches(selector, s["metadata"].get("labels") or {})]
        if not chosen:
            problems.add(where, f"selector {selector} matches no rendered Service")
        for ep in sm["spec"].get("endpoints") or []:
            for s in chosen:
                if ep.get("port") not in {p.get("name") for p in s["spec"]["ports"]}:
                    problems.add(
                        where,
                        f"endpoint port {ep.get('port')!r} is not a port of Service/{s['metadata']['name']}",
                    )
    for ing in (d for d in docs if d["kind"] == "Ingress"):
        where = f"Ingress/{ing['metadata']['name']}"
        for rule in ing["spec"].get("rules") or []:
            for path in rule.get("http", {}).get("paths") or []:
                backend = path["backend"]["service"]
                if routes_metrics(path):
                    problems.add(
                        where,
                        f"path {path['path']!r} ({path['pathType']}) routes /metrics, which has "
                        "no auth, out of the cluster: route /api and /health only",
                    )
                svc = next((s for s in services if s["metadata"]["name"] == backend["name"]), None)
                if svc is None:
                    problems.add(where, f"backend Service '{backend['name']}' is not rendered")
                elif backend["port"].get("name") not in {
                    p.get("name") for p in svc["spec"]["ports"]
                } and backend["port"].get("number") not in {
                    p["port"] for p in svc["spec"]["ports"]
                }:
                    problems.add(
                        where,
                        f"backend port {backend['port']} is not a port of Service/{backend['name']}",
                    )


def check_jobs(containers, problems):
    """With Redis, jobs run only in `pynomaly worker` processes or in `serve --workers N`."""
    servers = [(w, args, env) for w, args, env in containers if args[:1] == ["serve"]]
    workers = [w for w, args, _ in containers if args[:1] == ["worker"]]
    for where, args, env in servers:
        if not env.get("REDIS_URL") or workers:
            continue
        n = args[args.index("--workers") + 1] if "--workers" in args[:-1] else "0"
        if not n.isdigit() or int(n) == 0:
            problems.add(
                where,
                "REDIS_URL is set but no `pynomaly worker` is rendered and `serve` runs "
                "no job workers (--workers N): queued jobs would never run",
            )


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("Usage: ")[1].splitlines()[0])
    rendered, out = sys.argv[1], sys.argv[2]
    docs = load(rendered)
    configmaps = {
        d["metadata"]["name"]: dict(d.get("data") or {}) for d in docs if d["kind"] == "ConfigMap"
    }
    secrets = {d["metadata"]["name"]: secret_data(d) for d in docs if d["kind"] == "Secret"}
    problems, notes = Problems(), set()
    os.makedirs(out, exist_ok=True)
    pods, written, containers = [], [], []
    for doc in docs:
        if doc["kind"] not in WORKLOADS:
            continue
        pod = pod_spec(doc)
        pods.append((f"{doc['kind']}/{doc['metadata']['name']}", pod))
        for container in pod.get("spec", {}).get("initContainers", []) + pod.get("spec", {}).get(
            "containers", []
        ):
            where = f"{doc['kind']}/{doc['metadata']['name']}/{container['name']}"
            env = resolve_env(container, configmaps, secrets, where, problems, notes)
            check_container(doc, pod, container, env, where, problems)
            containers.append((where, [str(a) for a in container.get("args") or []], env))
            path = os.path.join(
                out, f"{doc['kind'].lower()}-{doc['metadata']['name']}-{container['name']}.env"
            )
            with open(path, "w", encoding="utf-8") as f:
                for k in sorted(env):
                    f.write(env_line(k, env[k], where, problems) + "\n")
            written.append(
                (path, where, " ".join(container.get("command", []) + container.get("args", [])))
            )
    if not written:
        problems.add(rendered, "no workload container rendered")
    check_services(docs, pods, problems)
    check_jobs(containers, problems)
    for note in sorted(notes):
        print(f"note: {note}", file=sys.stderr)
    if problems.items:
        print(f"{len(problems.items)} problem(s) in {rendered}:", file=sys.stderr)
        for p in problems.items:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)
    for path, where, args in written:
        print(f"{path}\t{where}\t{args}")


if __name__ == "__main__":
    main()
