"""Tenant and project walls on every endpoint, authentication, and artifact download tricks.

A token of tenant A must learn nothing about tenant B: every path naming B's objects answers
404 problem+json exactly like an unknown id (same status, same ``detail``), and nothing of B
appears in A's listings. Missing or bad credentials are 401 with ``WWW-Authenticate``.
"""

from __future__ import annotations

import base64
import http.client
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import Api, Stack, new_tenant

PROBLEM = "application/problem+json"


def _later(hours: int = 2) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def _tiny_csv(tmp: Any) -> Any:
    path = tmp / "tiny.csv"
    path.write_text(
        "case:concept:name,concept:name,time:timestamp\n"
        "c1,a,2024-01-01T00:00:00Z\nc1,b,2024-01-01T01:00:00Z\n"
    )
    return path


def _upload_tiny(api: Api, tmp: Any) -> dict[str, Any]:
    with _tiny_csv(tmp).open("rb") as fh:
        r = api.post("/datasets", files={"file": ("tiny.csv", fh)})
    assert r.status_code == 201, r.text
    return r.json()


def _assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == PROBLEM, r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    return body


class World:
    """Tenant A and tenant B, each with jobs and a dataset; B's job names are secrets."""

    def __init__(self, stack: Stack, tmp: Any) -> None:
        self.stack = stack
        self.a = new_tenant(stack, user="alice")
        self.b = new_tenant(stack, user="bob")
        marker = uuid.uuid4().hex[:10]
        self.b_names = [f"b-secret-done-{marker}", f"b-secret-queued-{marker}"]
        self.b_dataset = _upload_tiny(self.b, tmp)
        self.a_dataset = _upload_tiny(self.a, tmp)
        done = self.b.submit(
            {
                "jobName": self.b_names[0],
                "jobType": "Analysis",
                "priority": "Critical",
                "parameters": {"delaySeconds": 0},
            }
        )
        self.b_queued = self.b.submit(
            {
                "jobName": self.b_names[1],
                "jobType": "Analysis",
                "priority": "Low",
                "parameters": {"delaySeconds": 0},
                "scheduling": {"executeImmediately": False, "scheduledTime": _later()},
            }
        )["jobId"]
        self.a_queued = self.a.submit(
            {
                "jobName": "a-own",
                "jobType": "Analysis",
                "parameters": {"delaySeconds": 0},
                "scheduling": {"executeImmediately": False, "scheduledTime": _later()},
            }
        )["jobId"]
        final = self.b.wait(done["jobId"], timeout=120)
        assert final["status"] == "Completed", final
        self.b_done = done["jobId"]
        results = self.b.get(f"/execution/job/{self.b_done}/results").json()
        self.b_artifact = results["results"]["primaryOutput"]["name"]
        self.b_ids = [self.b_done, self.b_queued]

    def close(self) -> None:
        for api, job_id in ((self.b, self.b_queued), (self.a, self.a_queued)):
            api.delete(f"/execution/job/{job_id}")


@pytest.fixture(scope="module")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Any:
    w = World(stack, tmp_path_factory.mktemp("tenancy"))
    yield w
    w.close()


def _id_paths(job: str, dataset: str, artifact: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path below /api/{tenant}/{project}, request kwargs) of every id-bearing path."""
    return [
        ("GET", f"/execution/job/{job}", {}),
        ("GET", f"/execution/job/{job}/results", {}),
        ("GET", f"/execution/job/{job}/results?format=download", {}),
        ("GET", f"/execution/job/{job}/artifacts/{artifact}", {}),
        ("DELETE", f"/execution/job/{job}", {"json": {"reason": "x", "forceTermination": True}}),
        ("POST", f"/execution/job/{job}/retry", {"json": {}}),
        ("PATCH", f"/execution/job/{job}", {"json": {"priority": "Critical"}}),
        ("GET", f"/datasets/{dataset}", {}),
    ]


def _call(api: Api, method: str, url: str, kw: dict[str, Any]) -> httpx.Response:
    return api.http.request(method, url, **kw)


@pytest.mark.parametrize("which", ["done", "queued"])
def test_b_ids_under_b_paths_look_unknown_to_a(world: World, which: str) -> None:
    a, b = world.a, world.b
    job = world.b_done if which == "done" else world.b_queued
    real = _id_paths(job, world.b_dataset["datasetId"], world.b_artifact)
    fake = _id_paths(str(uuid.uuid4()), str(uuid.uuid4()), world.b_artifact)
    for (method, path, kw), (_, fake_path, _) in zip(real, fake, strict=True):
        got = _assert_problem(_call(a, method, b.base + path, kw), 404)
        # the same path shape with random ids, under B's tenant and under an unknown tenant
        same_tenant = _assert_problem(_call(a, method, b.base + fake_path, kw), 404)
        nowhere = f"{world.stack.url}/api/{uuid.uuid4()}/{uuid.uuid4()}"
        unknown = _assert_problem(_call(a, method, nowhere + fake_path, kw), 404)
        assert got["detail"] == same_tenant["detail"] == unknown["detail"], (method, path)
        assert job not in got["detail"]


@pytest.mark.parametrize("which", ["done", "queued"])
def test_b_ids_under_a_paths_look_unknown(world: World, which: str) -> None:
    a = world.a
    job = world.b_done if which == "done" else world.b_queued
    real = _id_paths(job, world.b_dataset["datasetId"], world.b_artifact)
    fake = _id_paths(str(uuid.uuid4()), str(uuid.uuid4()), world.b_artifact)
    for (method, path, kw), (_, fake_path, _) in zip(real, fake, strict=True):
        got = _assert_problem(_call(a, method, a.base + path, kw), 404)
        unknown = _assert_problem(_call(a, method, a.base + fake_path, kw), 404)
        assert got["detail"] == unknown["detail"], (method, path, got, unknown)
        assert got["title"] == unknown["title"]


def test_a_could_not_change_b_jobs(world: World) -> None:
    """After A's cancel/PATCH/retry attempts (other tests, and here again), B's jobs are intact."""
    for base in (world.b.base, world.a.base):
        world.a.delete(f"{base}/execution/job/{world.b_queued}", json={"forceTermination": True})
        world.a.patch(f"{base}/execution/job/{world.b_queued}", json={"priority": "Critical"})
    queued = world.b.job(world.b_queued)
    assert queued["status"] == "Queued"
    assert queued["priority"] == "Low"
    done = world.b.job(world.b_done)
    assert done["status"] == "Completed"
    assert done["retriedBy"] is None
    assert world.b.get(f"/execution/job/{world.b_done}/results").status_code == 200


def test_b_collections_are_404_for_a(world: World) -> None:
    a, b, url = world.a, world.b, world.stack.url
    nowhere_t, nowhere_p = str(uuid.uuid4()), str(uuid.uuid4())
    collections = [
        ("GET", "/execution/jobs", {}),
        ("GET", "/execution/jobs?status=Completed", {}),
        ("GET", "/execution/queue", {}),
        ("GET", "/datasets", {}),
        ("GET", "/pipelines", {}),
        ("POST", "/execution/job", {"json": {"jobName": "x", "jobType": "Analysis"}}),
    ]
    for method, path, kw in collections:
        got = _assert_problem(_call(a, method, b.base + path, kw), 404)
        unknown = _assert_problem(
            _call(a, method, f"{url}/api/{nowhere_t}/{nowhere_p}{path}", kw), 404
        )
        assert got["detail"] == unknown["detail"], (method, path)
    # A's own tenant with B's project id, too
    got = _assert_problem(a.get(f"{url}/api/{a.tenant}/{b.project}/execution/jobs"), 404)
    unknown = _assert_problem(a.get(f"{url}/api/{a.tenant}/{nowhere_p}/execution/jobs"), 404)
    assert got["detail"] == unknown["detail"]
    # dataset upload into B
    tiny = b"case:concept:name,concept:name,time:timestamp\nc1,a,2024-01-01T00:00:00Z\n"
    got = _assert_problem(a.post(f"{b.base}/datasets", files={"file": ("t.csv", tiny)}), 404)
    unknown = _assert_problem(
        a.post(f"{url}/api/{nowhere_t}/{nowhere_p}/datasets", files={"file": ("t.csv", tiny)}),
        404,
    )
    assert got["detail"] == unknown["detail"]
    # system status of B's tenant
    got = _assert_problem(a.get(f"{url}/api/{b.tenant}/execution/system/status"), 404)
    unknown = _assert_problem(a.get(f"{url}/api/{nowhere_t}/execution/system/status"), 404)
    assert got["detail"] == unknown["detail"]
    # nothing was created in B by A's attempts
    listed = b.get("/execution/jobs").json()
    assert {j["jobId"] for j in listed["jobs"]} == set(world.b_ids)
    assert b.get("/datasets").json()["totalCount"] == 1


def test_a_listings_never_show_b(world: World) -> None:
    a, b, url = world.a, world.b, world.stack.url
    secrets = [*world.b_ids, *world.b_names, world.b_dataset["datasetId"]]
    # positive control: B sees its own queued job in its queue and list
    assert world.b_queued in b.get("/execution/queue").text
    assert world.b_names[0] in b.get("/execution/jobs").text
    responses = [
        a.get("/execution/jobs"),
        a.get("/execution/jobs", params={"pageSize": 100}),
        a.get("/execution/jobs", params={"status": "Completed"}),
        a.get("/execution/jobs", params={"status": "Queued"}),
        a.get("/execution/jobs", params={"submittedBy": "bob"}),
        a.get("/execution/queue"),
        a.get("/execution/queue", params={"priority": "Low"}),
        a.get("/datasets"),
        a.get(f"{url}/api/{a.tenant}/execution/system/status"),
    ]
    for r in responses:
        assert r.status_code == 200, (r.request.url, r.text)
        for secret in secrets:
            assert secret not in r.text, (str(r.request.url), secret)
    own = a.get("/execution/jobs").json()
    assert [j["jobId"] for j in own["jobs"]] == [world.a_queued]
    assert own["summary"]["totalJobs"] == 1
    assert a.get("/execution/jobs", params={"submittedBy": "bob"}).json()["jobs"] == []
    queue = a.get("/execution/queue").json()
    assert [j["jobId"] for j in queue["queuedJobs"]] == [world.a_queued]
    assert queue["summary"]["totalQueuedJobs"] == 1
    status = a.get(f"{url}/api/{a.tenant}/execution/system/status").json()
    assert status["queueStatistics"]["totalQueuedJobs"] == 1
    assert status["queueStatistics"]["lowPriorityJobs"] == 0  # B's Low job is not counted
    assert status["performanceMetrics"]["jobsCompletedToday"] == 0  # B's completed job neither


def test_project_limited_token(stack: Stack, tmp_path: Any) -> None:
    tenant, p1, p2 = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    whole = Api(stack, tenant, p2, stack.token(tenant, "owner"))  # all projects of the tenant
    p1_only = Api(stack, tenant, p1, stack.token(tenant, "limited", [p1]))
    job = whole.submit(
        {
            "jobName": "p2-secret",
            "jobType": "Analysis",
            "scheduling": {"executeImmediately": False, "scheduledTime": _later()},
        }
    )["jobId"]
    dataset = _upload_tiny(whole, tmp_path)["datasetId"]
    try:
        p2_base = f"{stack.url}/api/{tenant}/{p2}"
        nowhere = f"{stack.url}/api/{tenant}/{uuid.uuid4()}"
        real = _id_paths(job, dataset, "kpis.json")
        fake = _id_paths(str(uuid.uuid4()), str(uuid.uuid4()), "kpis.json")
        extra = [
            ("GET", "/execution/jobs", {}),
            ("GET", "/execution/queue", {}),
            ("GET", "/datasets", {}),
            ("GET", "/pipelines", {}),
        ]
        for (method, path, kw), (_, fake_path, _) in zip(real + extra, fake + extra, strict=True):
            got = _assert_problem(_call(p1_only, method, p2_base + path, kw), 404)
            unknown = _assert_problem(_call(p1_only, method, nowhere + fake_path, kw), 404)
            assert got["detail"] == unknown["detail"], (method, path)
        for (method, path, kw), (_, fake_path, _) in zip(real, fake, strict=True):
            # P2's ids through P1's own paths: unknown as well
            via_p1 = _assert_problem(_call(p1_only, method, p1_only.base + path, kw), 404)
            fake_p1 = _assert_problem(_call(p1_only, method, p1_only.base + fake_path, kw), 404)
            assert via_p1["detail"] == fake_p1["detail"], (method, path)
        # P1 itself works, and shows nothing of P2
        own = p1_only.get("/execution/jobs")
        assert own.status_code == 200 and job not in own.text and "p2-secret" not in own.text
        # the whole-tenant token sees the job in P2 but not through P1's path
        assert whole.get(f"/execution/job/{job}").status_code == 200
        _assert_problem(whole.get(f"{stack.url}/api/{tenant}/{p1}/execution/job/{job}"), 404)
        # the project-limited token still reads its tenant's system status
        assert p1_only.get(f"{stack.url}/api/{tenant}/execution/system/status").status_code == 200
        assert whole.job(job)["status"] == "Queued"
    finally:
        whole.delete(f"/execution/job/{job}")


# -- authentication ----------------------------------------------------------------------------


def _protected(world: World) -> list[tuple[str, str]]:
    a, url = world.a, world.stack.url
    job = world.a_queued
    return [
        ("GET", f"{a.base}/execution/jobs"),
        ("GET", f"{a.base}/execution/job/{job}"),
        ("GET", f"{a.base}/execution/job/{job}/results"),
        ("GET", f"{a.base}/execution/job/{job}/artifacts/kpis.json"),
        ("DELETE", f"{a.base}/execution/job/{job}"),
        ("PATCH", f"{a.base}/execution/job/{job}"),
        ("POST", f"{a.base}/execution/job/{job}/retry"),
        ("POST", f"{a.base}/execution/job"),
        ("GET", f"{a.base}/execution/queue"),
        ("GET", f"{a.base}/datasets"),
        ("GET", f"{a.base}/datasets/{world.a_dataset['datasetId']}"),
        ("POST", f"{a.base}/datasets"),
        ("GET", f"{a.base}/pipelines"),
        ("GET", f"{url}/api/{a.tenant}/execution/system/status"),
        # B's paths too: 401 comes first, so it says nothing about existence
        ("GET", f"{world.b.base}/execution/job/{world.b_done}"),
    ]


@pytest.mark.parametrize(
    "auth",
    [
        "none",
        "garbage-bearer",
        "empty-bearer",
        "basic",
        "token-scheme",
        "raw-token",
        "valid-prefix-forged",
    ],
)
def test_unauthenticated_is_401(world: World, auth: str) -> None:
    token = world.a.token
    headers = {
        "none": {},
        "garbage-bearer": {"Authorization": "Bearer garbage"},
        "empty-bearer": {"Authorization": "Bearer"},
        "basic": {"Authorization": "Basic " + base64.b64encode(f"alice:{token}".encode()).decode()},
        "token-scheme": {"Authorization": f"Token {token}"},
        "raw-token": {"Authorization": token},
        "valid-prefix-forged": {"Authorization": f"Bearer {token[:-4]}AAAA"},
    }[auth]
    with httpx.Client(timeout=30) as client:
        for method, url in _protected(world):
            r = client.request(method, url, headers=headers)
            body = _assert_problem(r, 401)
            challenge = r.headers.get("www-authenticate", "")
            assert challenge.lower().startswith("bearer"), (url, r.headers)
            assert token not in r.text
            assert body["detail"]
    # nothing changed behind the 401s
    assert world.a.job(world.a_queued)["status"] == "Queued"


def test_valid_token_is_accepted_on_the_same_paths(world: World) -> None:
    """Control for the 401 test: with the token, the reads answer 200."""
    a = world.a
    for path in (
        "/execution/jobs",
        f"/execution/job/{world.a_queued}",
        "/execution/queue",
        "/datasets",
        "/pipelines",
    ):
        assert a.get(path).status_code == 200, path


# -- artifact downloads ------------------------------------------------------------------------


def _raw_get(stack: Stack, path: str, token: str) -> tuple[int, str, bytes]:
    """GET with the path sent exactly as written (httpx would normalise ``..`` away)."""
    parts = urlsplit(stack.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.putheader("Authorization", f"Bearer {token}")
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type") or "", resp.read()
    finally:
        conn.close()


def test_artifact_download_tricks(world: World) -> None:
    b, stack = world.b, world.stack
    base = f"/api/{b.tenant}/{b.project}/execution/job/{world.b_done}/artifacts"
    status, _, content = _raw_get(stack, f"{base}/{world.b_artifact}", b.token)
    assert status == 200 and content  # control: the listed artifact is served
    secret_key = (stack.home / "secret.key").read_bytes()
    tokens_file = (stack.home / "tokens.json").read_bytes()
    tricks = [
        "manifest.json",  # on disk in the job's folder, but not a listed output
        "../manifest.json",
        "..%2Fmanifest.json",
        "..%2F..%2Fsecret.key",
        "..%2F..%2Ftokens.json",
        "%2E%2E%2F%2E%2E%2Ftokens.json",
        "..%5C..%5Ctokens.json",
        "....%2F%2F....%2F%2Ftokens.json",
        "%2Fetc%2Fpasswd",
        "%2F" + "%2F".join(str(stack.home / "tokens.json").strip("/").split("/")),
        "/etc/passwd",
        "../../../../../../etc/passwd",
        f"{world.b_artifact}%00.txt",
        f"..%2F{world.b_done}%2F{world.b_artifact}",
        "not-in-the-manifest.json",
        "report.html",
        ".",
        "..",
        "%2E%2E",
    ]
    for trick in tricks:
        status, ctype, content = _raw_get(stack, f"{base}/{trick}", b.token)
        assert status == 404, (trick, status, content[:200])
        assert ctype.split(";")[0] == PROBLEM, (trick, ctype)
        assert secret_key not in content and tokens_file[:40] not in content, trick
        assert b"root:" not in content, trick
    # B's artifact under A's job path, and A's token on B's artifact path: 404 too
    a_base = f"/api/{world.a.tenant}/{world.a.project}/execution/job"
    status, _, _ = _raw_get(
        stack, f"{a_base}/{world.a_queued}/artifacts/{world.b_artifact}", world.a.token
    )
    assert status == 404
    status, _, _ = _raw_get(stack, f"{base}/{world.b_artifact}", world.a.token)
    assert status == 404
