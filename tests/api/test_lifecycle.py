"""Job lifecycle on the real stack: submit, run, priorities, cancel, retry, timeout, schedule."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pm4py
import pytest

from tests.conftest import DATA, Api


def _pm_job(dataset: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {
        "jobName": "Road traffic discovery",
        "jobType": "ProcessMining",
        "priority": "Normal",
        "parameters": {"datasetId": dataset["datasetId"]},
    }
    body.update(extra)
    return body


def _wait_job(
    seconds: float, name: str = "wait", priority: str = "Normal", **extra: Any
) -> dict[str, Any]:
    return {
        "jobName": name,
        "jobType": "Analysis",
        "priority": priority,
        "parameters": {"delaySeconds": seconds},
        **extra,
    }


def test_process_mining_job_matches_pm4py(tenant_api: Api, road_dataset: dict[str, Any]) -> None:
    submitted = tenant_api.submit(_pm_job(road_dataset))
    assert submitted["status"] == "Queued"
    assert submitted["queuePosition"] >= 1
    assert submitted["submittedBy"] == "alice"
    assert submitted["estimatedDurationSeconds"] > 0

    job = tenant_api.wait(submitted["jobId"])
    assert job["status"] == "Completed", job
    assert job["progress"]["percentage"] == 100
    assert job["execution"]["executionNode"] == "node-1"
    assert job["metrics"]["recordsProcessed"] == 390
    assert job["execution"]["memoryUsageBytes"] > 0

    results = tenant_api.get(f"/execution/job/{job['jobId']}/results").json()
    assert results["success"] is True
    outputs = [results["results"]["primaryOutput"], *results["results"]["additionalOutputs"]]
    by_type = {o["type"]: o for o in outputs}
    assert {"ProcessMiningReport", "ProcessMiningResult", "ProcessMap", "ProcessModel"} <= set(
        by_type
    )
    data = tenant_api.get(by_type["ProcessMiningResult"]["downloadUrl"])
    assert data.status_code == 200
    result = json.loads(data.content)

    log = pm4py.read_xes(str(DATA / "roadtraffic100traces.xes"))
    dfg, start, end = pm4py.discover_dfg(log)
    assert {(e["source"], e["target"]): e["frequency"] for e in result["dfg"]} == dict(dfg)
    assert result["startActivities"] == dict(start)
    assert result["endActivities"] == dict(end)
    variants = pm4py.get_variants(log)
    assert {tuple(v["activities"]): v["count"] for v in result["variants"]} == dict(variants)
    net, im, fm = pm4py.discover_petri_net_inductive(log, noise_threshold=0.2)
    fitness = pm4py.fitness_token_based_replay(log, net, im, fm)
    assert result["fitness"]["logFitness"] == fitness["log_fitness"]
    assert result["precision"] == pm4py.precision_token_based_replay(log, net, im, fm)

    # the run is readable in Prefect: its progress bar and the list of what it produced
    prefect = f"http://127.0.0.1:{tenant_api.stack.env['PMJOBS_PREFECT_PORT']}/api"
    artifacts = httpx.post(
        f"{prefect}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [job["jobId"]]}}},
        timeout=30,
    ).json()
    kinds = {a["type"]: a for a in artifacts}
    assert kinds["progress"]["data"] == 100
    assert "result.json" in kinds["markdown"]["data"]

    svg = tenant_api.get(by_type["ProcessMap"]["downloadUrl"])
    assert svg.status_code == 200 and b"<svg" in svg.content
    report = tenant_api.get(by_type["ProcessMiningReport"]["downloadUrl"])
    assert report.headers["content-type"].startswith("text/html")


def test_results_filters_and_download(tenant_api: Api, road_dataset: dict[str, Any]) -> None:
    job = tenant_api.wait(tenant_api.submit(_pm_job(road_dataset))["jobId"])
    base = f"/execution/job/{job['jobId']}/results"
    models = tenant_api.get(base, params={"outputType": "models"}).json()
    listed = [models["results"]["primaryOutput"], *models["results"]["additionalOutputs"]]
    assert {o["name"] for o in listed} == {"model.pnml", "model.bpmn"}
    assert {o["outputType"] for o in listed} == {"models"}
    bare = tenant_api.get(base, params={"includeArtifacts": "false"}).json()
    assert bare["results"] == {"primaryOutput": None, "additionalOutputs": []}
    assert (
        "stageSeconds"
        in tenant_api.get(base, params={"format": "detailed"}).json()["executionMetrics"]
    )
    zipped = tenant_api.get(base, params={"format": "download"})
    assert zipped.status_code == 200 and zipped.content[:2] == b"PK"
    bad = tenant_api.get(base, params={"outputType": "pictures"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


def test_priority_order_on_a_busy_capacity_one_node(tenant_api: Api) -> None:
    blocker = tenant_api.submit(_wait_job(6, "blocker"))
    tenant_api.wait(blocker["jobId"], {"Running"}, timeout=60)
    ids = {}
    for priority in ("Low", "Normal", "Critical", "High"):
        ids[priority] = tenant_api.submit(_wait_job(0.5, f"p-{priority}", priority))["jobId"]
    queue = tenant_api.get("/execution/queue").json()
    listed = [j["jobId"] for j in queue["queuedJobs"] if j["jobId"] in ids.values()]
    assert listed == [ids[p] for p in ("Critical", "High", "Normal", "Low")]
    assert queue["summary"]["criticalPriorityJobs"] >= 1
    positions = [
        tenant_api.job(ids[p])["queuePosition"] for p in ("Critical", "High", "Normal", "Low")
    ]
    assert positions == sorted(positions)
    started = {}
    for priority, job_id in ids.items():
        job = tenant_api.wait(job_id, timeout=120)
        assert job["status"] == "Completed", job
        started[priority] = job["execution"]["startTime"]
    assert sorted(started, key=started.get) == ["Critical", "High", "Normal", "Low"]


def test_cancel_queued_job_at_once(tenant_api: Api) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    job = tenant_api.submit(
        _wait_job(1, scheduling={"executeImmediately": False, "scheduledTime": later})
    )
    r = tenant_api.delete(f"/execution/job/{job['jobId']}", json={"reason": "not needed"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "Cancelled"
    again = tenant_api.delete(f"/execution/job/{job['jobId']}")
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    results = tenant_api.get(f"/execution/job/{job['jobId']}/results")
    assert results.status_code == 409


def test_cancel_running_job_gracefully_keeps_partial_results(tenant_api: Api) -> None:
    job = tenant_api.submit(_wait_job(60, "long"))
    tenant_api.wait(job["jobId"], {"Running"}, timeout=60)
    r = tenant_api.delete(
        f"/execution/job/{job['jobId']}",
        json={"reason": "user stop", "forceTermination": False, "preservePartialResults": True},
    )
    assert r.status_code == 200, r.text
    final = tenant_api.wait(job["jobId"], timeout=30)
    assert final["status"] == "Cancelled"
    assert final["error"] == "user stop"


def test_cancel_running_job_forced(tenant_api: Api) -> None:
    job = tenant_api.submit(_wait_job(120, "stuck"))
    tenant_api.wait(job["jobId"], {"Running"}, timeout=60)
    t0 = time.monotonic()
    r = tenant_api.delete(f"/execution/job/{job['jobId']}", json={"forceTermination": True})
    assert r.status_code == 200, r.text
    final = tenant_api.wait(job["jobId"], timeout=60)
    assert final["status"] == "Cancelled"
    assert time.monotonic() - t0 < 60


def test_timeout_fails_job_as_timed_out(tenant_api: Api) -> None:
    job = tenant_api.submit(_wait_job(120, "too slow", scheduling={"timeoutMinutes": 0.05}))
    final = tenant_api.wait(job["jobId"], timeout=90)
    assert final["status"] == "Failed"
    assert final["state"] == "TimedOut"
    assert "timeoutMinutes" in final["error"]


def test_retry_failed_job_with_changed_parameters(
    tenant_api: Api, road_dataset: dict[str, Any]
) -> None:
    failed = tenant_api.submit(_wait_job(120, "retry me", scheduling={"timeoutMinutes": 0.05}))
    assert tenant_api.wait(failed["jobId"])["status"] == "Failed"
    r = tenant_api.post(
        f"/execution/job/{failed['jobId']}/retry",
        json={
            "retryReason": "shorter wait",
            "modifyParameters": True,
            "updatedParameters": {"delaySeconds": 0.2, "timeoutMinutes": 5},
            "priority": "High",
            "immediateExecution": True,
        },
    )
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["jobId"] != failed["jobId"]
    assert new["retryOf"] == failed["jobId"]
    assert new["priority"] == "High"
    assert new["parameters"]["delaySeconds"] == 0.2
    assert tenant_api.wait(new["jobId"])["status"] == "Completed"
    original = tenant_api.job(failed["jobId"])
    assert original["retriedBy"] == new["jobId"]
    assert original["status"] == "Failed"
    # only failed jobs can be retried
    assert tenant_api.post(f"/execution/job/{new['jobId']}/retry", json={}).status_code == 409


def test_a_job_is_retried_once_whatever_idempotency_key_comes_next(tenant_api: Api) -> None:
    failed = tenant_api.submit(_wait_job(120, "retry once", scheduling={"timeoutMinutes": 0.05}))
    assert tenant_api.wait(failed["jobId"])["status"] == "Failed"
    url = f"/execution/job/{failed['jobId']}/retry"
    first = tenant_api.post(url, json={}, headers={"Idempotency-Key": "retry-k1"})
    assert first.status_code == 200, first.text
    replay = tenant_api.post(url, json={}, headers={"Idempotency-Key": "retry-k1"})
    assert replay.status_code == 200 and replay.json()["jobId"] == first.json()["jobId"]
    for headers in ({"Idempotency-Key": "retry-k2"}, {}):
        again = tenant_api.post(url, json={}, headers=headers)
        assert again.status_code == 409, again.text
        assert again.json()["retriedBy"] == first.json()["jobId"]


def test_scheduled_job_waits_for_its_time(tenant_api: Api) -> None:
    at = datetime.now(UTC) + timedelta(seconds=8)
    job = tenant_api.submit(
        _wait_job(
            0.1,
            "scheduled",
            scheduling={"executeImmediately": False, "scheduledTime": at.isoformat()},
        )
    )
    assert tenant_api.job(job["jobId"])["status"] == "Queued"
    final = tenant_api.wait(job["jobId"], timeout=90)
    assert final["status"] == "Completed"
    started = datetime.fromisoformat(final["execution"]["startTime"])
    assert started >= at - timedelta(seconds=1)


def test_idempotent_submit_returns_the_same_job(tenant_api: Api) -> None:
    key = str(uuid.uuid4())
    first = tenant_api.post("/execution/job", json=_wait_job(0.1), headers={"Idempotency-Key": key})
    second = tenant_api.post(
        "/execution/job", json=_wait_job(0.1), headers={"Idempotency-Key": key}
    )
    assert first.status_code == 201 and second.status_code in (200, 201)
    assert first.json()["jobId"] == second.json()["jobId"]
    tenant_api.wait(first.json()["jobId"])


def test_change_priority_of_queued_job(tenant_api: Api) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    job = tenant_api.submit(
        _wait_job(1, scheduling={"executeImmediately": False, "scheduledTime": later})
    )
    r = tenant_api.patch(f"/execution/job/{job['jobId']}", json={"priority": "Critical"})
    assert r.status_code == 200, r.text
    assert r.json()["priority"] == "Critical"
    assert r.json()["jobId"] == job["jobId"]
    listed = tenant_api.get("/execution/jobs", params={"priority": "Critical"}).json()["jobs"]
    assert job["jobId"] in [j["jobId"] for j in listed]
    tenant_api.delete(f"/execution/job/{job['jobId']}")
    assert (
        tenant_api.patch(f"/execution/job/{job['jobId']}", json={"priority": "Low"}).status_code
        == 409
    )


def test_bad_input_job_ends_failed_with_reason(tenant_api: Api, tmp_path: Any) -> None:
    csv = tmp_path / "tiny.csv"
    csv.write_text("case,activity,ts\n1,a,2024-01-01T00:00:00Z\n1,b,2024-01-01T01:00:00Z\n")
    with csv.open("rb") as fh:
        ds = tenant_api.post(
            "/datasets",
            files={"file": ("tiny.csv", fh)},
            data={"caseColumn": "case", "activityColumn": "activity", "timestampColumn": "ts"},
        ).json()
    # remove the canonical file behind the service's back: the job must fail, not hang
    events = next(tenant_api.stack.home.glob(f"datasets/*/*/{ds['datasetId']}/events.parquet"))
    events.write_bytes(b"not parquet")
    job = tenant_api.submit(_pm_job(ds))
    final = tenant_api.wait(job["jobId"])
    assert final["status"] == "Failed"
    assert ds["datasetId"] in final["error"]


@pytest.mark.parametrize("job_type", ["DataEnrichment", "Notebook"])
def test_other_job_types_complete(
    tenant_api: Api, road_dataset: dict[str, Any], job_type: str
) -> None:
    job = tenant_api.submit(
        {
            "jobName": job_type,
            "jobType": job_type,
            "parameters": {"datasetId": road_dataset["datasetId"]},
        }
    )
    final = tenant_api.wait(job["jobId"])
    assert final["status"] == "Completed", final
    results = tenant_api.get(f"/execution/job/{job['jobId']}/results").json()
    assert results["results"]["primaryOutput"]["downloadUrl"]
