#!/usr/bin/env python3
"""Drift demo on a shared dataset: no alarm on an unshifted half, an alarm on a shifted copy.

    python3 bench/drift_demo.py [--bin PATH] [--shift-features 0,2] [--shift-sd 0.5] DATASET

DATASET is one of ../shared/datasets (CSV or gzip CSV with a header; the `label` column is
dropped). The rows are shuffled (seed 0) and split in two halves. A `pynomaly serve` on a
fresh data directory trains the model `demo` twice on the first half, through a training
job over a data source (so the reference profile is written by the job path and features
keep their CSV names): version 1 then scores the second half unchanged, version 2 a copy
of it where the chosen features moved by `--shift-sd` training standard deviations, both
through `POST /api/v1/models/demo/predict` in chunks. Each version's drift report is
printed as Markdown, with the drift gauges from /metrics.

Exit status 0 only if version 1's verdict is `stable` with every feature stable, and
version 2 flags exactly the shifted features (moderate_drift or drift), the others stable.
Standard library only; the server binary defaults to
${CARGO_TARGET_DIR:-target}/release/pynomaly.
"""
import argparse
import csv
import gzip
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_table(path):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    reader = csv.reader(io.StringIO(raw.decode()))
    header = next(reader)
    keep = [i for i, h in enumerate(header) if h != "label"]
    rows = [[float(r[i]) for i in keep] for r in reader if r]
    return [header[i] for i in keep], rows


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, work):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.data = os.path.join(work, "data")
        self.sources = os.path.join(work, "sources")
        os.makedirs(self.sources)
        env = dict(os.environ, PYNOMALY_BIND=f"127.0.0.1:{self.port}", PYNOMALY_DATA_DIR=self.data,
                   PYNOMALY_SOURCES_DIR=self.sources, LOG_LEVEL="warn")
        self.log = open(os.path.join(work, "server.log"), "wb")
        self.proc = subprocess.Popen([binary, "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(240):
            try:
                urllib.request.urlopen(self.base + "/health", timeout=2)
                break
            except (urllib.error.URLError, ConnectionError):
                if self.proc.poll() is not None:
                    sys.exit("the server exited; see " + self.log.name)
                time.sleep(0.25)
        key_file = os.path.join(self.data, "admin.key")
        for _ in range(40):
            if os.path.exists(key_file) and os.path.getsize(key_file):
                break
            time.sleep(0.25)
        self.key = open(key_file).read().strip()

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=600) as r:
                text = r.read().decode()
                return r.status, (json.loads(text) if text.startswith(("{", "[")) else text)
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read().decode() or "null")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([repr(v) for v in r] for r in rows)


def train_job(server, source):
    status, body = server.call("POST", "/api/v1/models", {
        "model_name": "demo", "training_data": source, "algorithm": "isolation_forest",
        "contamination": 0.05, "random_state": 0})
    assert status == 202, (status, body)
    job = body["job_id"]
    for _ in range(1200):
        status, body = server.call("GET", f"/api/v1/jobs/{job}")
        if body["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.25)
    assert body["status"] == "succeeded", body
    return body["result"]["version"]


def predict_all(server, version, rows, chunk=20000):
    for i in range(0, len(rows), chunk):
        status, body = server.call("POST", "/api/v1/models/demo/predict",
                                   {"data": rows[i:i + chunk], "version": version})
        assert status == 200, (status, body)


def report_md(title, d):
    out = [f"**{title}**: verdict `{d['verdict']}`, window {d['window']['n_samples']} rows "
           f"({d['window']['start']} to {d['window']['end']}), reference {d['reference_n_samples']} rows, "
           f"anomaly rate {d['anomaly_rate']:.4f} vs {d['training_anomaly_rate']:.4f} at training "
           f"(`{d['anomaly_rate_verdict']}`), data quality {d['data_quality']:.4f}", "",
           "| feature | PSI | KS D (+max error) | mean: training → window | std: training → window | out of range | verdict |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for f in d["features"]:
        out.append(f"| {f['feature']} | {f['psi']:.4f} | {f['ks']:.4f} (+{f['ks_max_error']:.3f}) | "
                   f"{f['reference_mean']:.3f} → {f['current_mean']:.3f} | {f['reference_std']:.3f} → "
                   f"{f['current_std']:.3f} | {f['out_of_range_rate']:.4f} | {f['verdict']} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset")
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                                  "release", "pynomaly"))
    ap.add_argument("--shift-features", default="0,2", help="0-based feature indices to shift")
    ap.add_argument("--shift-sd", type=float, default=0.5, help="shift, in training standard deviations")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"no pynomaly binary at {args.bin} (cargo build --release -p pynomaly, or --bin)")

    names, rows = read_table(args.dataset)
    random.Random(0).shuffle(rows)
    half = len(rows) // 2
    train, test = rows[:half], rows[half:]
    shifted_idx = sorted({int(i) for i in args.shift_features.split(",")})
    sds = [statistics.pstdev(r[j] for r in train) for j in range(len(names))]
    shifted = [[v + (args.shift_sd * sds[j] if j in shifted_idx else 0.0) for j, v in enumerate(r)] for r in test]

    work = tempfile.mkdtemp(prefix="pynomaly-drift-demo-")
    server = Server(args.bin, work)
    try:
        write_csv(os.path.join(server.sources, "train.csv"), names, train)
        t0 = time.time()
        v1 = train_job(server, "train.csv")
        v2 = train_job(server, "train.csv")
        t_train = time.time() - t0
        t0 = time.time()
        predict_all(server, v1, test)
        predict_all(server, v2, shifted)
        t_predict = time.time() - t0
        _, steady = server.call("GET", f"/api/v1/models/demo/drift?version={v1}")
        _, moved = server.call("GET", f"/api/v1/models/demo/drift?version={v2}")
        _, metrics = server.call("GET", "/metrics")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    shifted_names = [names[j] for j in shifted_idx]
    print(f"### Drift demo: {os.path.basename(args.dataset)}")
    print()
    print(f"`python3 bench/drift_demo.py --shift-features {args.shift_features} --shift-sd {args.shift_sd} "
          f"{args.dataset}`: {len(rows)} rows x {len(names)} features, shuffled (seed 0); trained on "
          f"{len(train)} rows (two training jobs: versions {v1} and {v2}, {t_train:.1f} s), version {v1} scored the "
          f"other {len(test)} rows unchanged, version {v2} the same rows with {', '.join(shifted_names)} moved by "
          f"{args.shift_sd} training sd ({t_predict:.1f} s of predicts in chunks of 20,000 rows).")
    print()
    print(report_md(f"Unshifted half (version {v1})", steady))
    print()
    print(report_md(f"Shifted copy (version {v2})", moved))
    print()
    print("Gauges at the end (`/metrics`; the newest window of the name, version 2's):")
    print()
    print("```")
    for line in metrics.splitlines():
        if line.startswith(("pynomaly_data_drift_score{", "pynomaly_data_quality_score{")):
            print(line)
    print("```")

    ok = steady["verdict"] == "stable" and all(f["verdict"] == "stable" for f in steady["features"])
    flagged = [f["feature"] for f in moved["features"] if f["verdict"] in ("moderate_drift", "drift")]
    ok = ok and sorted(flagged) == sorted(shifted_names)
    print()
    print(f"Result: unshifted verdict `{steady['verdict']}`; flagged on the shifted copy: {flagged} "
          f"(shifted: {shifted_names}) -> {'PASS' if ok else 'FAIL'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
