"""Listing, filters, summary, documented fields, pipelines, datasets, queue view, system status.

One isolated tenant holds a known set of jobs in every status the stack can hold cheaply:
a completed job, a running "blocker" that keeps the capacity-1 node busy (so the jobs submitted
after it stay Queued), queued jobs of two users, types and priorities, a cancelled job and a job
scheduled two hours ahead. Everything is cancelled at the end.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pandas as pd
import pm4py
import pytest

from tests.conftest import DATA, TERMINAL, Api, Stack, new_tenant, poll

# documented fields (the original's JSON)
LIST_ITEM_FIELDS = {
    "jobId",
    "jobType",
    "jobName",
    "status",
    "priority",
    "progress",
    "startTime",
    "estimatedCompletion",
    "submittedBy",
    "resourceName",
    "endTime",
    "duration",
}
JOB_FIELDS = {
    "jobId",
    "projectId",
    "jobType",
    "jobName",
    "jobDescription",
    "status",
    "priority",
    "progress",
    "resource",
    "execution",
    "metrics",
    "dateCreated",
    "lastUpdated",
}
PROGRESS_FIELDS = {"percentage", "currentStage", "estimatedCompletion", "elapsedTime"}
RESOURCE_FIELDS = {"resourceType", "resourceId", "resourceName"}
EXECUTION_FIELDS = {
    "startTime",
    "submittedBy",
    "executionNode",
    "memoryUsage",
    "cpuUsage",
    "diskUsage",
}
METRICS_FIELDS = {
    "recordsProcessed",
    "totalRecords",
    "errorCount",
    "warningCount",
    "averageProcessingRate",
}
SUMMARY_FIELDS = {"totalJobs", "runningJobs", "queuedJobs", "completedJobs", "failedJobs"}
NODE_FIELDS = {"nodeId", "status", "cpuUsage", "memoryUsage", "activeJobs", "jobCapacity"}
QUEUE_STAT_FIELDS = {
    "totalQueuedJobs",
    "highPriorityJobs",
    "normalPriorityJobs",
    "lowPriorityJobs",
    "averageWaitTime",
    "estimatedProcessingTime",
}
PERF_FIELDS = {"jobsCompletedToday", "averageJobDuration", "successRate", "throughputPerHour"}
UTIL_FIELDS = {
    "totalCpuCapacity",
    "usedCpuCapacity",
    "totalMemoryCapacity",
    "usedMemoryCapacity",
    "diskSpaceAvailable",
}
QUEUE_VIEW_SUMMARY = {
    "totalQueuedJobs",
    "criticalPriorityJobs",
    "highPriorityJobs",
    "normalPriorityJobs",
    "lowPriorityJobs",
    "averageWaitTime",
    "estimatedProcessingTime",
}
CAPACITY_FIELDS = {
    "activeWorkers",
    "totalWorkers",
    "currentLoad",
    "maxConcurrentJobs",
    "currentlyRunning",
}
QUEUED_JOB_FIELDS = {
    "jobId",
    "jobName",
    "jobType",
    "priority",
    "queuePosition",
    "estimatedStartTime",
    "estimatedDuration",
    "submittedBy",
    "dateSubmitted",
}


def _job(
    name: str, job_type: str = "Analysis", priority: str = "Normal", delay: float = 0, **extra: Any
) -> dict[str, Any]:
    return {
        "jobName": name,
        "jobType": job_type,
        "priority": priority,
        "parameters": {"delaySeconds": delay},
        **extra,
    }


def _dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class World:
    api: Api
    carol: Api
    marker: str
    ids: dict[str, str] = field(default_factory=dict)
    t_mid: datetime | None = None

    def id(self, key: str) -> str:
        return self.ids[key]

    def keys_of(self, job_ids: list[str]) -> set[str]:
        back = {v: k for k, v in self.ids.items()}
        return {back.get(j, f"foreign:{j}") for j in job_ids}

    def listed(self, **params: Any) -> set[str]:
        r = self.api.get("/execution/jobs", params={"pageSize": 100, **params})
        assert r.status_code == 200, r.text
        return self.keys_of([j["jobId"] for j in r.json()["jobs"]])


@pytest.fixture(scope="module")
def world(stack: Stack) -> Any:
    api = new_tenant(stack, user="alice")
    carol = Api(stack, api.tenant, api.project, stack.token(api.tenant, "carol", [api.project]))
    w = World(api=api, carol=carol, marker=uuid.uuid4().hex[:8])
    m = w.marker
    try:
        w.ids["done"] = api.submit(_job(f"{m}-done", priority="Critical"))["jobId"]
        assert api.wait(w.ids["done"], timeout=120)["status"] == "Completed"
        w.ids["blocker"] = api.submit(_job(f"{m}-blocker", priority="High", delay=120))["jobId"]
        api.wait(w.ids["blocker"], {"Running", *TERMINAL}, timeout=90)
        assert api.job(w.ids["blocker"])["status"] == "Running"
        # the node (capacity 1) is busy: everything below stays Queued
        w.ids["low"] = api.submit(_job(f"{m}-low", priority="Low"))["jobId"]
        w.t_mid = datetime.now(UTC)
        w.ids["nb"] = carol.submit(_job(f"{m}-nb", "Notebook", "Critical"))["jobId"]
        w.ids["carol"] = carol.submit(_job(f"{m}-carol"))["jobId"]
        w.ids["normal"] = api.submit(_job(f"{m}-normal"))["jobId"]
        w.ids["cancelled"] = api.submit(_job(f"{m}-cancelled"))["jobId"]
        r = api.delete(f"/execution/job/{w.ids['cancelled']}")
        assert r.status_code == 200, r.text
        later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
        w.ids["later"] = api.submit(
            _job(
                f"{m}-later",
                priority="Critical",
                scheduling={"executeImmediately": False, "scheduledTime": later},
            )
        )["jobId"]
        yield w
    finally:
        for key in ("low", "nb", "carol", "normal", "later", "blocker"):
            if key in w.ids:
                api.delete(f"/execution/job/{w.ids[key]}", json={"forceTermination": True})
        if "blocker" in w.ids:
            api.wait(w.ids["blocker"], timeout=60)


QUEUED = {"low", "nb", "carol", "normal", "later"}
ALL = QUEUED | {"done", "blocker", "cancelled"}


# -- list jobs ---------------------------------------------------------------------------------


def test_the_world_is_as_built(world: World) -> None:
    expected = {"done": "Completed", "blocker": "Running", "cancelled": "Cancelled"}
    expected |= dict.fromkeys(QUEUED, "Queued")
    got = {k: world.api.job(v)["status"] for k, v in world.ids.items()}
    assert got == expected


def test_pagination(world: World) -> None:
    seen: list[str] = []
    pages = []
    for page in range(1, 7):
        r = world.api.get("/execution/jobs", params={"pageSize": 2, "page": page})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["page"] == page and body["pageSize"] == 2
        pages.append((len(body["jobs"]), body["hasNextPage"]))
        seen += [j["jobId"] for j in body["jobs"]]
    # 8 jobs: 2+2+2+2, then empty pages
    assert pages == [(2, True), (2, True), (2, True), (2, False), (0, False), (0, False)]
    assert len(seen) == len(set(seen)) == 8
    assert world.keys_of(seen) == ALL
    # another page size over the same jobs gives the same set
    big = world.api.get("/execution/jobs", params={"pageSize": 5, "page": 2}).json()
    assert len(big["jobs"]) == 3 and big["hasNextPage"] is False
    default = world.api.get("/execution/jobs").json()
    assert default["page"] == 1 and default["pageSize"] == 20 and default["hasNextPage"] is False


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ALL),
        ({"status": "Queued"}, QUEUED),
        ({"status": "Running"}, {"blocker"}),
        ({"status": "Completed"}, {"done"}),
        ({"status": "Cancelled"}, {"cancelled"}),
        ({"status": "Failed"}, set()),
        ({"jobType": "Notebook"}, {"nb"}),
        ({"jobType": "Analysis"}, ALL - {"nb"}),
        ({"jobType": "ProcessMining"}, set()),
        ({"priority": "Critical"}, {"done", "nb", "later"}),
        ({"priority": "High"}, {"blocker"}),
        ({"priority": "Low"}, {"low"}),
        ({"submittedBy": "carol"}, {"nb", "carol"}),
        ({"submittedBy": "alice"}, ALL - {"nb", "carol"}),
        ({"submittedBy": "nobody"}, set()),
        ({"status": "Queued", "submittedBy": "carol"}, {"nb", "carol"}),
        ({"status": "Queued", "priority": "Critical"}, {"nb", "later"}),
    ],
    ids=lambda v: "&".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None,
)
def test_filters_narrow_the_list(world: World, params: dict[str, Any], expected: set[str]) -> None:
    assert world.listed(**params) == expected


def test_date_filters_narrow_the_list(world: World) -> None:
    mid = world.t_mid
    assert mid is not None
    before, after = {"done", "blocker", "low"}, {"nb", "carol", "normal", "cancelled", "later"}
    assert world.listed(dateFrom=mid.isoformat()) == after
    assert world.listed(dateTo=mid.isoformat()) == before
    day = timedelta(days=1)
    assert world.listed(dateFrom=(mid - day).isoformat(), dateTo=(mid + day).isoformat()) == ALL
    assert world.listed(dateTo=(mid - day).isoformat()) == set()
    assert world.listed(dateFrom=(mid + day).isoformat()) == set()
    assert world.listed(dateFrom=mid.isoformat(), submittedBy="alice") == {
        "normal",
        "cancelled",
        "later",
    }


def test_summary_counts_match_the_jobs(world: World) -> None:
    summary = world.api.get("/execution/jobs").json()["summary"]
    assert set(summary) >= SUMMARY_FIELDS
    assert summary["totalJobs"] == 8
    assert summary["runningJobs"] == 1
    assert summary["queuedJobs"] == 5
    assert summary["completedJobs"] == 1
    assert summary["failedJobs"] == 0
    cancelled = summary.get("cancelledJobs", 1)
    assert cancelled == 1
    parts = ("runningJobs", "queuedJobs", "completedJobs", "failedJobs")
    assert sum(summary[k] for k in parts) + cancelled == summary["totalJobs"]
    # counts are per project and per tenant: carol's view of the same project is the same
    assert world.carol.get("/execution/jobs").json()["summary"] == summary


def _summary_and_statuses(world: World, params: dict[str, str]) -> tuple[dict, list[str]]:
    body = world.api.get("/execution/jobs", params={**params, "pageSize": 100}).json()
    return body["summary"], [j["status"] for j in body["jobs"]]


def _summary_matches(summary: dict, statuses: list[str]) -> bool:
    pairs = (
        ("runningJobs", "Running"),
        ("queuedJobs", "Queued"),
        ("completedJobs", "Completed"),
        ("failedJobs", "Failed"),
        ("cancelledJobs", "Cancelled"),
    )
    return summary["totalJobs"] == len(statuses) and all(
        summary[key] == statuses.count(status) for key, status in pairs
    )


def test_filtered_summary_counts_what_the_filters_list(world: World) -> None:
    """The summary's per-status counts honour the other filters: each equals the number of
    listed jobs of that status under the same filters. The counts and the page are separate
    reads, so a job changing state between them (the blocker finishing) gets a second look; a
    wrong count stays wrong and fails."""
    later = world.api.job(world.id("later"))["scheduling"]["scheduledTime"]
    cases = [
        {"jobType": "Analysis"},
        {"dateTo": later},  # inclusive: 'later' is counted
        {"dateFrom": later},
        {"dateFrom": "1900-01-01T00:00:00Z", "dateTo": "9999-12-31T23:59:59Z"},
        {"dateFrom": "2001-01-01T00:00:00Z", "dateTo": "2001-01-02T00:00:00Z"},  # nothing
    ]
    for params in cases:
        for _ in range(5):
            summary, statuses = _summary_and_statuses(world, params)
            if _summary_matches(summary, statuses):
                break
            time.sleep(0.5)
        assert _summary_matches(summary, statuses), (params, summary, statuses)
    window, _ = _summary_and_statuses(world, {"dateFrom": later})
    assert window["queuedJobs"] == window["totalJobs"] == 1  # only 'later'


def test_list_items_carry_every_documented_field(world: World) -> None:
    body = world.api.get("/execution/jobs", params={"pageSize": 100}).json()
    assert {"jobs", "summary", "page", "pageSize", "hasNextPage"} <= set(body)
    items = {world.keys_of([j["jobId"]]).pop(): j for j in body["jobs"]}
    assert set(items) == ALL
    for key, item in items.items():
        missing = LIST_ITEM_FIELDS - set(item)
        assert not missing, (key, missing, item)
        assert item["jobName"] == f"{world.marker}-{key}"
        assert item["submittedBy"] == ("carol" if key in ("nb", "carol") else "alice")
        assert item["resourceName"], item
        assert isinstance(item["progress"], int | float)
    done, running, queued = items["done"], items["blocker"], items["low"]
    assert done["status"] == "Completed" and done["progress"] == 100
    assert done["startTime"] and done["endTime"] and done["duration"]
    assert _dt(done["endTime"]) >= _dt(done["startTime"])
    assert running["status"] == "Running" and running["startTime"]
    assert running["endTime"] is None and running["duration"] is None
    assert queued["status"] == "Queued" and queued["progress"] == 0
    for key in ("startTime", "endTime", "duration", "estimatedCompletion"):
        assert queued[key] is None, (key, queued)
    assert items["nb"]["jobType"] == "Notebook" and items["nb"]["priority"] == "Critical"


def _check_job_shape(job: dict[str, Any]) -> None:
    assert not JOB_FIELDS - set(job), JOB_FIELDS - set(job)
    assert not PROGRESS_FIELDS - set(job["progress"]), job["progress"]
    assert not RESOURCE_FIELDS - set(job["resource"]), job["resource"]
    assert not EXECUTION_FIELDS - set(job["execution"]), job["execution"]
    assert not METRICS_FIELDS - set(job["metrics"]), job["metrics"]
    assert job["resource"]["resourceType"] == "Pipeline"
    assert job["resource"]["resourceId"] and job["resource"]["resourceName"]
    assert job["dateCreated"] and job["lastUpdated"]
    assert _dt(job["lastUpdated"]) >= _dt(job["dateCreated"])


def test_get_job_has_every_documented_field(world: World) -> None:
    api = world.api
    done = api.job(world.id("done"))
    _check_job_shape(done)
    assert done["projectId"] == api.project
    assert done["progress"]["percentage"] == 100
    assert done["progress"]["currentStage"] == "Completed"
    assert done["progress"]["elapsedTime"]
    assert done["execution"]["startTime"] and done["execution"]["submittedBy"] == "alice"
    assert done["execution"]["executionNode"] == "node-1"
    assert done["execution"]["memoryUsage"], done["execution"]
    assert done["metrics"]["errorCount"] == 0

    running = api.job(world.id("blocker"))
    _check_job_shape(running)
    assert running["status"] == "Running"
    assert running["execution"]["startTime"] and running["execution"]["executionNode"] == "node-1"
    assert running["progress"]["elapsedTime"]
    assert running["progress"]["currentStage"] not in (None, "Queued")

    queued = api.job(world.id("low"))
    _check_job_shape(queued)
    assert queued["progress"]["percentage"] == 0
    assert queued["progress"]["currentStage"] == "Queued"
    assert queued["execution"]["startTime"] is None
    assert queued["execution"]["executionNode"] is None
    assert isinstance(queued["queuePosition"], int) and queued["queuePosition"] >= 1

    nb = world.carol.job(world.id("nb"))
    assert nb["execution"]["submittedBy"] == "carol" and nb["jobType"] == "Notebook"


# -- pipelines ---------------------------------------------------------------------------------


def test_pipelines_have_a_default_per_job_type(world: World) -> None:
    r = world.api.get("/pipelines")
    assert r.status_code == 200, r.text
    pipelines = r.json()["pipelines"]
    for job_type in ("ProcessMining", "DataEnrichment", "Notebook", "Analysis"):
        defaults = [p for p in pipelines if p["jobType"] == job_type and p.get("isDefault")]
        assert len(defaults) == 1, (job_type, pipelines)
        p = defaults[0]
        uuid.UUID(p["resourceId"])
        assert p["resourceName"] and p["resourceType"] == "Pipeline"
        assert isinstance(p.get("defaultParameters", {}), dict)
    ids = [p["resourceId"] for p in pipelines]
    assert len(ids) == len(set(ids))
    # the jobs name the default pipeline of their type
    done = world.api.job(world.id("done"))
    assert done["resource"]["resourceId"] == world.api.pipeline_id("Analysis")


# -- datasets ----------------------------------------------------------------------------------


def _pm4py_counts() -> tuple[int, int, int]:
    df = pd.read_csv(DATA / "receipt.csv")
    df = pm4py.format_dataframe(
        df,
        case_id="case:concept:name",
        activity_key="concept:name",
        timestamp_key="time:timestamp",
    )
    log = pm4py.convert_to_event_log(df)
    activities = pm4py.get_event_attribute_values(log, "concept:name")
    return sum(len(trace) for trace in log), len(log), len(activities)


def test_dataset_upload_list_and_get(world: World) -> None:
    api = world.api
    r = api.post(
        "/datasets",
        files={"file": ("receipt.csv", (DATA / "receipt.csv").read_bytes(), "text/csv")},
    )
    assert r.status_code == 201, r.text
    receipt = r.json()
    for key in ("datasetId", "name", "format", "events", "cases", "activities", "dateCreated"):
        assert key in receipt, (key, receipt)
    uuid.UUID(receipt["datasetId"])
    assert receipt["name"] == "receipt.csv" and receipt["format"] == "csv"
    events, cases, activities = _pm4py_counts()
    assert (receipt["events"], receipt["cases"], receipt["activities"]) == (
        events,
        cases,
        activities,
    )
    listed = api.get("/datasets")
    assert listed.status_code == 200
    found = [d for d in listed.json()["datasets"] if d["datasetId"] == receipt["datasetId"]]
    assert len(found) == 1
    assert {k: found[0][k] for k in receipt} == receipt
    got = api.get(f"/datasets/{receipt['datasetId']}")
    assert got.status_code == 200
    assert {k: got.json()[k] for k in receipt} == receipt


# -- queue view --------------------------------------------------------------------------------


def test_queue_view_fields_and_order(world: World) -> None:
    r = world.api.get("/execution/queue")
    assert r.status_code == 200, r.text
    queue = r.json()
    assert {"queueStatus", "timestamp", "summary", "processingCapacity", "queuedJobs"} <= set(queue)
    assert not QUEUE_VIEW_SUMMARY - set(queue["summary"]), queue["summary"]
    assert not CAPACITY_FIELDS - set(queue["processingCapacity"]), queue["processingCapacity"]
    summary = queue["summary"]
    assert summary["totalQueuedJobs"] == 5
    assert (
        summary["criticalPriorityJobs"],
        summary["highPriorityJobs"],
        summary["normalPriorityJobs"],
        summary["lowPriorityJobs"],
    ) == (2, 0, 2, 1)
    capacity = queue["processingCapacity"]
    assert capacity["maxConcurrentJobs"] == 1 and capacity["currentlyRunning"] == 1
    assert capacity["activeWorkers"] == capacity["totalWorkers"] == 1
    for item in queue["queuedJobs"]:
        assert not QUEUED_JOB_FIELDS - set(item), item
        assert item["estimatedStartTime"] and item["estimatedDuration"], item
    order = [world.keys_of([j["jobId"]]).pop() for j in queue["queuedJobs"]]
    # the order workers take them: ready jobs by priority, FIFO; the job scheduled in two hours
    # is taken last even though it is Critical
    assert order == ["nb", "carol", "normal", "low", "later"]
    positions = [j["queuePosition"] for j in queue["queuedJobs"]]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


def test_queue_positions_agree_with_get_job(world: World) -> None:
    queue = world.api.get("/execution/queue").json()
    for item in queue["queuedJobs"]:
        job = world.api.job(item["jobId"])
        assert job["queuePosition"] == item["queuePosition"], (
            item["jobName"],
            "GET job:",
            job["queuePosition"],
            "queue view:",
            item["queuePosition"],
        )


def test_queue_view_filters(world: World) -> None:
    def keys(**params: Any) -> list[str]:
        r = world.api.get("/execution/queue", params=params)
        assert r.status_code == 200, r.text
        return [world.keys_of([j["jobId"]]).pop() for j in r.json()["queuedJobs"]]

    assert sorted(keys(priority="Critical")) == ["later", "nb"]
    assert keys(priority="Low") == ["low"]
    assert keys(jobType="Notebook") == ["nb"]
    assert keys(priority="High") == []
    bare = world.api.get("/execution/queue", params={"includeEstimates": "false"}).json()
    assert all(j["estimatedStartTime"] is None for j in bare["queuedJobs"])


# -- system status -----------------------------------------------------------------------------


def test_system_status_fields(world: World, stack: Stack) -> None:
    r = world.api.get(f"{stack.url}/api/{world.api.tenant}/execution/system/status")
    assert r.status_code == 200, r.text
    status = r.json()
    for key in (
        "systemStatus",
        "timestamp",
        "executionNodes",
        "queueStatistics",
        "performanceMetrics",
        "resourceUtilization",
    ):
        assert key in status, key
    assert status["systemStatus"] == "Healthy"
    assert abs((_dt(status["timestamp"]) - datetime.now(UTC)).total_seconds()) < 60
    nodes = {n["nodeId"]: n for n in status["executionNodes"]}
    for node in nodes.values():
        assert not NODE_FIELDS - set(node), node
    node = nodes["node-1"]
    assert node["status"] == "Active" and node["jobCapacity"] == 1
    assert isinstance(node["cpuUsage"], int | float) and 0 <= node["cpuUsage"] <= 100
    assert isinstance(node["memoryUsage"], int | float) and 0 <= node["memoryUsage"] <= 100
    stats = status["queueStatistics"]
    assert not QUEUE_STAT_FIELDS - set(stats), stats
    assert stats["totalQueuedJobs"] == 5
    assert (stats["highPriorityJobs"], stats["normalPriorityJobs"], stats["lowPriorityJobs"]) == (
        0,
        2,
        1,
    )
    assert stats["averageWaitTime"].endswith("dakika")
    assert stats["estimatedProcessingTime"].endswith("dakika")
    perf = status["performanceMetrics"]
    assert not PERF_FIELDS - set(perf), perf
    assert perf["jobsCompletedToday"] == 1
    assert perf["successRate"] == 100.0
    assert perf["averageJobDuration"].endswith("dakika")
    util = status["resourceUtilization"]
    assert not UTIL_FIELDS - set(util), util
    assert util["totalCpuCapacity"] >= util["usedCpuCapacity"] >= 0
    assert util["totalMemoryCapacity"].endswith("B") and util["diskSpaceAvailable"].endswith("B")


def test_active_jobs_shows_the_running_job(world: World, stack: Stack) -> None:
    url = f"{stack.url}/api/{world.api.tenant}/execution/system/status"

    def node() -> dict[str, Any]:
        nodes = world.api.get(url).json()["executionNodes"]
        return next(n for n in nodes if n["nodeId"] == "node-1")

    assert world.api.job(world.id("blocker"))["status"] == "Running"
    assert poll(node, lambda n: n["activeJobs"] == 1, timeout=15)["activeJobs"] == 1


# -- service endpoints ---------------------------------------------------------------------------


def test_health_docs_and_openapi(stack: Stack) -> None:
    health = httpx.get(f"{stack.url}/health", timeout=10)
    assert health.status_code == 200
    docs = httpx.get(f"{stack.url}/docs", timeout=10)
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    spec = httpx.get(f"{stack.url}/openapi.json", timeout=10)
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    joined = " ".join(paths)
    for fragment in (
        "/execution/job/",
        "/execution/jobs",
        "/execution/job",
        "/results",
        "/retry",
        "/execution/system/status",
        "/execution/queue",
        "/datasets",
        "/pipelines",
        "/artifacts/",
    ):
        assert fragment in joined, fragment
