"""Drives a running pynomaly server with the ML-engineer guide's PynomalyAPIClient, unchanged.

The flow a user of the ML engineer guide runs: health, train a model from a data source,
wait for its job, predict with it, detect on inline rows, submit a batch over a data
source, wait for that job, and read its status. Every call goes through the guide's client
(`pynomaly_client.py`, a verbatim copy); this script only orchestrates and checks.

Environment:
  PYNOMALY_URL      base URL of the server (e.g. http://127.0.0.1:8000)
  PYNOMALY_API_KEY  an API key with read and write scopes
  PYNOMALY_SOURCE   a CSV data source, relative to the server's sources directory

Exit status 0 when every step behaved as the contract says; a traceback otherwise.
"""

import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pynomaly_client import PynomalyAPIClient  # noqa: E402


async def wait_for_job(client, job_id, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        job = await client.get_job_status(job_id)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout_s}s")
        await asyncio.sleep(0.1)


async def main():
    base_url = os.environ["PYNOMALY_URL"]
    api_key = os.environ["PYNOMALY_API_KEY"]
    source = os.environ.get("PYNOMALY_SOURCE", "seed.csv")

    async with PynomalyAPIClient(base_url=base_url, api_key=api_key, timeout=30.0) as client:
        health = await client.health_check()
        assert health["status"] in ("healthy", "degraded"), health
        for check in ("database", "queue", "artifact_store", "workers"):
            assert check in health["checks"], health

        trained = await client.train_model(
            training_data=source,
            algorithm="isolation_forest",
            model_name="seed-sensors",
            contamination=0.05,
            n_estimators=100,
            random_state=42,
        )
        assert trained["status"] == "queued", trained
        assert trained["model_name"] == "seed-sensors", trained
        job = await wait_for_job(client, trained["job_id"])
        assert job["status"] == "succeeded", job

        prediction = await client.predict_with_model(
            "seed-sensors", [[0.5, 0.5, 0.5], [40.0, -40.0, 40.0]]
        )
        assert prediction["predictions"] == [1, -1], prediction
        assert len(prediction["scores"]) == 2, prediction
        assert prediction["scores"][1] > prediction["threshold"] >= prediction["scores"][0]
        assert prediction["model_name"] == "seed-sensors", prediction
        assert prediction["model_version"] == 1, prediction

        detection = await client.detect_anomalies(
            [[1.0, 2.0, 3.0], [1.1, 2.1, 3.1], [0.9, 1.9, 2.9], [1.0, 2.0, 3.1], [9.0, -9.0, 30.0]],
            n_estimators=50,
            random_state=7,
        )
        assert detection["algorithm"] == "isolation_forest", detection
        assert detection["contamination"] == 0.1, detection
        assert detection["parameters"]["n_estimators"] == 50, detection
        assert len(detection["predictions"]) == 5, detection
        assert detection["predictions"][4] == -1, detection

        batch = await client.batch_detect(source, output_format="json", contamination=0.05)
        assert batch["status"] == "queued", batch
        job = await wait_for_job(client, batch["job_id"])
        assert job["status"] == "succeeded", job
        assert job["kind"] == "batch", job
        assert job["result"]["n_samples"] == job["progress"]["rows_processed"] > 0, job
        assert job["result"]["outputs"][0]["source"] == source, job

        scored = await client.batch_detect(
            source, algorithm="isolation_forest", output_format="csv", model_name="seed-sensors"
        )
        job = await wait_for_job(client, scored["job_id"])
        assert job["status"] == "succeeded", job

        # The client raises on 4xx as the guide wrote it; the contract's error body is there.
        try:
            await client.predict_with_model("no-such-model", [[1.0, 2.0, 3.0]])
        except Exception as e:  # httpx.HTTPStatusError
            response = e.response
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "not_found", response.text
        else:
            raise AssertionError("predict on an unknown model should fail")

    print("seed client flow: ok (health, train job, predict, detect, batch json, batch csv, 404)")


if __name__ == "__main__":
    asyncio.run(main())
