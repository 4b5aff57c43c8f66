#!/usr/bin/env python3
"""scikit-learn's side of the speed comparison in BENCHMARKS.md.

    pip install scikit-learn==1.9.1 numpy
    python3 bench/sklearn_speed.py [DATASETS_DIR]     # default: ../shared/datasets

Times scikit-learn with its defaults, as ../shared/datasets/sklearn_baseline.py does
(n_jobs=None: the isolation forest runs on one thread), with the reading of the file NOT
counted (our figure, `pynomaly detect`, does include it):
  - IsolationForest(n_estimators=100, max_samples="auto") fit + score_samples on
    http.csv.gz, for random_state 0..4;
  - LocalOutlierFactor(n_neighbors=20) fit (which scores the training rows,
    negative_outlier_factor_) on shuttle.csv and http.csv.gz.
Run it right after the pynomaly commands, on the same host, so both sides see the same load.
"""
import gzip
import io
import os
import platform
import sys
import time
import warnings

import numpy as np
import sklearn
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

# http.csv.gz has duplicate rows; scikit-learn warns about them (as the baseline script
# does, the warning is silenced: it does not change the timing).
warnings.filterwarnings("ignore", message="Duplicate values are leading")

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = os.path.join(HERE, "..", "..", "shared", "datasets")


def load(path):
    raw = open(path, "rb").read()
    if path.endswith(".gz"):
        raw = gzip.decompress(raw)
    a = np.loadtxt(io.BytesIO(raw), delimiter=",", skiprows=1, ndmin=2)
    return a[:, :-1]


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PYNOMALY_DATASETS", DEFAULT)
    print(f"# python {platform.python_version()}  numpy {np.__version__}  scikit-learn {sklearn.__version__}"
          f"  {os.cpu_count()} logical CPUs; file reading not timed")

    x = load(os.path.join(folder, "http.csv.gz"))
    times = []
    for seed in range(5):
        t0 = time.perf_counter()
        IsolationForest(n_estimators=100, max_samples="auto", random_state=seed).fit(x).score_samples(x)
        times.append(time.perf_counter() - t0)
    print(f"isolation_forest http.csv.gz {x.shape[0]}x{x.shape[1]} fit+score_samples: "
          f"mean {np.mean(times):.3f} s, min {np.min(times):.3f} s  (per seed: "
          + ", ".join(f"{t:.3f}" for t in times) + ")")

    for name in ("shuttle.csv", "http.csv.gz"):
        x = load(os.path.join(folder, name))
        t0 = time.perf_counter()
        LocalOutlierFactor(n_neighbors=20).fit(x)
        print(f"lof n_neighbors=20 {name} {x.shape[0]}x{x.shape[1]} fit: {time.perf_counter() - t0:.3f} s")


if __name__ == "__main__":
    main()
