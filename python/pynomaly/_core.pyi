"""Type stubs of the Rust extension (crates/python)."""

import numpy as np
import numpy.typing as npt

__version__: str
MODEL_FORMAT_VERSION: int

class Model:
    """A fitted detect-core model; scores are higher = more anomalous."""

    @staticmethod
    def fit(
        algorithm: str,
        params: str,
        contamination: str,
        x: npt.NDArray[np.float64],
        n_threads: int | None = None,
        training_scores: bool = True,
    ) -> tuple[Model, npt.NDArray[np.float64] | None, list[str]]: ...
    def score(
        self, x: npt.NDArray[np.float64], n_threads: int | None = None
    ) -> npt.NDArray[np.float64]: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> Model: ...
    @property
    def threshold(self) -> float: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def n_features(self) -> int: ...
    @property
    def n_samples(self) -> int: ...
    @property
    def config_json(self) -> str: ...

# Every algorithm's parameters, defaults and ranges (the API's GET /api/v1/algorithms
# body), as JSON text.
def algorithms() -> str: ...

# scikit-learn's DBSCAN cluster labels (-1 noise) and core-row mask of x.
def dbscan_clusters(
    params: str, x: npt.NDArray[np.float64], n_threads: int | None = None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]: ...
