#!/usr/bin/env python3
"""PyOD beside pynomaly, single-threaded, in one run: fit time of ECOD, COPOD, HBOS, KNN,
PCA, GMM, INNE, MCD and CBLOF (PyOD's defaults; random_state=0 as pyod_baseline.py) on the
largest shared sets.

    python3 -m venv /var/tmp/pyod-venv && /var/tmp/pyod-venv/bin/pip install pyod scikit-learn pandas
    cargo build --release -p bench-tools --bin accuracy
    /var/tmp/pyod-venv/bin/python bench/pyod_speed.py [DATASETS_DIR] [--repeat 3]
        [--detectors mcd,cblof]

For each dataset, in turn: pynomaly's `accuracy --json --only FILE --seeds 1 --repeat N`
with RAYON_NUM_THREADS=1 (its per-detector `seconds`: the fastest of N fits, each scoring
the training rows, without reading the file), then PyOD's `fit` (which computes `decision_scores_`) with every
thread pool limited to 1, as ../shared/datasets/pyod_baseline.py does (numba compiled by a
warm-up fit first). Each side: the fastest of --repeat fits in one process. Prints a
Markdown table.
--detectors runs PyOD's side for those only (one PyOD MCD fit on http takes ~100 s); for
the randomized ones (INNE, MCD, CBLOF) both sides use seed 0, so the ROC-AUCs differ.
"""
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"

import json
import subprocess
import sys
import time
import warnings

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from pyod.models.cblof import CBLOF
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.gmm import GMM
from pyod.models.hbos import HBOS
from pyod.models.inne import INNE
from pyod.models.knn import KNN
from pyod.models.mcd import MCD
from pyod.models.pca import PCA

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["http.csv.gz", "shuttle.csv", "mammography.csv", "satellite.csv"]
DETECTORS = {"ecod": ECOD, "copod": COPOD, "hbos": HBOS, "knn": KNN, "pca": PCA,
             "gmm": lambda: GMM(random_state=0), "inne": lambda: INNE(random_state=0),
             "mcd": lambda: MCD(random_state=0), "cblof": lambda: CBLOF(random_state=0)}


def ours(binary, data, file, repeat):
    env = dict(os.environ, RAYON_NUM_THREADS="1")
    out = subprocess.run([binary, data, "--json", "--seeds", "1", "--repeat", str(repeat),
                          "--only", file],
                         env=env, capture_output=True, text=True)
    report = json.loads(out.stdout)
    return {p["algorithm"]: (p["seconds"], p["roc_auc"]) for p in report["datasets"][0]["pyod"]}


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 3
    if "--repeat" in sys.argv:
        args = [a for a in args if a != str(repeat)]
    chosen = sys.argv[sys.argv.index("--detectors") + 1] if "--detectors" in sys.argv else None
    args = [a for a in args if a != chosen]
    detectors = {k: v for k, v in DETECTORS.items() if chosen is None or k in chosen.split(",")}
    data = args[0] if args else os.path.join(HERE, "..", "..", "shared", "datasets")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "..", "target"))
    binary = os.path.join(target, "release", "accuracy")
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm = np.random.RandomState(0).randn(300, 5)
        for cls in detectors.values():
            cls().fit(warm)
    print("| dataset | detector | pynomaly s | PyOD s | speed-up | ROC-AUC ours | ROC-AUC PyOD |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for f in FILES:
        df = pd.read_csv(os.path.join(data, f))
        x = np.ascontiguousarray(df.iloc[:, :-1].to_numpy(dtype=np.float64))
        y = df["label"].to_numpy().astype(int)
        run = ours(binary, data, f, repeat)
        for name, cls in detectors.items():
            best, roc = float("inf"), None
            for _ in range(repeat):
                with threadpool_limits(1), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    det = cls()
                    t = time.perf_counter()
                    det.fit(x)
                    best = min(best, time.perf_counter() - t)
                from sklearn.metrics import roc_auc_score
                roc = roc_auc_score(y, det.decision_scores_)
            mine = run[name][0]
            print(f"| {f} | {name} | {mine:.4f} | {best:.4f} | {best / mine:.1f}x | "
                  f"{run[name][1]:.4f} | {roc:.4f} |", flush=True)


if __name__ == "__main__":
    main()
