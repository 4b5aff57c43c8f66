"""schemathesis hooks for pynomaly's fuzz run (tests/fuzz/run_schemathesis.sh).

The model upload's body (`application/octet-stream`, a pynomaly model file) is drawn from
the model files the run's server wrote while the script seeded it (PYNOMALY_FUZZ_MODELS,
a directory searched for `*.pnmy`) as well as from arbitrary bytes: random bytes alone are
never a model, so the fuzzer would not get past the file check into registering one.
"""

import os
import pathlib

import schemathesis
from hypothesis import strategies as st

_root = pathlib.Path(os.environ["PYNOMALY_FUZZ_MODELS"])
_models = [path.read_bytes() for path in sorted(_root.rglob("*.pnmy"))]
if not _models:
    raise RuntimeError(f"no model file (*.pnmy) under {_root}: seed a model first")

schemathesis.openapi.media_type(
    "application/octet-stream", st.one_of(st.sampled_from(_models), st.binary(max_size=4096))
)
