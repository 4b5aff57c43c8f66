"""The benchmark's data, shared by the FastAPI peer and bench/service_bench.sh.

Both servers are trained on exactly the same matrix, so a predict on either side scores
with a model of the same size and shape:

    X = numpy.random.RandomState(0).standard_normal((10_000, 10))
    IsolationForest(n_estimators=100, random_state=0, contamination="auto")

Run as a script to write the wrk request bodies (JSON) into a directory:

    python3 bench/fastapi_peer/bench_data.py /tmp/pynomaly-bench/bodies
"""
import json
import os
import sys

import numpy as np

N_ROWS = 10_000
N_FEATURES = 10
SEED = 0
N_ESTIMATORS = 100
MODEL_NAME = "bench"


def training_matrix():
    """The seeded 10,000 x 10 training matrix (standard normal, RandomState(0))."""
    return np.random.RandomState(SEED).standard_normal((N_ROWS, N_FEATURES))


def query_rows(n):
    """n rows to score: a different seed from the training data, same distribution."""
    return np.random.RandomState(SEED + 1).standard_normal((n, N_FEATURES))


def _rows(a):
    # repr-exact floats (json.dumps uses repr), so both servers parse the same numbers
    return a.tolist()


def write_bodies(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    train = {
        "model_name": MODEL_NAME,
        "algorithm": "isolation_forest",
        "contamination": "auto",
        "n_estimators": N_ESTIMATORS,
        "random_state": SEED,
        "data": _rows(training_matrix()),
    }
    bodies = {
        "train.json": train,
        "predict_1.json": {"data": _rows(query_rows(1))},
        "predict_1000.json": {"data": _rows(query_rows(1000))},
        "detect_10000.json": {
            "algorithm": "isolation_forest",
            "contamination": "auto",
            "n_estimators": N_ESTIMATORS,
            "random_state": SEED,
            "data": _rows(training_matrix()),
        },
    }
    for name, body in bodies.items():
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(body, f, separators=(",", ":"))
    return sorted(bodies)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench_data.py OUT_DIR")
    for name in write_bodies(sys.argv[1]):
        print(os.path.join(sys.argv[1], name))
