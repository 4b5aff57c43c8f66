"""pynomaly's scikit-learn estimators beside scikit-learn's, in one run on one machine.

    python bench/python_estimators.py ../shared/datasets

Needs the package (`pip install ./python`) and scikit-learn. Prints one Markdown row per
measurement: the median of several runs for each library, pynomaly and scikit-learn
alternating, and the ratio. Both libraries run with their default `n_jobs` (pynomaly:
every core; scikit-learn: one) and with `n_jobs=-1`.
"""

from __future__ import annotations

import gzip
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.ensemble import IsolationForest as SkIsolationForest
from sklearn.neighbors import LocalOutlierFactor as SkLocalOutlierFactor

import pynomaly


def load(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        header = f.readline().strip().split(",")
        x = np.loadtxt(f, delimiter=",")
    return np.ascontiguousarray(x[:, [i for i, h in enumerate(header) if h != "label"]])


def timed(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def row(what: str, ours: float, theirs: float, unit: str = "s") -> None:
    scale = 1e3 if unit == "ms" else 1e6 if unit == "µs" else 1.0
    print(f"| {what} | {ours * scale:.3g} {unit} | {theirs * scale:.3g} {unit} | {theirs / ours:.0f}× |")


def main() -> None:
    datasets = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets")
    http = load(datasets / "http.csv.gz")
    shuttle = load(datasets / "shuttle.csv")
    print(f"pynomaly {pynomaly.__version__}, scikit-learn {__import__('sklearn').__version__}, "
          f"numpy {np.__version__}, {os.cpu_count()} CPUs; http {http.shape}, shuttle {shuttle.shape}")
    print("| measured | pynomaly | scikit-learn | ratio |\n|---|---:|---:|---:|")
    for n_jobs, label in ((None, "default n_jobs"), (-1, "n_jobs=-1")):
        ours = timed(lambda: pynomaly.IsolationForest(random_state=0, n_jobs=n_jobs).fit(http).score_samples(http), 3)
        theirs = timed(lambda: SkIsolationForest(random_state=0, n_jobs=n_jobs).fit(http).score_samples(http), 3)
        row(f"IsolationForest().fit(X).score_samples(X), http {http.shape[0]:,}×{http.shape[1]}, {label}", ours, theirs)
    one = http[:1].copy()
    ours_model = pynomaly.IsolationForest(random_state=0).fit(http)
    sk_model = SkIsolationForest(random_state=0).fit(http)
    ours_model.score_samples(one), sk_model.score_samples(one)
    ours = timed(lambda: ours_model.score_samples(one), 2000)
    theirs = timed(lambda: sk_model.score_samples(one), 200)
    row("IsolationForest.score_samples, one row (fitted on http)", ours, theirs, "µs")
    for n_jobs, label in ((None, "default n_jobs"), (-1, "n_jobs=-1")):
        ours = timed(lambda: pynomaly.LocalOutlierFactor(n_jobs=n_jobs).fit(shuttle), 3)
        theirs = timed(lambda: SkLocalOutlierFactor(n_jobs=n_jobs).fit(shuttle), 3)
        row(f"LocalOutlierFactor().fit(X), shuttle {shuttle.shape[0]:,}×{shuttle.shape[1]}, {label}", ours, theirs)


if __name__ == "__main__":
    main()
