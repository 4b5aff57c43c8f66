"""A live `pynomaly serve` for the client tests.

The server binary is `$PYNOMALY_BIN`, else the newest `pynomaly` under `$CARGO_TARGET_DIR`
or the repository's `target/` (build it with `cargo build -p pynomaly`); without one, the
tests that need it are skipped, saying so. It runs on a free loopback port with a fresh
data directory; its first-start admin key is read from `<data dir>/admin.key`.

`$PYNOMALY_TEST_S3_ENDPOINT` (an S3-compatible server on loopback, as `.ci/run` starts)
gives the server a bucket named `bucket` holding the guide's `data1.csv` and `data2.csv`;
without it, S3 is pointed at a closed loopback port, so nothing leaves the machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import httpx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_binary() -> Optional[Path]:
    if os.environ.get("PYNOMALY_BIN"):
        return Path(os.environ["PYNOMALY_BIN"])
    targets = [Path(os.environ["CARGO_TARGET_DIR"])] if os.environ.get("CARGO_TARGET_DIR") else []
    targets.append(REPO / "target")
    found = [t / p / "pynomaly" for t in targets for p in ("debug", "release")]
    found = [f for f in found if f.is_file()]
    return max(found, key=lambda f: f.stat().st_mtime) if found else None


def csv_rows(seed: int, n: int = 200) -> str:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    x[:5] += 6.0
    return "a,b,c\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in x) + "\n"


@dataclass
class Server:
    url: str
    admin_key: str
    data_dir: Path
    sources_dir: Path
    s3: bool

    def key(self, *scopes: str) -> str:
        """A new API key with these scopes."""
        r = httpx.post(
            f"{self.url}/api/v1/auth/keys",
            json={"name": "-".join(scopes) or "none", "scopes": list(scopes)},
            headers={"Authorization": f"Bearer {self.admin_key}"},
        )
        r.raise_for_status()
        key: str = r.json()["key"]
        return key


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    binary = find_binary()
    if binary is None:
        pytest.skip("no pynomaly binary: set PYNOMALY_BIN or run `cargo build -p pynomaly`")
    with tempfile.TemporaryDirectory(prefix="pynomaly-py-") as tmp:
        data_dir = Path(tmp) / "data"
        sources = data_dir / "sources"
        sources.mkdir(parents=True)
        (sources / "day1.csv").write_text(csv_rows(1))
        (sources / "day2.csv").write_text(csv_rows(2))
        port = free_port()
        s3 = os.environ.get("PYNOMALY_TEST_S3_ENDPOINT", "").rstrip("/")
        env = {
            **os.environ,
            "PYNOMALY_DATA_DIR": str(data_dir),
            "PYNOMALY_BIND": f"127.0.0.1:{port}",
            "LOG_LEVEL": "warn",
            "AWS_ENDPOINT_URL": s3 or f"http://127.0.0.1:{free_port()}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        for var in ("DATABASE_URL", "REDIS_URL", "PYNOMALY_STORAGE_URL", "PYNOMALY_SOURCES_DIR"):
            env.pop(var, None)
        if s3:
            # The test server checks that a request is signed, not the signature; an
            # unsigned one is anonymous, refused once the bucket has objects.
            signed = {
                "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/"
                "aws4_request, SignedHeaders=host, Signature=00"
            }
            httpx.put(f"{s3}/bucket", headers=signed).raise_for_status()
            for name, seed in (("data1.csv", 3), ("data2.csv", 4)):
                httpx.put(
                    f"{s3}/bucket/{name}", content=csv_rows(seed), headers=signed
                ).raise_for_status()
        log = open(Path(tmp) / "serve.log", "wb")
        proc = subprocess.Popen([str(binary), "serve"], env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(f"{url}/health/live").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited: {(Path(tmp) / 'serve.log').read_text()}")
                time.sleep(0.1)
            yield Server(
                url=url,
                admin_key=(data_dir / "admin.key").read_text().strip(),
                data_dir=data_dir,
                sources_dir=sources,
                s3=bool(s3),
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
