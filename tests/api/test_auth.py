"""Token lifecycle, scopes and rate limits over HTTP on the real stack.

Expiry and revocation answer 401 saying why; a revocation made with the CLI holds on the
running API's next request. A ``read`` token can look but not change (403 naming the missing
scope, after the tenant wall). Each token has a request budget (429 with Retry-After). And no
token ever reaches a file the stack writes, uvicorn's access log included.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from api.auth.tokens import TokenStore
from tests.conftest import ROOT, Api, Stack, free_port, poll

PROBLEM = "application/problem+json"
TINY_CSV = (
    b"case:concept:name,concept:name,time:timestamp\n"
    b"c1,a,2024-01-01T00:00:00Z\nc1,b,2024-01-01T01:00:00Z\n"
)
SCOPE_KEY = "x-pmjobs-scope"


def cli(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "executors.cli", "token", *args],
        env=stack.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
    )


def create_token(stack: Stack, tenant: str, user: str, *options: str) -> str:
    out = cli(stack, "create", "--tenant", tenant, "--user", user, *options)
    return out.stdout.strip().splitlines()[-1]


def listing(stack: Stack) -> list[dict[str, Any]]:
    return json.loads(cli(stack, "list", "--json").stdout)


def token_id(stack: Stack, token: str, user: str) -> str:
    (entry,) = [t for t in listing(stack) if t["user"] == user and t["last4"] == token[-4:]]
    return entry["tokenId"]


def assert_problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == PROBLEM, r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"], body
    return body


def notebook_bytes() -> bytes:
    return nbformat.writes(new_notebook(cells=[new_code_cell("x = 1")])).encode()


def _later() -> str:
    return (datetime.now(UTC) + timedelta(hours=2)).isoformat()


@dataclass
class Project:
    """One tenant and project with a write token, a read token and an object of each kind."""

    writer: Api
    reader: Api
    reader_token: str
    dataset: str
    notebook: str
    job: str
    job_name: str


@pytest.fixture(scope="module")
def project(stack: Stack) -> Iterator[Project]:
    tenant, proj = str(uuid.uuid4()), str(uuid.uuid4())
    writer = Api(stack, tenant, proj, create_token(stack, tenant, "writer", "--project", proj))
    reader_token = create_token(stack, tenant, "reader", "--project", proj, "--scope", "read")
    reader = Api(stack, tenant, proj, reader_token)
    dataset = writer.post("/datasets", files={"file": ("tiny.csv", TINY_CSV)})
    assert dataset.status_code == 201, dataset.text
    notebook = writer.post("/notebooks", files={"file": ("nb.ipynb", notebook_bytes())})
    assert notebook.status_code == 201, notebook.text
    name = f"scoped-{uuid.uuid4().hex[:8]}"
    job = writer.submit(
        {
            "jobName": name,
            "jobType": "Analysis",
            "priority": "Low",
            "scheduling": {"executeImmediately": False, "scheduledTime": _later()},
        }
    )
    yield Project(
        writer,
        reader,
        reader_token,
        dataset.json()["datasetId"],
        notebook.json()["notebookId"],
        job["jobId"],
        name,
    )
    writer.delete(f"/execution/job/{job['jobId']}")


def _operations(stack: Stack) -> list[tuple[str, str, str | None]]:
    schema = httpx.get(f"{stack.url}/openapi.json", timeout=30).json()
    return [
        (method.upper(), path, op.get(SCOPE_KEY))
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    ]


def _request_for(p: Project, method: str, path: str) -> tuple[str, dict[str, Any]]:
    """A URL of the project for an operation of the schema, and a body that would succeed."""
    api = p.writer
    values = {
        "tenant_id": api.tenant,
        "project_id": api.project,
        "job_id": p.job,
        "dataset_id": p.dataset,
        "notebook_id": p.notebook,
        "name": "kpis.json",
    }
    url = api.stack.url + path.format(**values)
    kw: dict[str, Any] = {}
    if path.endswith("/datasets") and method == "POST":
        kw["files"] = {"file": ("tiny.csv", TINY_CSV)}
    elif path.endswith("/notebooks") and method == "POST":
        kw["files"] = {"file": ("nb.ipynb", notebook_bytes())}
    elif path.endswith("/execution/job") and method == "POST":
        kw["json"] = {
            "jobName": "read-token-submit",
            "jobType": "Analysis",
            "parameters": {"datasetId": p.dataset},
            "resource": {"resourceType": "Pipeline", "resourceId": api.pipeline_id("Analysis")},
            "scheduling": {"executeImmediately": False, "scheduledTime": _later()},
        }
    elif method == "PATCH":
        kw["json"] = {"priority": "Critical"}
    elif method == "DELETE":
        kw["json"] = {"reason": "read token", "forceTermination": True}
    elif path.endswith("/retry"):
        kw["json"] = {}
    return url, kw


# -- scopes ------------------------------------------------------------------------------------


def test_a_read_token_cannot_change_anything(stack: Stack, project: Project) -> None:
    writes = [(m, path) for m, path, scope in _operations(stack) if scope == "write"]
    # submit (and so run a pipeline), cancel, re-prioritise, retry, upload dataset and notebook
    assert len(writes) >= 6, writes
    for method, path in writes:
        url, kw = _request_for(project, method, path)
        body = assert_problem(project.reader.http.request(method, url, **kw), 403)
        assert body["requiredScope"] == "write" and body["grantedScopes"] == ["read"], body
        assert "'write' scope" in body["detail"] and "--scope write" in body["detail"], body
    # nothing changed behind the 403s
    w = project.writer
    job = w.job(project.job)
    assert (job["status"], job["priority"]) == ("Queued", "Low")
    assert [j["jobId"] for j in w.get("/execution/jobs").json()["jobs"]] == [project.job]
    assert w.get("/datasets").json()["totalCount"] == 1
    assert w.get("/notebooks").json()["totalCount"] == 1


def test_the_write_token_can_do_what_the_read_token_could_not(
    stack: Stack, project: Project
) -> None:
    """Control for the 403s: the same requests are accepted with the write token."""
    w = project.writer
    url, kw = _request_for(project, "POST", "/api/{tenant_id}/{project_id}/execution/job")
    submitted = w.http.post(url, **kw)
    assert submitted.status_code == 201, submitted.text
    new = submitted.json()["jobId"]
    url, kw = _request_for(project, "PATCH", "/api/{tenant_id}/{project_id}/execution/job/{job_id}")
    assert w.http.patch(url.replace(project.job, new), **kw).json()["priority"] == "Critical"
    assert w.delete(f"/execution/job/{new}").json()["status"] == "Cancelled"


def test_a_read_token_reads(stack: Stack, project: Project) -> None:
    reads = [(m, path) for m, path, scope in _operations(stack) if scope == "read"]
    assert len(reads) >= 10, reads
    for method, path in reads:
        url, kw = _request_for(project, method, path)
        r = project.reader.http.request(method, url, **kw)
        if path.endswith(("/results", "/artifacts/{name}")):
            assert r.status_code in (404, 409), (path, r.text)  # the job has not run yet
            assert "scope" not in r.text
        else:
            assert r.status_code == 200, (path, r.text)
    assert project.reader.job(project.job)["jobName"] == project.job_name


def test_the_tenant_wall_comes_before_the_scope(stack: Stack, project: Project) -> None:
    """A read token on another tenant's path: 404 like an unknown tenant, never 403."""
    other = f"{stack.url}/api/{uuid.uuid4()}/{uuid.uuid4()}"
    for method, path, scope in _operations(stack):
        if scope != "write":
            continue
        url, kw = _request_for(project, method, path)
        url = url.replace(
            f"{stack.url}/api/{project.writer.tenant}/{project.writer.project}", other
        )
        body = assert_problem(project.reader.http.request(method, url, **kw), 404)
        assert "scope" not in body["detail"]


# -- expiry, revocation, listing ---------------------------------------------------------------


def test_expiring_token_works_and_is_listed_with_its_expiry(stack: Stack) -> None:
    tenant, proj = str(uuid.uuid4()), str(uuid.uuid4())
    token = create_token(stack, tenant, "month", "--expires-in", "30d")
    api = Api(stack, tenant, proj, token)
    assert api.get("/execution/jobs").status_code == 200
    (entry,) = [t for t in listing(stack) if t["tenant"] == tenant]
    expires = datetime.fromisoformat(entry["expires"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    refused = cli(
        stack,
        "create",
        "--tenant",
        tenant,
        "--user",
        "x",
        "--expires-at",
        "2001-01-01",
        check=False,
    )
    assert refused.returncode != 0 and "in the past" in refused.stderr, refused


def test_expired_token_is_401_saying_so(stack: Stack) -> None:
    tenant, proj = str(uuid.uuid4()), str(uuid.uuid4())
    # written the way the CLI writes, with a date the CLI would refuse: already over
    token = TokenStore(stack.home).create(
        tenant, "late", expires_at=datetime.now(UTC) - timedelta(minutes=1)
    )
    api = Api(stack, tenant, proj, token)
    r = api.get("/execution/jobs")
    body = assert_problem(r, 401)
    assert "expired on" in body["detail"] and "pmjobs token create" in body["detail"], body
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    assert token not in r.text


def test_revocation_holds_on_the_next_request(stack: Stack) -> None:
    tenant, proj = str(uuid.uuid4()), str(uuid.uuid4())
    by_id = Api(stack, tenant, proj, create_token(stack, tenant, "revoke-by-id"))
    by_token = Api(stack, tenant, proj, create_token(stack, tenant, "revoke-by-token"))
    keeper = Api(stack, tenant, proj, create_token(stack, tenant, "keeper"))
    for api in (by_id, by_token, keeper):
        assert api.get("/execution/jobs").status_code == 200
    ident = token_id(stack, by_id.token, "revoke-by-id")
    out = cli(stack, "revoke", ident)
    assert ident in out.stdout
    cli(stack, "revoke", by_token.token)
    for api in (by_id, by_token):  # the API was not restarted: the very next request is refused
        r = api.get("/execution/jobs")
        body = assert_problem(r, 401)
        assert "revoked" in body["detail"], body
        assert r.headers["www-authenticate"].lower().startswith("bearer")
    assert keeper.get("/execution/jobs").status_code == 200
    revoked = {t["user"]: t["revoked"] for t in listing(stack) if t["tenant"] == tenant}
    assert revoked["revoke-by-id"] and revoked["revoke-by-token"] and revoked["keeper"] is None
    unknown = cli(stack, "revoke", "0000ffff", check=False)
    assert unknown.returncode == 1 and "no token matches" in unknown.stderr


def test_token_list_shows_everything_but_the_tokens(stack: Stack, project: Project) -> None:
    tokens = [project.writer.token, project.reader_token]
    text = cli(stack, "list").stdout
    as_json = cli(stack, "list", "--json").stdout
    for token in tokens:
        assert token not in text and token not in as_json
        assert token[4:-4] not in text and token[4:-4] not in as_json
    entries = [t for t in json.loads(as_json) if t["tenant"] == project.writer.tenant]
    by_user = {t["user"]: t for t in entries}
    assert by_user["reader"]["scopes"] == ["read"]
    assert by_user["writer"]["scopes"] == ["read", "write"]
    assert by_user["reader"]["projects"] == [project.writer.project]
    assert by_user["reader"]["last4"] == project.reader_token[-4:]
    assert all(t["tokenId"] in text for t in entries)


# -- rate limits -------------------------------------------------------------------------------


def test_a_token_over_its_own_limit_gets_429(stack: Stack) -> None:
    tenant, proj = str(uuid.uuid4()), str(uuid.uuid4())
    slow = Api(stack, tenant, proj, create_token(stack, tenant, "slow", "--rate-limit", "1"))
    other = Api(stack, tenant, proj, create_token(stack, tenant, "other"))
    assert slow.get("/execution/jobs").status_code == 200
    r = slow.get("/execution/jobs")
    body = assert_problem(r, 429)
    assert 1 <= int(r.headers["retry-after"]) <= 60, r.headers
    assert body["retryAfterSeconds"] == int(r.headers["retry-after"])
    assert "1 a minute" in body["detail"], body
    assert other.get("/execution/jobs").status_code == 200


@dataclass
class OwnApi:
    url: str
    log: Path


@pytest.fixture(scope="module")
def own_api(stack: Stack) -> Iterator[OwnApi]:
    """A second API process on the stack's Prefect and home, with uvicorn's access log on and a
    low server-wide rate limit (each API process keeps its own buckets)."""
    port = free_port()
    log = stack.home / "logs" / "api-auth-test.log"
    env = {
        **stack.env,
        "PMJOBS_API_PORT": str(port),
        "PMJOBS_RATE_LIMIT_PER_MINUTE": "4",
        "PMJOBS_RATE_LIMIT_BURST": "2",
        "PREFECT_HOME": str(stack.home / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{stack.env['PMJOBS_PREFECT_PORT']}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "--log-level", "info"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"second API did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)
    try:
        yield OwnApi(url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_server_wide_limit_answers_429(stack: Stack, own_api: OwnApi) -> None:
    tenant, proj = str(uuid.uuid4()), str(uuid.uuid4())
    token = create_token(stack, tenant, "busy")
    base = f"{own_api.url}/api/{tenant}/{proj}/execution/jobs"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        assert [client.get(base).status_code for _ in range(2)] == [200, 200]  # the burst
        r = client.get(base)
        body = assert_problem(r, 429)
        assert 1 <= int(r.headers["retry-after"]) <= 15, r.headers  # 4 a minute: one per 15 s
        assert "4 a minute" in body["detail"] and "bursts of 2" in body["detail"], body
    # the stack's own API keeps its own, default budget for the same token
    assert (
        httpx.get(
            base.replace(own_api.url, stack.url), headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 200
    )


# -- tokens never logged -----------------------------------------------------------------------


def _files_under(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


def test_tokens_never_reach_a_log_or_any_file(
    stack: Stack, project: Project, own_api: OwnApi
) -> None:
    """Requests of every outcome with tokens, then every file the stack wrote is searched."""
    tenant, proj = project.writer.tenant, project.writer.project
    revoked = create_token(stack, tenant, "soon-revoked")
    cli(stack, "revoke", revoked)
    expired = TokenStore(stack.home).create(
        tenant, "expired", expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    limited = create_token(stack, tenant, "limited", "--rate-limit", "1")
    tokens = [project.writer.token, project.reader_token, revoked, expired, limited]
    marker = uuid.uuid4()
    for url in (stack.url, own_api.url):
        base = f"{url}/api/{tenant}/{proj}"
        for token in tokens:
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(headers=auth, timeout=60) as c:
                c.get(f"{base}/execution/jobs")  # 200, 401, 429
                c.get(f"{base}/execution/job/{marker}")  # 404
                c.post(f"{base}/execution/job", json={"jobName": 1})  # 422 or 403
                c.post(f"{base}/datasets", files={"file": ("x.csv", b"not,a\nlog")})
                c.request("DELETE", f"{base}/execution/job/{project.job}", content=b"{not json")
                c.get(f"{url}/api/{uuid.uuid4()}/execution/system/status")  # 404
        # a token mangled by a client, and one sent in the wrong scheme
        httpx.get(f"{base}/datasets", headers={"Authorization": f"Token {project.writer.token}"})
        httpx.get(f"{base}/datasets", headers={"Authorization": f"Bearer {expired}x"})
    # control: the access log is there and records the requests made above
    access_log = poll(
        lambda: own_api.log.read_text(errors="replace"),
        lambda text: f"/execution/job/{marker}" in text,
        timeout=30,
    )
    assert " 404" in access_log and " 401" in access_log and " 429" in access_log
    searched = 0
    needles = [t.encode() for t in tokens] + [t[4:-4].encode() for t in tokens]
    for path in [*_files_under(stack.home), stack.log]:
        data = path.read_bytes()
        searched += 1
        for needle in needles:
            assert needle not in data, f"a token was written to {path}"
    assert searched >= 5
    assert (stack.home / "logs").is_dir() and any((stack.home / "logs").glob("*.log"))
