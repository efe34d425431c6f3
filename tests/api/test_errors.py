"""Every documented error: the right 4xx, as problem+json naming the field, and never a 500."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import Api, Stack, new_tenant

PROBLEM = "application/problem+json"


def problem(r: httpx.Response, status: int, *mentions: str) -> dict[str, Any]:
    """Assert a problem document with ``status`` whose detail (or field) names ``mentions``."""
    assert r.status_code != 500, (r.request.method, r.request.url, r.text)
    assert r.status_code == status, (r.request.method, str(r.request.url), r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == PROBLEM, r.headers
    body = r.json()
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    named = (
        body["detail"]
        + " "
        + " ".join(
            [str(body.get("field", ""))] + [str(e.get("field", "")) for e in body.get("errors", [])]
        )
    )
    for word in mentions:
        assert word in named, (word, body)
    return body


def _later(minutes: float = 120) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


def _wait_job(seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "jobName": "wait",
        "jobType": "Analysis",
        "parameters": {"delaySeconds": seconds},
        **extra,
    }


TINY = (
    b"case:concept:name,concept:name,time:timestamp\n"
    b"c1,a,2024-01-01T00:00:00Z\nc1,b,2024-01-01T01:00:00Z\nc2,a,2024-01-02T00:00:00Z\n"
)


@pytest.fixture(scope="module")
def api(stack: Stack) -> Api:
    return new_tenant(stack, user="erin")


@pytest.fixture(scope="module")
def dataset(api: Api) -> dict[str, Any]:
    r = api.post("/datasets", files={"file": ("tiny.csv", TINY)})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def queued(api: Api) -> Any:
    """A job that stays Queued (scheduled two hours ahead); cancelled at the end."""
    job = api.submit(
        _wait_job(0, scheduling={"executeImmediately": False, "scheduledTime": _later()})
    )
    yield job["jobId"]
    api.delete(f"/execution/job/{job['jobId']}")


# -- malformed ids and enums -------------------------------------------------------------------

JOB_ENDPOINTS = [
    ("GET", "/execution/job/{id}", None),
    ("GET", "/execution/job/{id}/results", None),
    ("GET", "/execution/job/{id}/artifacts/report.html", None),
    ("DELETE", "/execution/job/{id}", None),
    ("PATCH", "/execution/job/{id}", {"priority": "High"}),
    ("POST", "/execution/job/{id}/retry", {}),
]


def test_malformed_job_id_is_422_naming_job_id(api: Api) -> None:
    """Every job endpoint; the path parameter is documented as ``{jobId}``."""
    unnamed = []
    for method, template, body in JOB_ENDPOINTS:
        for bad in ("not-a-uuid", "12345", "cc0e8400-e29b-41d4-a716-44665544000Z"):
            kw = {"json": body} if body is not None else {}
            r = api.http.request(method, api.base + template.format(id=bad), **kw)
            doc = problem(r, 422)
            if "jobId" not in doc["detail"]:
                unnamed.append((method, template, bad, doc["detail"]))
    assert not unnamed, unnamed


def test_malformed_dataset_id_is_422(api: Api) -> None:
    problem(api.get("/datasets/not-a-uuid"), 422, "datasetId")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "Bogus"}, "status"),
        ({"status": "queued"}, "status"),
        ({"jobType": "Mining"}, "jobType"),
        ({"priority": "Urgent"}, "priority"),
        ({"pageSize": 0}, "pageSize"),
        ({"pageSize": 101}, "pageSize"),
        ({"pageSize": -1}, "pageSize"),
        ({"pageSize": "ten"}, "pageSize"),
        ({"page": 0}, "page"),
        ({"page": -3}, "page"),
        ({"dateFrom": "yesterday"}, "dateFrom"),
        ({"dateTo": "2024-13-45"}, "dateTo"),
        ({"dateFrom": "2024-02-01T00:00:00Z", "dateTo": "2024-01-01T00:00:00Z"}, "dateFrom"),
    ],
)
def test_bad_list_filters_are_422(api: Api, params: dict[str, Any], field: str) -> None:
    problem(api.get("/execution/jobs", params=params), 422, field)


def test_mixed_naive_and_aware_dates_are_not_a_500(api: Api) -> None:
    r = api.get(
        "/execution/jobs",
        params={"dateFrom": "2024-01-01T00:00:00", "dateTo": "2030-01-01T00:00:00Z"},
    )
    assert r.status_code != 500, r.text
    assert r.status_code in (200, 422), r.text


def test_page_size_limits_are_inclusive(api: Api) -> None:
    for size in (1, 100):
        r = api.get("/execution/jobs", params={"pageSize": size})
        assert r.status_code == 200, r.text
        assert r.json()["pageSize"] == size


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"priority": "Urgent"}, "priority"),
        ({"jobType": "Mining"}, "jobType"),
        ({"includeEstimates": "maybe"}, "includeEstimates"),
    ],
)
def test_bad_queue_filters_are_422(api: Api, params: dict[str, Any], field: str) -> None:
    problem(api.get("/execution/queue", params=params), 422, field)


def test_bad_results_query_is_422(api: Api, queued: str) -> None:
    base = f"/execution/job/{queued}/results"
    problem(api.get(base, params={"format": "pdf"}), 422, "format")
    problem(api.get(base, params={"outputType": "pictures"}), 422, "outputType")
    problem(api.get(base, params={"includeArtifacts": "perhaps"}), 422, "includeArtifacts")


# -- submit bodies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"jobName": "x", "jobType": "Mining"}, "jobType"),
        ({"jobName": "x", "jobType": "Analysis", "priority": "Urgent"}, "priority"),
        ({"jobName": "x", "jobType": "Analysis", "priority": "high"}, "priority"),
        ({"jobType": "Analysis"}, "jobName"),
        ({"jobName": "x"}, "jobType"),
        ({"jobName": "", "jobType": "Analysis"}, "jobName"),
        ({"jobName": "x", "jobType": "Analysis", "bogus": 1}, "bogus"),
        ({"jobName": "x", "jobType": "Analysis", "parameters": {"delaySecs": 1}}, "delaySecs"),
        ({"jobName": "x", "jobType": "Analysis", "scheduling": {"runAt": "now"}}, "runAt"),
        (
            {"jobName": "x", "jobType": "Analysis", "scheduling": {"timeoutMinutes": 0}},
            "timeoutMinutes",
        ),
        (
            {"jobName": "x", "jobType": "Analysis", "scheduling": {"timeoutMinutes": -5}},
            "timeoutMinutes",
        ),
        (
            {
                "jobName": "x",
                "jobType": "Analysis",
                "notifications": {"emailRecipients": ["not-an-address"]},
            },
            "emailRecipients",
        ),
        (
            {
                "jobName": "x",
                "jobType": "Analysis",
                "parameters": {"performanceMetrics": ["speed"]},
            },
            "performanceMetrics",
        ),
        (
            {
                "jobName": "x",
                "jobType": "Analysis",
                "parameters": {"timeWindow": {"startDate": "2024-02-01", "endDate": "2024-01-01"}},
            },
            "timeWindow",
        ),
        (
            {
                "jobName": "x",
                "jobType": "Analysis",
                "resource": {"resourceType": "Pipeline", "resourceId": "garbage"},
            },
            "resourceId",
        ),
        (
            {"jobName": "x", "jobType": "Analysis", "resource": {"resourceType": "Cluster"}},
            "resourceType",
        ),
        (
            {"jobName": "x", "jobType": "ProcessMining", "parameters": {"datasetId": "garbage"}},
            "datasetId",
        ),
    ],
)
def test_invalid_submit_bodies_are_422(api: Api, body: dict[str, Any], field: str) -> None:
    problem(api.post("/execution/job", json=body), 422, field)


@pytest.mark.parametrize(
    ("content", "ctype"),
    [
        (b"not json", "application/json"),
        (b'{"jobName": "x", ', "application/json"),
        (b"[1, 2]", "application/json"),
        (b'"a string"', "application/json"),
        (b"", "application/json"),
        (b"jobName=x&jobType=Analysis", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00garbage", "application/json"),
    ],
)
def test_non_json_bodies_are_422(api: Api, content: bytes, ctype: str) -> None:
    r = api.post("/execution/job", content=content, headers={"Content-Type": ctype})
    problem(r, 422)


def test_scheduled_time_in_the_past_is_422(api: Api) -> None:
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    r = api.post(
        "/execution/job",
        json=_wait_job(0, scheduling={"executeImmediately": False, "scheduledTime": past}),
    )
    problem(r, 422, "scheduledTime")


def test_scheduled_time_without_time_zone_is_422(api: Api) -> None:
    naive = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    r = api.post(
        "/execution/job",
        json=_wait_job(0, scheduling={"executeImmediately": False, "scheduledTime": naive}),
    )
    problem(r, 422, "scheduledTime")


def test_deferred_execution_without_scheduled_time_is_422(api: Api) -> None:
    r = api.post("/execution/job", json=_wait_job(0, scheduling={"executeImmediately": False}))
    problem(r, 422, "scheduledTime")
    r = api.post(
        "/execution/job",
        json=_wait_job(0, scheduling={"executeImmediately": False, "scheduledTime": None}),
    )
    problem(r, 422, "scheduledTime")


@pytest.mark.parametrize("job_type", ["ProcessMining", "DataEnrichment"])
def test_unknown_dataset_is_422(api: Api, job_type: str) -> None:
    body = {"jobName": "x", "jobType": job_type, "parameters": {"datasetId": str(uuid.uuid4())}}
    problem(api.post("/execution/job", json=body), 422, "parameters.datasetId")


def test_dataset_of_another_project_is_422(stack: Stack, api: Api) -> None:
    other = new_tenant(stack, user="erin")
    r = other.post("/datasets", files={"file": ("tiny.csv", TINY)})
    assert r.status_code == 201, r.text
    body = {
        "jobName": "x",
        "jobType": "ProcessMining",
        "parameters": {"datasetId": r.json()["datasetId"]},
    }
    problem(api.post("/execution/job", json=body), 422, "parameters.datasetId")


@pytest.mark.parametrize("job_type", ["ProcessMining", "DataEnrichment"])
def test_missing_dataset_is_422(api: Api, job_type: str) -> None:
    r = api.post("/execution/job", json={"jobName": "x", "jobType": job_type})
    problem(r, 422, "parameters.datasetId")
    r = api.post("/execution/job", json={"jobName": "x", "jobType": job_type, "parameters": {}})
    problem(r, 422, "parameters.datasetId")


def test_resource_id_of_another_job_type_is_422(api: Api, dataset: dict[str, Any]) -> None:
    analysis = api.pipeline_id("Analysis")
    body = {
        "jobName": "x",
        "jobType": "ProcessMining",
        "resource": {"resourceType": "Pipeline", "resourceId": analysis},
        "parameters": {"datasetId": dataset["datasetId"]},
    }
    problem(api.post("/execution/job", json=body), 422, "resourceId")


def test_random_resource_id_is_422(api: Api, dataset: dict[str, Any]) -> None:
    body = {
        "jobName": "x",
        "jobType": "ProcessMining",
        "resource": {"resourceType": "Pipeline", "resourceId": str(uuid.uuid4())},
        "parameters": {"datasetId": dataset["datasetId"]},
    }
    problem(api.post("/execution/job", json=body), 422, "resourceId")


def test_rejected_submits_created_no_job(api: Api, dataset: dict[str, Any], queued: str) -> None:
    """Run the rejections again and check that the project holds only the fixture's job."""
    for body in (
        {"jobName": "x", "jobType": "ProcessMining"},
        {
            "jobName": "x",
            "jobType": "ProcessMining",
            "resource": {"resourceType": "Pipeline", "resourceId": str(uuid.uuid4())},
            "parameters": {"datasetId": dataset["datasetId"]},
        },
        _wait_job(
            0, scheduling={"executeImmediately": False, "scheduledTime": "2020-01-01T00:00:00Z"}
        ),
    ):
        assert api.post("/execution/job", json=body).status_code == 422
    listed = api.get("/execution/jobs", params={"pageSize": 100}).json()
    names = [j["jobName"] for j in listed["jobs"]]
    assert "x" not in names, names


# -- state conflicts ---------------------------------------------------------------------------


def test_results_of_queued_job_is_409(api: Api, queued: str) -> None:
    body = problem(api.get(f"/execution/job/{queued}/results"), 409)
    assert "queued" in body["detail"].lower()
    problem(api.get(f"/execution/job/{queued}/results", params={"format": "download"}), 409)


def test_unknown_job_is_404_everywhere(api: Api) -> None:
    unknown = str(uuid.uuid4())
    for method, template, body in JOB_ENDPOINTS:
        kw = {"json": body} if body is not None else {}
        problem(api.http.request(method, api.base + template.format(id=unknown), **kw), 404)
    problem(api.get(f"/datasets/{uuid.uuid4()}"), 404)


def test_unknown_routes_and_methods_are_problems(api: Api, stack: Stack) -> None:
    problem(api.get("/execution/nothing-here"), 404)
    problem(httpx.get(f"{stack.url}/no/such/path"), 404)
    problem(api.http.put(f"{api.base}/execution/jobs"), 405)


def test_state_conflicts_on_running_then_completed_job(api: Api) -> None:
    job_id = api.submit(_wait_job(4, priority="Critical"))["jobId"]
    try:
        running = api.wait(job_id, {"Running", "Completed", "Failed", "Cancelled"}, timeout=90)
        assert running["status"] == "Running", running
        body = problem(api.get(f"/execution/job/{job_id}/results"), 409)
        assert "running" in body["detail"].lower()
        problem(api.patch(f"/execution/job/{job_id}", json={"priority": "Low"}), 409)
        problem(api.post(f"/execution/job/{job_id}/retry", json={}), 409)

        done = api.wait(job_id, timeout=60)
        assert done["status"] == "Completed", done
        problem(api.delete(f"/execution/job/{job_id}"), 409, "Completed")
        problem(api.delete(f"/execution/job/{job_id}", json={"forceTermination": True}), 409)
        problem(api.post(f"/execution/job/{job_id}/retry", json={}), 409)
        problem(
            api.post(
                f"/execution/job/{job_id}/retry", json={"retryReason": "again", "priority": "High"}
            ),
            409,
        )
        problem(api.patch(f"/execution/job/{job_id}", json={"priority": "Low"}), 409)
        # the conflicts changed nothing
        after = api.job(job_id)
        assert after["status"] == "Completed" and after["retriedBy"] is None
        assert after["priority"] == "Critical"
    finally:
        api.delete(f"/execution/job/{job_id}", json={"forceTermination": True})


def test_cancel_and_priority_of_cancelled_job_are_409(api: Api) -> None:
    job = api.submit(
        _wait_job(0, scheduling={"executeImmediately": False, "scheduledTime": _later()})
    )
    assert api.delete(f"/execution/job/{job['jobId']}").status_code == 200
    problem(api.delete(f"/execution/job/{job['jobId']}"), 409)
    problem(api.patch(f"/execution/job/{job['jobId']}", json={"priority": "High"}), 409)
    problem(api.post(f"/execution/job/{job['jobId']}/retry", json={}), 409)


def test_invalid_priority_change_bodies_are_422(api: Api, queued: str) -> None:
    base = f"/execution/job/{queued}"
    problem(api.patch(base, json={"priority": "Urgent"}), 422, "priority")
    problem(api.patch(base, json={}), 422, "priority")
    problem(api.patch(base, json={"priority": "High", "jobName": "renamed"}), 422, "jobName")
    problem(api.patch(base, content=b"nope", headers={"Content-Type": "application/json"}), 422)
    job = api.job(queued)
    assert job["status"] == "Queued" and job["priority"] == "Normal"


def test_invalid_cancel_bodies_are_422_naming_the_field(api: Api, queued: str) -> None:
    base = f"/execution/job/{queued}"
    problem(
        api.delete(base, content=b"not json", headers={"Content-Type": "application/json"}), 422
    )
    problem(api.delete(base, json={"forceTermination": "sometimes"}), 422, "forceTermination")
    problem(api.delete(base, json={"reason": "x", "bogus": True}), 422, "bogus")
    # still queued after all that
    assert api.job(queued)["status"] == "Queued"


def test_invalid_retry_bodies_are_422(api: Api, queued: str) -> None:
    base = f"/execution/job/{queued}/retry"
    problem(api.post(base, json={"priority": "Urgent"}), 422, "priority")
    problem(api.post(base, json={"immediateExecution": "soon"}), 422, "immediateExecution")
    problem(api.post(base, json={"retryReason": "x", "bogus": 1}), 422, "bogus")


# -- dataset uploads -----------------------------------------------------------------------------


def _dataset_ids(api: Api) -> set[str]:
    r = api.get("/datasets")
    assert r.status_code == 200, r.text
    return {d["datasetId"] for d in r.json()["datasets"]}


def _store_folders(api: Api) -> set[str]:
    root = api.stack.home / "datasets" / api.tenant / api.project
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


@pytest.mark.parametrize(
    ("filename", "content", "form", "mentions"),
    [
        ("empty.csv", b"", {}, ["empty"]),
        ("empty.xes", b"", {}, ["empty"]),
        ("garbage.xes", bytes(range(256)) * 20, {}, ["garbage.xes", "XES"]),
        ("garbage.xes.gz", b"\x1f\x8b" + bytes(range(200)), {}, ["garbage.xes.gz"]),
        ("garbage.parquet", b"PAR1 not really", {}, ["garbage.parquet"]),
        (
            "header-only.csv",
            b"case:concept:name,concept:name,time:timestamp\n",
            {},
            ["header-only"],
        ),
        (
            "missing-column.csv",
            b"case,activity,ts\n1,a,2024-01-01T00:00:00Z\n",
            {"caseColumn": "case", "activityColumn": "activity", "timestampColumn": "when"},
            ["when"],
        ),
        (
            "default-names.csv",
            b"case,activity,ts\n1,a,2024-01-01T00:00:00Z\n",
            {},
            ["case:concept:name"],
        ),
        (
            "bad-timestamps.csv",
            b"case,activity,ts\n1,a,notadate\n",
            {"caseColumn": "case", "activityColumn": "activity", "timestampColumn": "ts"},
            ["ts", "notadate"],
        ),
        (
            "missing-resource.csv",
            b"case,activity,ts\n1,a,2024-01-01T00:00:00Z\n",
            {
                "caseColumn": "case",
                "activityColumn": "activity",
                "timestampColumn": "ts",
                "resourceColumn": "who",
            },
            ["who"],
        ),
    ],
)
def test_bad_uploads_are_422_and_leave_nothing(
    api: Api, filename: str, content: bytes, form: dict[str, str], mentions: list[str]
) -> None:
    before, folders = _dataset_ids(api), _store_folders(api)
    r = api.post("/datasets", files={"file": (filename, content)}, data=form)
    problem(r, 422, *mentions)
    assert _dataset_ids(api) == before
    assert _store_folders(api) == folders


def test_upload_without_file_is_422(api: Api) -> None:
    before = _dataset_ids(api)
    problem(api.post("/datasets", data={"caseColumn": "case"}), 422, "file")
    problem(api.post("/datasets", json={"file": "x"}), 422)
    assert _dataset_ids(api) == before


def test_no_500_on_a_burst_of_bad_requests(api: Api, stack: Stack) -> None:
    """Odd but harmless requests: none may crash a handler."""
    calls = [
        api.get("/execution/jobs", params={"submittedBy": "x" * 500}),
        api.get("/execution/jobs", params={"dateFrom": "2024-01-01T00:00:00+25:00"}),
        api.get("/execution/jobs", params={"page": 10**12}),
        api.get(f"/execution/job/{uuid.uuid4()}/artifacts/" + "a" * 300),
        api.post("/execution/job", json={"jobName": "x" * 10_000, "jobType": "Analysis"}),
        api.post(
            "/execution/job",
            json={"jobName": "x", "jobType": "Analysis", "parameters": {"delaySeconds": 10**9}},
        ),
        api.post(
            "/execution/job",
            json={"jobName": "x", "jobType": "Analysis", "scheduling": {"timeoutMinutes": 10**9}},
        ),
        api.post(
            "/execution/job",
            json={"jobName": "x", "jobType": "Analysis", "parameters": {"noiseThreshold": 7}},
        ),
        httpx.get(
            f"{stack.url}/api/{'x' * 300}/{api.project}/execution/jobs",
            headers={"Authorization": f"Bearer {api.token}"},
        ),
        httpx.get(
            f"{stack.url}/api/{api.tenant}/{api.project}%00/execution/jobs",
            headers={"Authorization": f"Bearer {api.token}"},
        ),
    ]
    for r in calls:
        assert r.status_code < 500, (str(r.request.url)[:200], r.status_code, r.text[:300])
        assert 400 <= r.status_code < 500, (str(r.request.url)[:200], r.status_code, r.text[:300])
        assert r.headers["content-type"].split(";")[0] == PROBLEM
        body = r.json()
        assert body["status"] == r.status_code and body["title"] and body["detail"]


def test_service_still_answers(api: Api, stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/health", timeout=10).status_code == 200
    t0 = time.monotonic()
    assert api.get("/execution/jobs").status_code == 200
    assert time.monotonic() - t0 < 10
