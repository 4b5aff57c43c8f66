"""Both clients over every endpoint of a live server, and its errors mapped to exceptions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import Server
from pynomaly.client import AsyncPynomalyClient, PynomalyClient
from pynomaly.exceptions import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    JobFailedError,
    NotFoundError,
    PermissionDeniedError,
)
from pynomaly.models import (
    BatchDetectionRequest,
    DetectionRequest,
    JobAccepted,
    TrainingRequest,
    TrainingResult,
)


def rows(seed: int, n: int = 120, d: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[:3] += 8.0
    return x


@pytest.fixture
def client(server: Server) -> Iterator[PynomalyClient]:
    with PynomalyClient(server.url, server.admin_key, max_retries=0) as c:
        yield c


def test_detect_takes_lists_arrays_frames_and_flat_parameters(client: PynomalyClient) -> None:
    x = rows(1)
    by_request = client.detect_anomalies(
        DetectionRequest(data=x, contamination=0.05, parameters={"random_state": 3})
    )
    flat = client.detect_anomalies(x.tolist(), contamination=0.05, random_state=3)
    assert by_request.scores == flat.scores
    assert by_request.anomaly_count == sum(p == -1 for p in by_request.predictions) == 6
    assert by_request.parameters["random_state"] == 3
    pd = pytest.importorskip("pandas")
    frame = client.detect_anomalies(pd.DataFrame(x), contamination=0.05, random_state=3)
    assert frame.scores == flat.scores
    lof = client.detect_anomalies(x, algorithm="lof", n_neighbors=10)
    assert lof.algorithm == "lof" and lof.parameters["n_neighbors"] == 10
    assert lof.predictions[:3] == [-1, -1, -1]


def test_scores_equal_the_local_estimators(client: PynomalyClient) -> None:
    """A model trained in Python is trained the same on the server from the same rows and
    seed: the service's predictions equal the estimator's."""
    from pynomaly import IsolationForest, LocalOutlierFactor

    x, new = rows(2), rows(3, n=20)
    local = IsolationForest(n_estimators=50, random_state=7).fit(x)
    client.train_model(model_name="py-iforest", data=x, n_estimators=50, random_state=7)
    served = client.predict("py-iforest", new)
    np.testing.assert_array_equal(-np.array(served.scores), local.score_samples(new))
    assert served.threshold == local.threshold_
    lof = LocalOutlierFactor(novelty=True, n_neighbors=15).fit(x)
    client.train_model(model_name="py-lof", data=x, algorithm="lof", n_neighbors=15)
    np.testing.assert_allclose(
        -np.array(client.predict("py-lof", new).scores), lof.score_samples(new), atol=1e-12
    )


def test_an_uploaded_estimator_scores_as_it_does_here(client: PynomalyClient) -> None:
    """A model fitted in Python goes to the service as its own bytes and scores the same."""
    from pynomaly import IsolationForest, LocalOutlierFactor

    x, new = rows(5), rows(6, n=20)
    forest = IsolationForest(n_estimators=30, random_state=11, contamination=0.1).fit(x)
    version = client.upload_model("py-uploaded", forest)
    assert version.version == 1 and version.stage == "production"
    served = client.predict("py-uploaded", new)
    np.testing.assert_array_equal(-np.array(served.scores), forest.score_samples(new))
    assert served.predictions == list(forest.predict(new))
    lof = LocalOutlierFactor(novelty=True, n_neighbors=10).fit(x)
    staged = client.upload_model("py-uploaded", lof.to_bytes(), promote="manual")
    assert staged.version == 2 and staged.stage == "staging"
    np.testing.assert_allclose(
        -np.array(client.predict("py-uploaded", new, version=2).scores), lof.score_samples(new), atol=1e-12
    )


def test_uploaded_pyod_estimators_score_as_they_do_here(client: PynomalyClient) -> None:
    """PyOD's detectors fitted in Python score and label new rows on the service as here
    (the service labels -1/1 where PyOD's convention is 1/0)."""
    from pynomaly import DBSCAN, ECOD, HBOS, INNE, KNN

    x, new = rows(7), rows(8, n=20)
    detectors = [
        ECOD(),
        HBOS(n_bins="auto"),
        KNN(n_neighbors=7, method="mean"),
        INNE(random_state=2),
        DBSCAN(eps=1.5, min_samples=4),
    ]
    for i, est in enumerate(detectors):
        est.fit(x)
        name = f"py-pyod-{i}"
        client.upload_model(name, est)
        served = client.predict(name, new)
        np.testing.assert_allclose(served.scores, est.decision_function(new), rtol=1e-12, atol=0)
        assert served.threshold == est.threshold_
        assert served.predictions == [-1 if v else 1 for v in est.predict(new)]


def test_model_lifecycle(client: PynomalyClient) -> None:
    x = rows(4)
    first = client.train_model(TrainingRequest(model_name="life", data=x, random_state=1))
    assert isinstance(first, TrainingResult)
    assert (first.version, first.stage) == (1, "production")
    second = client.train_model(model_name="life", data=x, random_state=2, promote="manual")
    assert isinstance(second, TrainingResult) and second.stage == "staging"
    assert second.promotion is not None and not second.promotion.promoted
    promoted = client.promote_model("life", 2, reason="looks better")
    assert (promoted.stage, promoted.replaced_version, promoted.previous_stage) == (
        "production",
        1,
        "staging",
    )
    assert promoted.stage_history[-1].note == "looks better"
    rolled = client.rollback_model("life")
    assert (rolled.version, rolled.stage) == (1, "production")
    third = client.train_model(model_name="life", data=x, random_state=3, promote="manual")
    assert isinstance(third, TrainingResult) and third.stage == "staging"
    archived = client.archive_model_version("life", 3, reason="not needed")
    assert (archived.stage, archived.previous_stage) == ("archived", "staging")
    with pytest.raises(ConflictError) as e:
        client.archive_model_version("life", 1)
    assert e.value.status_code == 409 and e.value.request_id
    versions = client.get_model("life")
    assert [v.version for v in versions.versions] == [1, 2, 3]
    assert versions.production_version == 1
    assert client.get_model_version("life", 2).stage_history[0].from_ is None
    predicted = client.predict("life", x[:5], version=2)
    assert (predicted.model_name, predicted.model_version) == ("life", 2)
    names = [m.model_name for m in client.list_models(limit=500).models]
    assert "life" in names
    assert client.delete_model("life")["deleted_versions"] == [1, 2, 3]
    with pytest.raises(NotFoundError) as nf:
        client.get_model("life")
    assert nf.value.code == "not_found"


def test_batch_jobs_results_and_training_from_a_source(
    client: PynomalyClient, tmp_path: Path
) -> None:
    job = client.batch_detect(
        BatchDetectionRequest(data_sources=["day1.csv", "day2.csv"], output_format="csv"),
        random_state=5,
    )
    assert isinstance(job, JobAccepted) and job.status == "queued"
    done = client.wait_for_job(job.job_id, timeout=60)
    assert done.status == "succeeded" and done.result is not None
    assert done.result["n_samples"] == 400 and done.progress.sources_done == 2
    second = client.get_job_result(job.job_id, output=1)
    assert [r.row for r in second] == list(range(200))
    assert {r.prediction for r in second} <= {-1, 1}
    written = client.download_job_result(job.job_id, tmp_path / "out.csv")
    assert written == (tmp_path / "out.csv").stat().st_size > 0
    assert (tmp_path / "out.csv").read_text().startswith("row,prediction,score\n")
    as_json = client.wait_for_job(client.batch_detect("day1.csv").job_id, timeout=60)
    assert len(client.get_job_result(as_json.job_id)) == 200
    # A repeated Idempotency-Key gives the first job back.
    a = client.batch_detect("day1.csv", idempotency_key="nightly-1")
    b = client.batch_detect("day1.csv", idempotency_key="nightly-1")
    assert a.job_id == b.job_id
    trained = client.train_model("day2.csv", "isolation_forest", "from-source")
    assert isinstance(trained, JobAccepted) and trained.model_name == "from-source"
    client.wait_for_job(trained.job_id, timeout=60)
    assert client.get_model("from-source").latest_version == 1
    assert job.job_id in [j.job_id for j in client.list_jobs(limit=500).jobs]
    with pytest.raises(ConflictError):
        client.cancel_job(job.job_id)
    failing = client.batch_detect("day1.csv", model_name="from-source", version=1, label_column="a")
    with pytest.raises(JobFailedError) as failed:
        client.wait_for_job(failing.job_id, timeout=60)
    assert failed.value.job.status == "failed" and failed.value.job.error


def test_drift_algorithms_and_health(client: PynomalyClient) -> None:
    x = rows(5)
    client.train_model(model_name="drifty", data=x)
    client.predict("drifty", x)
    drift = client.get_drift("drifty")
    assert drift["model_name"] == "drifty" and drift["monitoring"] == "active"
    algorithms = client.list_algorithms()
    assert {a["name"] for a in algorithms["algorithms"]} >= {"isolation_forest", "lof"}
    health = client.health()
    assert health.status == "healthy" and set(health.checks) >= {"database", "queue"}


def test_errors_carry_the_servers_code_message_details_and_request_id(
    server: Server, client: PynomalyClient
) -> None:
    with pytest.raises(InvalidInputError) as bad:
        client.detect_anomalies([[1.0, 2.0], [3.0]])
    e = bad.value
    assert (e.status_code, e.code) == (422, "invalid_input")
    assert e.details == {"row": 1, "found": 1, "expected": 2}
    assert "row 1" in e.message and e.request_id
    with pytest.raises(InvalidInputError) as unknown:
        client.detect_anomalies(rows(1), n_trees=3)
    assert unknown.value.details["parameter"] == "n_trees"
    with pytest.raises(NotFoundError):
        client.get_job_status("00000000-0000-0000-0000-000000000000")
    with PynomalyClient(server.url, "pk_" + "0" * 64) as stranger, pytest.raises(
        AuthenticationError
    ):
        stranger.list_models()
    with PynomalyClient(server.url, server.key("read")) as reader:
        assert reader.list_models().total >= 0
        with pytest.raises(PermissionDeniedError) as denied:
            reader.train_model(model_name="nope", data=rows(1))
        assert denied.value.code == "forbidden"


def test_login_with_a_username_and_password(server: Server, client: PynomalyClient) -> None:
    import httpx

    httpx.post(
        f"{server.url}/api/v1/users",
        json={"username": "ana", "password": "correct horse battery", "scopes": ["read"]},
        headers={"Authorization": f"Bearer {server.admin_key}"},
    ).raise_for_status()
    with PynomalyClient(server.url, username="ana", password="correct horse battery") as ana:
        assert ana.list_models().total >= 0
        assert ana._token is not None
        # An expired or revoked token: the client logs in again, once.
        ana._token = "not-a-jwt"
        assert ana.list_models().total >= 0
    with PynomalyClient(server.url, username="ana", password="wrong password!!!") as wrong:
        with pytest.raises(AuthenticationError):
            wrong.list_models()


def test_the_async_client_over_the_same_endpoints(server: Server) -> None:
    async def scenario() -> None:
        async with AsyncPynomalyClient(server.url, server.admin_key, max_retries=0) as c:
            x = rows(6)
            result = await c.detect_anomalies(x, contamination=0.05, random_state=1)
            assert result.anomaly_count == 6
            trained = await c.train_model(model_name="async", data=x, random_state=1)
            assert isinstance(trained, TrainingResult)
            await c.train_model(model_name="async", data=x, random_state=2, promote="manual")
            assert (await c.promote_model("async", 2)).stage == "production"
            assert (await c.rollback_model("async")).version == 1
            await c.train_model(model_name="async", data=x, random_state=3, promote="manual")
            assert (await c.archive_model_version("async", 3)).stage == "archived"
            assert (await c.predict("async", x[:4])).n_samples == 4
            assert (await c.get_model_version("async", 1)).version == 1
            assert (await c.get_model("async")).latest_version == 3
            assert "async" in [m.model_name for m in (await c.list_models(limit=500)).models]
            job = await c.batch_detect(["day1.csv"], output_format="json")
            done = await c.wait_for_job(job.job_id, timeout=60)
            assert (await c.get_job_status(job.job_id)).status == done.status == "succeeded"
            got = await c.get_job_result(job.job_id)
            assert len(got) == 200
            chunks = [ch async for ch in c.iter_job_result_bytes(job.job_id)]
            assert b"".join(chunks).startswith(b"[")
            assert (await c.list_jobs()).total >= 1
            assert (await c.get_drift("async"))["model_name"] == "async"
            assert "algorithms" in await c.list_algorithms()
            assert (await c.health()).status == "healthy"
            with pytest.raises(InvalidInputError):
                await c.predict("async", [[1.0]])
            assert (await c.delete_model("async"))["deleted"] is True

    asyncio.run(scenario())
