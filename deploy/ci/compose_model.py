"""The compose deployment as data, for deploy/ci/check-compose.sh and deploy/ci/topology.py.

Reads what `docker compose config --format json` resolved (services, their environment,
dependencies and health checks) and the nginx TLS config, and renders that config for a
run on loopback. Standard library only.
"""

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.production.yml"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
TOP_NGINX_CONF = ROOT / "nginx.conf"


class CheckFailed(Exception):
    """A deployment file is wrong; the message says which and how."""


def compose_json(compose_bin, env_file):
    """`docker compose config --format json` of the production file with `env_file`."""
    out = subprocess.run(
        [str(compose_bin), "-f", str(COMPOSE_FILE), "--env-file", str(env_file),
         "config", "--format", "json"],
        capture_output=True, text=True, cwd=ROOT,
    )
    if out.returncode != 0:
        raise CheckFailed(f"compose config --format json failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def read_env_file(path):
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    env = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise CheckFailed(f"{path}: not KEY=VALUE: {line!r}")
        env[key.strip()] = value
    return env


def pynomaly_services(config, image):
    """{name: service} of the services that run the pynomaly image."""
    found = {n: s for n, s in config["services"].items() if s.get("image") == image}
    if not found:
        raise CheckFailed(f"no service runs the pynomaly image {image!r}")
    return found


def role(service):
    """The pynomaly subcommand a service runs (`serve` when the image's CMD is kept)."""
    command = service.get("command") or ["serve"]
    return command[0]


def bind_port(service, name="PYNOMALY_BIND", default=8000):
    value = (service.get("environment") or {}).get(name)
    if not value:
        return default
    return int(value.rsplit(":", 1)[1])


def start_order(config, names):
    """`names` ordered so that each comes after the services it depends on."""
    done, order = set(), []

    def visit(name, path):
        if name in done:
            return
        if name in path:
            raise CheckFailed(f"depends_on cycle: {' -> '.join(path + [name])}")
        for dep in (config["services"][name].get("depends_on") or {}):
            if dep in names:
                visit(dep, path + [name])
        done.add(name)
        order.append(name)

    for name in sorted(names):
        visit(name, [])
    return order


# --- nginx ---------------------------------------------------------------------------------

UPSTREAM_SERVER = re.compile(r"^(\s*)server ([A-Za-z0-9_.-]+):(\d+)(.*;)$", re.M)
LISTEN = re.compile(r"^(\s*)listen (80|443)( .*;|;)$", re.M)


def nginx_upstreams(conf_text):
    """[(host, port, parameters)] of the `server` lines in upstream blocks."""
    return [(m.group(2), int(m.group(3)), m.group(4).rstrip(";").strip())
            for m in UPSTREAM_SERVER.finditer(conf_text)]


def render_nginx(conf_text, upstream_ports, listen_ports, prefix):
    """The TLS config for a run in the directory `prefix` on loopback.

    upstream_ports: {compose service name: loopback port}, for every `server NAME:PORT`
    line; listen_ports: {80: port, 443: port}. Temporary files go under prefix/tmp (made
    here); certificates are read from prefix/certs (relative to the config file)."""
    prefix = Path(prefix)
    seen = set()

    def upstream(m):
        host = m.group(2)
        if host not in upstream_ports:
            raise CheckFailed(
                f"deploy/nginx/nginx.conf: upstream server {host}:{m.group(3)} is not a "
                f"pynomaly API service of the compose file ({sorted(upstream_ports)})")
        seen.add(host)
        return f"{m.group(1)}server 127.0.0.1:{upstream_ports[host]}{m.group(4)}"

    def listen(m):
        return f"{m.group(1)}listen 127.0.0.1:{listen_ports[int(m.group(2))]}{m.group(3)}"

    text, n_up = UPSTREAM_SERVER.subn(upstream, conf_text)
    text, n_listen = LISTEN.subn(listen, text)
    if n_listen != 2:
        raise CheckFailed(f"deploy/nginx/nginx.conf: expected `listen 80` and `listen 443`, "
                          f"found {n_listen} listen lines to rewrite")
    missing = set(upstream_ports) - seen
    if missing:
        raise CheckFailed(f"deploy/nginx/nginx.conf: no upstream server line for the API "
                          f"services {sorted(missing)}")
    temp = "".join(f"    {kind}_temp_path tmp/{kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text, n_http = re.subn(r"^http \{\n", "http {\n" + temp, text, count=1, flags=re.M)
    if n_http != 1:
        raise CheckFailed("deploy/nginx/nginx.conf: no `http {` block")
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    return text


def directives(conf_text, names):
    """Every `name args;` line for the given directive names (comments dropped), in
    order, with spacing normalised."""
    out = []
    for line in conf_text.splitlines():
        line = line.split("#", 1)[0].strip()
        word = line.split(" ", 1)[0]
        if word in names and line.endswith(";"):
            out.append(re.sub(r"\s+", " ", line))
    return out


def size_bytes(value):
    """nginx size syntax (32m, 1k, 1024) in bytes."""
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    if not m:
        raise CheckFailed(f"not an nginx size: {value!r}")
    unit = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[m.group(2).lower()]
    return int(m.group(1)) * unit
