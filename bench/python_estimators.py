"""pynomaly's scikit-learn estimators beside scikit-learn's, in one run on one machine.

    python bench/python_estimators.py ../shared/datasets

Needs the package (`pip install ./python`) and scikit-learn. Prints one Markdown row per
measurement: the median of several runs for each library, pynomaly and scikit-learn
alternating, and the ratio. Both libraries run with their default `n_jobs` (pynomaly:
every core; scikit-learn: one) and with `n_jobs=-1`.

With PyOD importable, a second table times pynomaly's PyOD estimators (`pynomaly.ECOD`,
...) beside PyOD's classes, one thread on both sides (`n_jobs=1` here; PyOD under
threadpoolctl's limit of 1, after a warm-up fit that compiles its numba code), on http,
shuttle, mammography and satellite: `fit(X)` (which scores the training rows on both
sides; the median of --rounds fits) and `decision_function` of 1,000 new rows (after a
warm-up call, the median of five). PyOD's defaults; `random_state=0` for GMM and INNE. `--skip-sklearn` prints only that table, `--rounds N` sets its runs (3).
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
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


def pyod_table(datasets: Path, rounds: int) -> None:
    """pynomaly's PyOD estimators beside PyOD's, one thread each."""
    try:
        import pyod.models.copod, pyod.models.ecod, pyod.models.gmm  # noqa: E401
        import pyod.models.hbos, pyod.models.inne, pyod.models.knn, pyod.models.pca  # noqa: E401
        from threadpoolctl import threadpool_limits
    except ImportError as e:
        print(f"PyOD table skipped: {e} (pip install pyod threadpoolctl)")
        return
    import warnings

    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD
    from pyod.models.gmm import GMM
    from pyod.models.hbos import HBOS
    from pyod.models.inne import INNE
    from pyod.models.knn import KNN
    from pyod.models.pca import PCA

    detectors: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "ECOD": (lambda: pynomaly.ECOD(n_jobs=1), lambda: ECOD()),
        "COPOD": (lambda: pynomaly.COPOD(n_jobs=1), lambda: COPOD()),
        "HBOS": (lambda: pynomaly.HBOS(n_jobs=1), lambda: HBOS()),
        "KNN": (lambda: pynomaly.KNN(n_jobs=1), lambda: KNN()),
        "PCA": (lambda: pynomaly.PCA(n_jobs=1), lambda: PCA()),
        "GMM": (lambda: pynomaly.GMM(random_state=0, n_jobs=1), lambda: GMM(random_state=0)),
        "INNE": (lambda: pynomaly.INNE(random_state=0, n_jobs=1), lambda: INNE(random_state=0)),
    }
    warnings.simplefilter("ignore")
    warm = np.random.RandomState(0).randn(300, 5)
    with threadpool_limits(1):
        for _, theirs in detectors.values():
            theirs().fit(warm)  # type: ignore[attr-defined]
    print(f"\nPyOD {pyod.__version__}, one thread each side")
    print("| detector | data | pynomaly fit | PyOD fit | ratio | pynomaly 1,000 new rows | PyOD 1,000 new rows | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for file in ("http.csv.gz", "shuttle.csv", "mammography.csv", "satellite.csv"):
        x = load(datasets / file)
        new = np.ascontiguousarray(x[np.random.default_rng(0).choice(len(x), 1000, replace=False)] * 1.01)
        for name, (ours_make, theirs_make) in detectors.items():
            ours_fit, theirs_fit = [], []
            for _ in range(rounds):
                start = time.perf_counter()
                ours_det = ours_make().fit(x)  # type: ignore[attr-defined]
                ours_fit.append(time.perf_counter() - start)
                with threadpool_limits(1):
                    start = time.perf_counter()
                    theirs_det = theirs_make().fit(x)  # type: ignore[attr-defined]
                    theirs_fit.append(time.perf_counter() - start)
            # New rows: a warm-up call, then the median of five, each side.
            ours_det.decision_function(new)
            c = timed(lambda: ours_det.decision_function(new), 5)
            with threadpool_limits(1):
                theirs_det.decision_function(new)
                d = timed(lambda: theirs_det.decision_function(new), 5)
            a, b = statistics.median(ours_fit), statistics.median(theirs_fit)
            print(f"| {name} | {file.split('.')[0]} {x.shape[0]:,}×{x.shape[1]} | {a:.3g} s | {b:.3g} s | "
                  f"{b / a:.1f}× | {c * 1e3:.3g} ms | {d * 1e3:.3g} ms | {d / c:.1f}× |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("datasets", nargs="?", default="../shared/datasets", type=Path)
    parser.add_argument("--rounds", type=int, default=3, help="runs per PyOD-table cell")
    parser.add_argument("--skip-sklearn", action="store_true", help="only the PyOD table")
    args = parser.parse_args()
    datasets, rounds = args.datasets, args.rounds
    if args.skip_sklearn:
        pyod_table(datasets, rounds)
        return
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
    pyod_table(datasets, rounds)


if __name__ == "__main__":
    main()
