"""Checks of the compose deployment that no off-the-shelf tool makes, for
deploy/ci/check-compose.sh:

    compose_checks.py lint CONFIG_JSON ENV_EXAMPLE
        the resolved compose file (`config --format json`) against the deployment's rules:
        health checks, restart policies, resource limits, published ports, dependency
        conditions, named volumes, secrets only from the env file; pynomaly services that
        agree with each other, with nginx and with Prometheus; the TLS nginx config in step
        with the top-level nginx.conf.
    compose_checks.py service-envs CONFIG_JSON IMAGE OUT_DIR
        writes each pynomaly service's resolved environment to OUT_DIR/<service>.env and
        prints each service's name and the pynomaly command it runs.
    compose_checks.py healthchecks CONFIG_JSON IMAGE PYNOMALY_BIN
        runs each pynomaly service's health check command with the binary and the service's
        environment, its ports moved to free loopback ones where nothing listens: each
        must be accepted (settings, arguments) and report no answer (exit 1), not a usage
        or settings error (exit 2).
    compose_checks.py render-nginx PREFIX
        writes PREFIX/nginx.conf: the TLS config with loopback ports and upstreams
        (certificates expected in PREFIX/certs).

Exit status 1 with every failure named.
"""

import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compose_model import (  # noqa: E402
    COMPOSE_FILE, NGINX_CONF, ROOT, TOP_NGINX_CONF, CheckFailed, bind_port, directives,
    nginx_upstreams, pynomaly_services, read_env_file, render_nginx, role, size_bytes,
)

# Services whose state must outlive their container.
STATEFUL = ("postgres", "redis", "minio", "prometheus", "grafana")
# The proxy settings both nginx configs must share.
SHARED_DIRECTIVES = {
    "least_conn", "keepalive", "keepalive_timeout", "client_max_body_size",
    "client_body_buffer_size", "proxy_http_version", "proxy_set_header", "proxy_buffering",
    "proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout",
    "proxy_next_upstream", "proxy_next_upstream_tries", "proxy_next_upstream_timeout",
    "default", '""',
}


class Report:
    """Prints each failed check, and the number passed when a section ends."""

    def __init__(self):
        self.failures = []
        self.passed = 0

    def section(self, name):
        if self.passed:
            print(f"  {self.passed} checks passed")
        self.passed = 0
        if name is not None:
            print(f"{name}:")

    def check(self, ok, what, detail=""):
        if ok:
            self.passed += 1
        else:
            print(f"  FAIL {what}{': ' + detail if detail else ''}")
            self.failures.append(f"{what}{': ' + detail if detail else ''}")


def one_shots(config):
    """Services others wait for with service_completed_successfully."""
    return {dep for s in config["services"].values()
            for dep, c in (s.get("depends_on") or {}).items()
            if c.get("condition") == "service_completed_successfully"}


def lint(config, env_example):
    r = Report()
    services = config["services"]
    shots = one_shots(config)
    declared_volumes = set(config.get("volumes") or {})
    raw = COMPOSE_FILE.read_text()

    r.section("services")
    for name, s in sorted(services.items()):
        restart = s.get("restart")
        hc = s.get("healthcheck") or {}
        limits = ((s.get("deploy") or {}).get("resources") or {}).get("limits") or {}
        r.check(limits.get("cpus") and limits.get("memory"),
                f"{name}: deploy.resources.limits has cpus and memory", f"found {limits}")
        if name in shots:
            r.check(restart == "no", f"{name}: one-shot with restart \"no\"", f"restart={restart}")
            r.check(hc.get("disable") is True, f"{name}: one-shot, health check disabled explicitly")
        else:
            r.check(restart in ("unless-stopped", "always", "on-failure"),
                    f"{name}: restart policy", f"restart={restart}")
            r.check(bool(hc.get("test")) and not hc.get("disable"),
                    f"{name}: health check", f"healthcheck={hc}")
        for dep, cond in sorted((s.get("depends_on") or {}).items()):
            want = ("service_completed_successfully" if dep in shots else "service_healthy")
            r.check(cond.get("condition") == want, f"{name} -> {dep}: depends_on condition {want}",
                    f"found {cond.get('condition')}")
        for port in s.get("ports") or []:
            published = f"{port.get('host_ip', '')}:{port.get('published')}->{port.get('target')}"
            allowed = name == "nginx" or (name == "grafana" and port.get("host_ip") == "127.0.0.1")
            r.check(allowed, f"{name}: published port {published} allowed",
                    "only nginx publishes ports (Grafana on 127.0.0.1)")
        for v in s.get("volumes") or []:
            if v.get("type") == "volume":
                r.check(v.get("source") in declared_volumes,
                        f"{name}: volume {v.get('source')} is a declared named volume")
        if name in STATEFUL:
            r.check(any(v.get("type") == "volume" for v in s.get("volumes") or []),
                    f"{name}: state on a named volume")
    nginx_ports = {p.get("target") for p in services.get("nginx", {}).get("ports") or []}
    r.check(nginx_ports == {80, 443}, "nginx publishes 443 and 80", f"found {nginx_ports}")

    r.section("secrets")
    example = read_env_file(env_example)
    secrets = [k for k, v in example.items() if v == ""]
    r.check(bool(secrets), ".env.example leaves the secrets empty", "no empty value found")
    for key in secrets:
        uses = re.findall(r"\$\{" + key + r"(:?[?-]?)", raw)
        r.check(uses and all(u == ":?" for u in uses),
                f"{key}: every use in the compose file is ${{{key}:?…}}", f"found {uses}")
    literal = re.findall(r"\b[0-9a-f]{32,}\b", raw)
    r.check(not literal, "no literal secret-like hex string in the compose file", f"{literal}")

    r.section("pynomaly services")
    image = example.get("PYNOMALY_IMAGE", "")
    pyn = pynomaly_services(config, image)
    roles = {n: role(s) for n, s in pyn.items()}
    print(f"  ({', '.join(f'{n}={roles[n]}' for n in sorted(pyn))})")
    apis = sorted(n for n in pyn if roles[n] == "serve")
    workers = sorted(n for n in pyn if roles[n] == "worker")
    r.check(len(apis) >= 2, "two or more API instances (serve)", f"{apis}")
    r.check(len(workers) >= 2, "two or more workers", f"{workers}")
    r.check(any(roles[n] == "migrate" and n in shots for n in pyn),
            "a migrate one-shot the others wait for")
    for n in apis + workers:
        deps = pyn[n].get("depends_on") or {}
        r.check(any(roles.get(d) == "migrate" for d in deps), f"{n}: waits for migrate")
    envs = {n: s.get("environment") or {} for n, s in pyn.items()}
    keys = {e.get("PYNOMALY_SECRET_KEY") for e in envs.values()}
    r.check(len(keys) == 1 and None not in keys,
            "PYNOMALY_SECRET_KEY set and shared by every pynomaly service")
    for n in apis:
        r.check(envs[n].get("PYNOMALY_TRUST_FORWARDED_FOR") == "true",
                f"{n}: PYNOMALY_TRUST_FORWARDED_FOR=true (behind nginx)")
    for n, e in sorted(envs.items()):
        for var, value in sorted(e.items()):
            if value and value.split("://", 1)[0] in ("http", "https", "postgres", "redis"):
                host = urlsplit(value).hostname
                if host and "." not in host and host != "localhost":
                    r.check(host in services, f"{n}: {var} names the compose service {host}")
        data_dir = e.get("PYNOMALY_DATA_DIR")
        if n not in shots:
            r.check(any(v.get("type") == "volume" and v.get("target") == data_dir
                        for v in pyn[n].get("volumes") or []),
                    f"{n}: PYNOMALY_DATA_DIR ({data_dir}) is a named volume")

    r.section("nginx")
    conf = NGINX_CONF.read_text()
    upstreams = nginx_upstreams(conf)
    r.check(sorted((h, p) for h, p, _ in upstreams) == sorted((n, bind_port(pyn[n])) for n in apis),
            "nginx upstream servers are exactly the API services and their ports",
            f"nginx {[(h, p) for h, p, _ in upstreams]}, compose {[(n, bind_port(pyn[n])) for n in apis]}")
    (body,) = re.findall(r"client_max_body_size (\w+);", conf)
    for n in apis:
        limit = int(envs[n].get("PYNOMALY_MAX_BODY_BYTES") or 32 * 1024 * 1024)
        r.check(size_bytes(body) == limit,
                f"{n}: PYNOMALY_MAX_BODY_BYTES equals nginx's client_max_body_size",
                f"{limit} vs {body} = {size_bytes(body)}")
        r.check(f'"limit_bytes": {limit}' in conf,
                f"{n}: nginx's own 413 names the same limit ({limit})")
    top = TOP_NGINX_CONF.read_text()
    ours, theirs = directives(conf, SHARED_DIRECTIVES), directives(top, SHARED_DIRECTIVES)
    r.check(ours == theirs, "proxy settings equal to the top-level nginx.conf's",
            "\n    deploy/nginx/nginx.conf: " + "\n      ".join(ours)
            + "\n    nginx.conf: " + "\n      ".join(theirs))
    params = lambda c: sorted({p for _, _, p in nginx_upstreams(c)})  # noqa: E731
    r.check(params(conf) == params(top),
            "upstream server parameters equal to the top-level nginx.conf's",
            f"{params(conf)} vs {params(top)}")

    r.section("prometheus")
    prom = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    targets = set(re.findall(r'"([A-Za-z0-9_.-]+:\d+)"', prom))
    wanted = {f"{n}:{bind_port(pyn[n])}" for n in apis} | {
        f"{n}:{bind_port(pyn[n], 'PYNOMALY_METRICS_BIND', None)}" for n in workers}
    r.check(wanted <= targets, "Prometheus scrapes every API instance and worker",
            f"missing {sorted(wanted - targets)}")
    for n in workers:
        r.check(envs[n].get("PYNOMALY_METRICS_BIND"), f"{n}: PYNOMALY_METRICS_BIND set")
    r.check("alerts.yml" in prom and any(
        v.get("source", "").endswith("prometheus/alerts.yml")
        for v in services["prometheus"].get("volumes") or []),
        "Prometheus loads the repository's prometheus/alerts.yml")

    r.section(None)
    if r.failures:
        raise CheckFailed(f"{len(r.failures)} compose rule(s) broken:\n  " + "\n  ".join(r.failures))


# Values written bare; any other is single-quoted, which an env file (as Docker Compose reads
# one, and `pynomaly config check --env-file`) takes literally: no `#` comment, no `$`.
BARE = re.compile(r"[A-Za-z0-9_./:@,+=%-]*")


def env_line(service, name, value):
    if BARE.fullmatch(value):
        return f"{name}={value}"
    if "'" in value:
        raise CheckFailed(f"{service}: {name} has a single quote, which an env file cannot "
                          f"carry exactly")
    return f"{name}='{value}'"


def service_envs(config, image, out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, s in sorted(pynomaly_services(config, image).items()):
        env = s.get("environment") or {}
        lines = [env_line(name, k, v) for k, v in sorted(env.items()) if v is not None]
        (out_dir / f"{name}.env").write_text("\n".join(lines) + "\n")
        print(name, role(s))


def healthchecks(config, image, binary):
    import socket
    import subprocess
    failures = []
    for name, s in sorted(pynomaly_services(config, image).items()):
        test = (s.get("healthcheck") or {}).get("test")
        if not test:
            print(f"  {name}: no health check (one-shot)")
            continue
        if test[:2] != ["CMD", "pynomaly"]:
            failures.append(f"{name}: health check {test} does not run the image's pynomaly")
            continue
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in (s.get("environment") or {}).items() if v is not None}
        for var in ("PYNOMALY_BIND", "PYNOMALY_METRICS_BIND"):
            if env.get(var):
                env[var] = f"127.0.0.1:{port}"
        args = [re.sub(r"^(https?://)(127\.0\.0\.1|localhost):\d+", rf"\g<1>127.0.0.1:{port}", a)
                for a in test[2:]]
        out = subprocess.run([binary, *args], env={"PATH": "/usr/bin:/bin", **env},
                             capture_output=True, text=True, timeout=30)
        said = (out.stdout + out.stderr).strip().replace("\n", " ")
        if out.returncode != 1:
            failures.append(f"{name}: `pynomaly {' '.join(test[2:])}` with nothing listening "
                            f"exited {out.returncode}, expected 1 (no answer): {said}")
        else:
            print(f"  {name}: `pynomaly {' '.join(test[2:])}` accepted; nothing listening: {said}")
    if failures:
        raise CheckFailed("health checks:\n  " + "\n  ".join(failures))


def main(argv):
    try:
        if argv[:1] == ["lint"] and len(argv) == 3:
            lint(json.loads(Path(argv[1]).read_text()), argv[2])
        elif argv[:1] == ["service-envs"] and len(argv) == 4:
            service_envs(json.loads(Path(argv[1]).read_text()), argv[2], argv[3])
        elif argv[:1] == ["healthchecks"] and len(argv) == 4:
            healthchecks(json.loads(Path(argv[1]).read_text()), argv[2], argv[3])
        elif argv[:1] == ["render-nginx"] and len(argv) == 2:
            prefix = Path(argv[1])
            conf = render_nginx(NGINX_CONF.read_text(),
                                {h: 8001 + i for i, (h, _, _) in
                                 enumerate(nginx_upstreams(NGINX_CONF.read_text()))},
                                {80: 8080, 443: 8443}, prefix)
            (prefix / "nginx.conf").write_text(conf)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except CheckFailed as e:
        print(f"compose_checks.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
