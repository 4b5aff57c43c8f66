"""The ML-engineer guide's quick start, verbatim, against a live server.

The two snippets below are copied from the guide unchanged; the only edits are the
server's address and key, substituted for `http://localhost:8000` and `your-api-key`
(the installation check reads them from `PYNOMALY_URL`). Each runs in its own Python
process, as a user would run it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx

from conftest import Server

VERIFY_INSTALLATION = """
import pynomaly
from pynomaly.server import HealthCheck
print(f'Pynomaly version: {pynomaly.__version__}')
print('Production components:', HealthCheck().check_dependencies())
"""

QUICK_API_INTEGRATION = '''
import asyncio
from pynomaly.client import AsyncPynomalyClient
from pynomaly.models import DetectionRequest, BatchDetectionRequest

async def quick_integration_demo():
    """Demonstrate basic API integration."""
    
    # Initialize client
    client = AsyncPynomalyClient(
        base_url="http://localhost:8000",
        api_key="your-api-key",
        timeout=30.0
    )
    
    # Single detection
    request = DetectionRequest(
        data=[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]],
        algorithm="isolation_forest",
        contamination=0.1
    )
    
    result = await client.detect_anomalies(request)
    print(f"Anomalies detected: {sum(1 for x in result.predictions if x == -1)}")
    
    # Batch processing
    batch_request = BatchDetectionRequest(
        data_sources=["s3://bucket/data1.csv", "s3://bucket/data2.csv"],
        algorithm="isolation_forest",
        output_format="json"
    )
    
    batch_result = await client.batch_detect(batch_request)
    print(f"Batch job ID: {batch_result.job_id}")
    
    await client.close()

# Run the demo
asyncio.run(quick_integration_demo())
'''


def run(code: str, server: Server) -> str:
    env = {**os.environ, "PYNOMALY_URL": server.url}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_installation_check_prints_the_version_and_the_services_dependencies(
    server: Server,
) -> None:
    out = run(VERIFY_INSTALLATION, server)
    import pynomaly

    assert f"Pynomaly version: {pynomaly.__version__}\n" in out
    assert "'status': 'healthy'" in out
    for check in ("database", "queue", "artifact_store", "workers"):
        assert f"'{check}'" in out


def test_quick_api_integration_runs_as_written(server: Server) -> None:
    code = QUICK_API_INTEGRATION.replace("http://localhost:8000", server.url).replace(
        "your-api-key", server.admin_key
    )
    out = run(code, server)
    # Two rows: every tree splits them into two leaves at depth 1, so their scores are
    # equal, the threshold (their 90th percentile) is that score, and neither exceeds it.
    assert "Anomalies detected: 0\n" in out
    job_id = re.search(r"Batch job ID: (\S+)", out)
    assert job_id is not None, out
    job = httpx.get(
        f"{server.url}/api/v1/jobs/{job_id.group(1)}",
        headers={"Authorization": f"Bearer {server.admin_key}"},
    ).json()
    assert job["kind"] == "batch"
    if server.s3:
        # With an S3-compatible server holding the guide's files, the job scores both.
        from pynomaly.client import PynomalyClient

        with PynomalyClient(server.url, server.admin_key) as client:
            done = client.wait_for_job(job["job_id"], timeout=60)
        assert done.result is not None
        assert [o["source"] for o in done.result["outputs"]] == [
            "s3://bucket/data1.csv",
            "s3://bucket/data2.csv",
        ]
        assert done.result["n_samples"] == 400
