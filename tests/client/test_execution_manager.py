"""The original specification's Python client (``ExecutionManager``), unchanged, on the real stack.

The class is copied verbatim into ``execution_manager.py``; these tests drive it the way the
specification's usage example does, on ``tests/data/receipt.csv`` (uploaded first with the
``Api`` helper, since the class has no upload).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.client.execution_manager import ExecutionManager
from tests.conftest import TERMINAL, Api, Stack, new_tenant, poll


@pytest.fixture(scope="module")
def api(stack: Stack) -> Api:
    return new_tenant(stack, user="analyst")


@pytest.fixture(scope="module")
def manager(stack: Stack, api: Api) -> ExecutionManager:
    return ExecutionManager(stack.url, api.tenant, api.project, api.token)


@pytest.fixture(scope="module")
def receipt(api: Api) -> dict[str, Any]:
    return api.upload("receipt.csv")


@pytest.fixture(scope="module")
def monthly(manager: ExecutionManager, api: Api, receipt: dict[str, Any]) -> dict[str, Any]:
    """The specification's example job, submitted and awaited with the class itself."""
    pipeline_id = api.pipeline_id("ProcessMining")
    job_params = {
        "datasetId": receipt["datasetId"],
        "analysisType": "comprehensive",
        "timeWindow": {"startDate": "2010-10-01", "endDate": "2012-01-31"},
        "includeAnomalyDetection": True,
        "includeProcessVariants": True,
        "generateInsights": True,
        "outputFormat": "detailed_report",
        "performanceMetrics": ["cycle_time", "waiting_time", "resource_utilization"],
        "qualityChecks": {
            "validateTimestamps": True,
            "checkDuplicates": True,
            "validateActivities": True,
        },
    }
    job = manager.submit_job(
        "Monthly Process Analytics", "ProcessMining", "Pipeline", pipeline_id, job_params, "High"
    )
    assert "jobId" in job, job
    final = manager.wait_for_completion(job["jobId"], poll_interval=1, timeout=150)
    return {"submitted": job, "final": final, "pipelineId": pipeline_id}


def test_get_system_status(manager: ExecutionManager) -> None:
    status = manager.get_system_status()
    assert status["systemStatus"] == "Healthy"
    assert isinstance(status["queueStatistics"]["totalQueuedJobs"], int)
    assert isinstance(status["queueStatistics"]["averageWaitTime"], str)
    assert status["queueStatistics"]["averageWaitTime"].endswith("dakika")
    assert any(n["nodeId"] == "node-1" for n in status["executionNodes"])


def test_submit_wait_and_results_as_in_the_example(
    manager: ExecutionManager, monthly: dict[str, Any], receipt: dict[str, Any], stack: Stack
) -> None:
    submitted, final = monthly["submitted"], monthly["final"]
    assert submitted["status"] == "Queued"
    assert isinstance(submitted["queuePosition"], int) and submitted["queuePosition"] >= 1
    assert submitted["estimatedStartTime"] is not None
    assert submitted["priority"] == "High"
    assert submitted["jobName"] == "Monthly Process Analytics"

    assert final["status"] == "Completed", final
    assert final["progress"]["percentage"] == 100
    assert final["resource"]["resourceId"] == monthly["pipelineId"]
    assert final["parameters"]["datasetId"] == receipt["datasetId"]

    results = manager.get_job_results(submitted["jobId"])
    summary = results["summary"]
    # the example prints f"{recordsProcessed:,}": it must be an integer
    assert isinstance(summary["recordsProcessed"], int)
    assert f"{summary['recordsProcessed']:,}" == f"{receipt['events']:,}"
    assert isinstance(summary["dataQualityScore"], int | float)
    assert 0 <= summary["dataQualityScore"] <= 100
    assert isinstance(summary["processingEfficiency"], int | float)
    assert 0 <= summary["processingEfficiency"] <= 100

    primary = results["results"]["primaryOutput"]
    assert primary["downloadUrl"].startswith(stack.url + "/api/")
    outputs = [primary, *results["results"]["additionalOutputs"]]
    assert len(outputs) >= 2
    for output in outputs:
        assert output["type"] and output["downloadUrl"]
        r = requests.get(output["downloadUrl"], headers=manager.headers, timeout=60)
        assert r.status_code == 200, (output, r.text[:300])
        assert len(r.content) > 0
        # the download is authenticated
        assert requests.get(output["downloadUrl"], timeout=60).status_code == 401


def test_list_jobs_with_filters(manager: ExecutionManager, monthly: dict[str, Any]) -> None:
    job_id = monthly["submitted"]["jobId"]

    def ids(**filters: Any) -> list[str]:
        page = manager.list_jobs(**filters)
        assert "jobs" in page, page
        return [j["jobId"] for j in page["jobs"]]

    now = datetime.now(UTC)
    assert job_id in ids()
    assert job_id in ids(status="Completed", job_type="ProcessMining")
    assert job_id not in ids(status="Failed")
    assert job_id not in ids(job_type="Analysis")
    assert job_id in ids(date_from=now - timedelta(hours=1), date_to=now + timedelta(hours=1))
    assert job_id not in ids(date_from=now + timedelta(hours=1))
    assert job_id not in ids(date_to=now - timedelta(hours=1))
    # a client following the example may well pass naive local datetimes
    local = datetime.now()
    assert job_id in ids(date_from=local - timedelta(days=1), date_to=local + timedelta(days=1))
    page = manager.list_jobs(page=1, page_size=1)
    assert page["page"] == 1 and page["pageSize"] == 1 and len(page["jobs"]) <= 1


def test_cancel_running_job(manager: ExecutionManager, api: Api) -> None:
    job = manager.submit_job(
        "long wait",
        "Analysis",
        "Pipeline",
        api.pipeline_id("Analysis"),
        {"delaySeconds": 120},
        "Critical",
    )
    job_id = job["jobId"]
    try:
        poll(lambda: manager.get_job_status(job_id), lambda j: j["status"] != "Queued", 90)
        assert manager.get_job_status(job_id)["status"] == "Running"
        assert manager.cancel_job(job_id) is True
        final = poll(lambda: manager.get_job_status(job_id), lambda j: j["status"] in TERMINAL, 45)
        assert final["status"] == "Cancelled"
        assert final["error"] == "Kullanıcı iptali"
        # a finished job cannot be cancelled again
        assert manager.cancel_job(job_id) is False
    finally:
        api.delete(f"/execution/job/{job_id}", json={"forceTermination": True})


def test_retry_failed_job(manager: ExecutionManager, api: Api) -> None:
    failed = api.submit(
        {
            "jobName": "retry me",
            "jobType": "Analysis",
            "priority": "Critical",
            "parameters": {"delaySeconds": 120},
            "scheduling": {"timeoutMinutes": 0.05},
        }
    )
    assert api.wait(failed["jobId"], timeout=90)["status"] == "Failed"
    new = manager.retry_job(failed["jobId"])
    try:
        assert "jobId" in new, new
        assert new["jobId"] != failed["jobId"]
        assert new["retryOf"] == failed["jobId"]
        assert new["jobName"] == "retry me"
        assert new["status"] in ("Queued", "Running")
        assert manager.get_job_status(failed["jobId"])["status"] == "Failed"
        assert manager.get_job_status(failed["jobId"])["retriedBy"] == new["jobId"]
        # only failed jobs: retrying a job that is not Failed answers a problem, not a job
        again = manager.retry_job(new["jobId"])
        assert again.get("status") == 409, again
    finally:
        assert manager.cancel_job(new["jobId"]) is True
