"""Calls a live pynomaly server through a client generated from its OpenAPI document.

`tests/openapi_client/run.sh` generates the package `pynomaly_client` (openapi-python-client)
from the live `/api/v1/openapi.json`, puts it on the path, type-checks it with this file
(mypy --strict), then runs:

    python flow.py BASE_URL API_KEY SOURCE_NAME SOURCE_PATH

SOURCE_NAME is a CSV data source in the server's sources directory (header `a,b,c`, every
row near (1, 2, 3) except the last, far away); SOURCE_PATH is the same file on this machine,
read to know how many rows the batch job must score. Every request and answer goes through
the generated models and functions: detect, train (inline data), predict, a predict the
server refuses (its typed `Error`), and a batch job with the model (submit, poll the job until
it ends, read its result). Exits non-zero naming the step whose answer was wrong.
"""

from __future__ import annotations

import csv
import sys
import time
from typing import TypeVar

from pynomaly_client import AuthenticatedClient
from pynomaly_client.api.detection import detect
from pynomaly_client.api.jobs import get_job, get_job_result, submit_batch
from pynomaly_client.api.models import predict, train
from pynomaly_client.models import (
    BatchOnDataSourceScoreWithAModel,
    BatchOnDataSourceScoreWithAModelOutputFormat,
    DetectIsolationForestParametersFlat,
    Detection,
    Error,
    Job,
    JobAccepted,
    JobStatus,
    PredictRequest,
    ResultRow,
    Stage,
    TrainedVersion,
    TrainOnDataIsolationForestParametersFlat,
)

# Five rows near (1, 2, 3) and one far away: the last is the outlier.
ROWS: list[list[float]] = [
    [1.0, 2.0, 3.0],
    [1.1, 2.1, 3.1],
    [0.9, 2.0, 3.0],
    [1.0, 2.2, 2.9],
    [1.2, 1.9, 3.1],
    [9.0, 9.0, -9.0],
]
# One row in six is an anomaly.
CONTAMINATION = 1 / 6
MODEL = "openapi-client-flow"

T = TypeVar("T")


class FlowError(Exception):
    """An answer that is not what the server should have said."""


def expect(step: str, ok: bool, what: str) -> None:
    if not ok:
        raise FlowError(f"{step}: {what}")


def answer(step: str, got: object, kind: type[T]) -> T:
    """The typed body of a successful answer, or a FlowError naming the step."""
    if isinstance(got, Error):
        raise FlowError(
            f"{step}: the server answered an error: {got.error.code}: {got.error.message}"
        )
    if not isinstance(got, kind):
        raise FlowError(f"{step}: expected a {kind.__name__}, got {got!r}")
    return got


def one_outlier_last(step: str, d: Detection, rows: int) -> None:
    expect(step, d.n_samples == rows, f"n_samples {d.n_samples}, sent {rows} rows")
    expect(step, d.n_features == 3, f"n_features {d.n_features}, sent 3 columns")
    expect(
        step,
        d.predictions == [1] * (rows - 1) + [-1],
        f"predictions {d.predictions}: only the last row is an outlier",
    )
    expect(step, d.anomaly_count == 1, f"anomaly_count {d.anomaly_count}")
    expect(
        step,
        max(range(rows), key=lambda i: d.scores[i]) == rows - 1,
        f"scores {d.scores}: the outlier should score highest",
    )


def main(base_url: str, key: str, source_name: str, source_path: str) -> None:
    with open(source_path, newline="") as f:
        source_rows = len(list(csv.reader(f))) - 1  # less the header
    client = AuthenticatedClient(base_url=base_url, token=key, raise_on_unexpected_status=True)
    with client:
        # detect: fit on the rows and label them.
        d = answer(
            "detect",
            detect.sync(
                client=client,
                body=DetectIsolationForestParametersFlat(
                    data=ROWS, contamination=CONTAMINATION, random_state=1
                ),
            ),
            Detection,
        )
        one_outlier_last("detect", d, len(ROWS))
        expect("detect", d.algorithm == "isolation_forest", f"algorithm {d.algorithm}")
        print(f"detect: predictions {d.predictions}, threshold {d.threshold:.3f}")

        # train: a version from inline rows (201, the version itself).
        v = answer(
            "train",
            train.sync(
                client=client,
                body=TrainOnDataIsolationForestParametersFlat(
                    model_name=MODEL, data=ROWS, contamination=CONTAMINATION, random_state=1
                ),
            ),
            TrainedVersion,
        )
        expect("train", v.model_name == MODEL, f"model_name {v.model_name}")
        expect("train", v.version == 1, f"version {v.version}: the name is new")
        expect("train", v.stage == Stage.PRODUCTION, f"stage {v.stage}: the first version")
        expect("train", v.n_samples == len(ROWS), f"n_samples {v.n_samples}")
        expect("train", v.anomaly_count == 1, f"anomaly_count {v.anomaly_count}")
        print(f"train: {v.model_name} version {v.version}, {v.stage}")

        # predict: score new rows with the production version.
        p = answer(
            "predict",
            predict.sync(
                MODEL, client=client, body=PredictRequest(data=[[1.05, 2.05, 3.0], [9.0, 9.0, -9.0]])
            ),
            Detection,
        )
        expect("predict", p.predictions == [1, -1], f"predictions {p.predictions}")
        expect("predict", p.model_name == MODEL, f"model_name {p.model_name}")
        expect("predict", p.model_version == 1, f"model_version {p.model_version}")
        print(f"predict: predictions {p.predictions} with version {p.model_version}")

        # predict refused: rows of 2 features for a model of 3, a 422 the client parses.
        refused = predict.sync_detailed(MODEL, client=client, body=PredictRequest(data=[[1.0, 2.0]]))
        expect("predict (2 features)", refused.status_code == 422, f"status {refused.status_code}")
        err = refused.parsed
        expect("predict (2 features)", isinstance(err, Error), f"not the Error shape: {err!r}")
        assert isinstance(err, Error)
        print(f"predict (2 features): 422 {err.error.code}: {err.error.message}")

        # batch: score the data source with the model, in a job.
        accepted = answer(
            "batch",
            submit_batch.sync(
                client=client,
                body=BatchOnDataSourceScoreWithAModel(
                    data_source=source_name,
                    model_name=MODEL,
                    output_format=BatchOnDataSourceScoreWithAModelOutputFormat.JSON,
                ),
            ),
            JobAccepted,
        )
        print(f"batch: job {accepted.job_id} {accepted.status}")
        deadline = time.monotonic() + 60
        while True:
            job = answer("get_job", get_job.sync(accepted.job_id, client=client), Job)
            if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
                break
            expect("get_job", time.monotonic() < deadline, f"still {job.status} after 60 s")
            time.sleep(0.1)
        expect("get_job", job.status == JobStatus.SUCCEEDED, f"{job.status}: {job.error}")
        expect("get_job", job.progress.rows_processed == source_rows,
               f"rows_processed {job.progress.rows_processed}, the source has {source_rows}")
        expect("get_job", isinstance(job.result_url, str), "no result_url on a succeeded batch")
        print(f"get_job: {job.status}, {job.progress.rows_processed} rows, result at {job.result_url}")

        result = get_job_result.sync(accepted.job_id, client=client)
        if isinstance(result, Error) or result is None:
            raise FlowError(f"get_job_result: {result!r}")
        rows: list[ResultRow] = result
        expect("get_job_result", len(rows) == source_rows, f"{len(rows)} rows, the source has {source_rows}")
        expect("get_job_result", [r.row for r in rows] == list(range(source_rows)),
               f"row numbers {[r.row for r in rows]}")
        expect("get_job_result", [r.prediction for r in rows] == [1] * (source_rows - 1) + [-1],
               f"predictions {[r.prediction for r in rows]}: only the last row is an outlier")
        print(f"get_job_result: {len(rows)} rows, outliers at {[r.row for r in rows if r.prediction == -1]}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit("usage: flow.py BASE_URL API_KEY SOURCE_NAME SOURCE_PATH")
    try:
        main(*sys.argv[1:])
    except FlowError as e:
        sys.exit(f"flow.py: FAILED: {e}")
    print("flow.py: detect, train, predict and batch answered as expected")
