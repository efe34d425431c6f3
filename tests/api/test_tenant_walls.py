"""Exhaustive tenant walls, generated from the app's own OpenAPI schema.

Tenant B gets real objects (a completed job with outputs, a queued job, a dataset, a notebook).
Tenant A's token then calls *every* operation whose path names a tenant, project or object:
with B's tenant and project in the path, with A's tenant and B's project, and with A's own path
and B's object ids. Each answer must be 404 problem+json identical (but for ``instance``) to
the answer for ids that exist nowhere, and no answer may carry B's names. A new endpoint is
probed without editing this file; a new kind of path id fails the test until it is taught here.
``tests/api/test_tenancy.py`` keeps the hand-written cases (artifact path tricks, 401s,
project-limited tokens); this file is the exhaustive sweep, listings, body-borne ids and the
Prefect internals.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import Api, Stack, new_tenant

PROBLEM = "application/problem+json"
OBJECT_PARAMS = ("job_id", "dataset_id", "notebook_id", "name")
PATH_PARAMS = {"tenant_id", "project_id", *OBJECT_PARAMS}
# what Prefect's own answers and errors look like; none may reach a tenant
PREFECT_TEXT = re.compile(
    r"exception_message|Traceback|PrefectHTTPStatusError|ObjectNotFound|for url '|"
    r"/api/flow_runs|/api/deployments|/api/work_pools|flow_run_id|deployment_id|"
    r"work_queue_id|state_id|sqlalchemy|sqlite3|asyncpg",
    re.IGNORECASE,
)


def _later(hours: int = 2) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).isoformat()


def _csv(marker: str) -> bytes:
    return (
        "case:concept:name,concept:name,time:timestamp,org:resource\n"
        f"c1,a,2024-01-01T00:00:00Z,{marker}\nc1,b,2024-01-01T01:00:00Z,{marker}\n"
    ).encode()


def _notebook() -> bytes:
    return nbformat.writes(new_notebook(cells=[new_code_cell("x = 1")])).encode()


def _upload(api: Api, what: str, filename: str, data: bytes) -> dict[str, Any]:
    r = api.post(f"/{what}", files={"file": (filename, data)})
    assert r.status_code == 201, r.text
    return r.json()


@dataclass
class World:
    a: Api
    b: Api
    b_done: str
    b_queued: str
    b_dataset: str
    b_notebook: str
    b_artifact: str
    b_idempotency_key: str
    a_queued: str
    a_dataset: str
    secrets: list[str] = field(default_factory=list)  # B's ids and names


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[World]:
    a, b = new_tenant(stack, "alice"), new_tenant(stack, "bob")
    marker = uuid.uuid4().hex[:10]
    names = {k: f"b-secret-{k}-{marker}" for k in ("done", "queued", "dataset", "notebook")}
    b_dataset = _upload(b, "datasets", f"{names['dataset']}.csv", _csv(marker))["datasetId"]
    b_notebook = _upload(b, "notebooks", f"{names['notebook']}.ipynb", _notebook())["notebookId"]
    done = b.submit(
        {
            "jobName": names["done"],
            "jobType": "Analysis",
            "priority": "Critical",
            "parameters": {"delaySeconds": 0},
        }
    )["jobId"]
    key = f"b-key-{marker}"
    queued = b.submit(
        {
            "jobName": names["queued"],
            "jobType": "Analysis",
            "priority": "Low",
            "parameters": {"datasetId": b_dataset},
            "scheduling": {"executeImmediately": False, "scheduledTime": _later()},
        },
        headers={"Idempotency-Key": key},
    )["jobId"]
    a_dataset = _upload(a, "datasets", "a.csv", _csv("a-own"))["datasetId"]
    _upload(a, "notebooks", "a.ipynb", _notebook())
    a_queued = a.submit(
        {
            "jobName": "a-own",
            "jobType": "Analysis",
            "scheduling": {"executeImmediately": False, "scheduledTime": _later()},
        }
    )["jobId"]
    final = b.wait(done, timeout=300)
    assert final["status"] == "Completed", final
    artifact = b.get(f"/execution/job/{done}/results").json()["results"]["primaryOutput"]["name"]
    w = World(a, b, done, queued, b_dataset, b_notebook, artifact, key, a_queued, a_dataset)
    w.secrets = [done, queued, b_dataset, b_notebook, marker, *names.values()]
    yield w
    b.delete(f"/execution/job/{queued}")
    a.delete(f"/execution/job/{a_queued}")


# -- the probe list, from the schema -----------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the template, e.g. /api/{tenant_id}/{project_id}/execution/job/{job_id}
    params: tuple[str, ...]
    multipart: bool
    json_body: bool
    query_enums: tuple[tuple[str, tuple[str, ...]], ...]

    @property
    def objects(self) -> tuple[str, ...]:
        return tuple(p for p in self.params if p in OBJECT_PARAMS)


def _enum(schema: dict[str, Any], components: dict[str, Any]) -> tuple[str, ...]:
    """The values of an enum parameter (inline, behind a $ref, or in an Optional's anyOf)."""
    for option in [schema, *schema.get("anyOf", [])]:
        if "$ref" in option:
            option = components[option["$ref"].rsplit("/", 1)[-1]]
        if "enum" in option:
            return tuple(option["enum"])
    return ()


def id_operations(schema: dict[str, Any]) -> list[Operation]:
    """Every operation whose path carries an id."""
    ops = []
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            params = op.get("parameters", [])
            in_path = tuple(p["name"] for p in params if p["in"] == "path")
            if not in_path:
                continue
            unknown = set(in_path) - PATH_PARAMS
            assert not unknown, f"{method} {path}: teach this test B's value for {unknown}"
            content = op.get("requestBody", {}).get("content", {})
            components = schema.get("components", {}).get("schemas", {})
            enums = tuple(
                (p["name"], values)
                for p in params
                if p["in"] == "query" and (values := _enum(p["schema"], components))
            )
            ops.append(
                Operation(
                    method.upper(),
                    path,
                    in_path,
                    "multipart/form-data" in content,
                    "application/json" in content,
                    enums,
                )
            )
    return ops


@dataclass(frozen=True)
class Probe:
    op: Operation
    kind: str  # "B path", "A tenant + B project", "A path + B ids"
    values: dict[str, str]  # path values with B's objects
    reference: dict[str, str]  # the same shape with ids that exist nowhere
    query: dict[str, str]


def _objects(w: World, op: Operation) -> Iterator[dict[str, str]]:
    """B's objects for the operation's ids; both of B's jobs (done and queued)."""
    jobs = [w.b_done, w.b_queued] if "job_id" in op.params else [""]
    for job in jobs:
        values = {
            "job_id": job,
            "dataset_id": w.b_dataset,
            "notebook_id": w.b_notebook,
            "name": w.b_artifact,
        }
        yield {k: v for k, v in values.items() if k in op.params}


def _unknown_objects(op: Operation, w: World) -> dict[str, str]:
    values = {k: str(uuid.uuid4()) for k in ("job_id", "dataset_id", "notebook_id")}
    values["name"] = w.b_artifact  # artifact names are not secrets; the job id is unknown
    return {k: v for k, v in values.items() if k in op.params}


def probes(w: World, ops: list[Operation]) -> list[Probe]:
    a, b = w.a, w.b
    nowhere_t, nowhere_p = str(uuid.uuid4()), str(uuid.uuid4())
    out = []
    for op in ops:
        has_project = "project_id" in op.params
        queries: list[dict[str, str]] = [{}]
        if op.objects:
            queries += [{name: v} for name, values in op.query_enums for v in values]
        for objects, query in itertools.product(_objects(w, op), queries):
            unknown = _unknown_objects(op, w)
            shape = {"tenant_id": b.tenant, **({"project_id": b.project} if has_project else {})}
            nowhere = {"tenant_id": nowhere_t, **({"project_id": nowhere_p} if has_project else {})}
            out.append(Probe(op, "B path", {**shape, **objects}, {**nowhere, **unknown}, query))
            if has_project:
                out.append(
                    Probe(
                        op,
                        "A tenant + B project",
                        {"tenant_id": a.tenant, "project_id": b.project, **objects},
                        {"tenant_id": a.tenant, "project_id": nowhere_p, **unknown},
                        query,
                    )
                )
            if op.objects:
                own = {"tenant_id": a.tenant, "project_id": a.project}
                out.append(
                    Probe(op, "A path + B ids", {**own, **objects}, {**own, **unknown}, query)
                )
    return out


def _request(w: World, op: Operation, values: dict[str, str]) -> dict[str, Any]:
    """A request that would succeed if the objects were the caller's own."""
    if op.multipart:
        data = _notebook() if op.path.endswith("/notebooks") else _csv("probe")
        name = "probe.ipynb" if op.path.endswith("/notebooks") else "probe.csv"
        return {"files": {"file": (name, data)}}
    if not op.json_body:
        return {}
    if op.method == "PATCH":
        return {"json": {"priority": "Critical"}}
    if op.method == "DELETE":
        return {"json": {"reason": "probe", "forceTermination": True}}
    if op.path.endswith("/retry"):
        return {"json": {"priority": "Critical"}}
    return {
        "json": {
            "jobName": "probe",
            "jobType": "Analysis",
            "parameters": {"datasetId": w.b_dataset},
        }
    }


def _comparable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "instance"}


def _check_problem(r: httpx.Response, status: int, what: str) -> dict[str, Any]:
    assert r.status_code == status, (what, r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == PROBLEM, (what, r.headers)
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"], (what, body)
    return body


def test_every_id_bearing_operation_is_404_for_another_tenant(stack: Stack, world: World) -> None:
    schema = httpx.get(f"{stack.url}/openapi.json", timeout=30).json()
    ops = id_operations(schema)
    assert len(ops) >= 16, [f"{o.method} {o.path}" for o in ops]
    todo = probes(world, ops)
    client = world.a.http
    references: dict[tuple[Any, ...], dict[str, Any]] = {}
    for probe in todo:
        op = probe.op
        url = stack.url + op.path.format(**probe.values)
        what = f"{probe.kind}: {op.method} {url} {probe.query}"
        r = client.request(op.method, url, params=probe.query, **_request(world, op, probe.values))
        got = _check_problem(r, 404, what)
        assert got["instance"] == httpx.URL(url).path, (what, got)
        for secret in world.secrets:
            assert secret not in repr(_comparable(got)), (what, secret, got)
        key = (op, probe.kind, tuple(probe.query.items()))
        if key not in references:
            ref_url = stack.url + op.path.format(**probe.reference)
            ref = client.request(
                op.method, ref_url, params=probe.query, **_request(world, op, probe.reference)
            )
            references[key] = _check_problem(ref, 404, f"reference of {what}")
        assert _comparable(got) == _comparable(references[key]), (what, got, references[key])
    probed = {(p.op.method, p.op.path) for p in todo}
    assert probed == {(o.method, o.path) for o in ops}
    print(f"\n{len(todo)} tenant-wall probes over {len(ops)} id-bearing operations")
    assert len(todo) >= len(ops)
    _assert_b_untouched(world)


def _assert_b_untouched(w: World) -> None:
    b = w.b
    jobs = b.get("/execution/jobs", params={"pageSize": 100}).json()["jobs"]
    assert {j["jobId"] for j in jobs} == {w.b_done, w.b_queued}
    queued = b.job(w.b_queued)
    assert (queued["status"], queued["priority"]) == ("Queued", "Low")
    done = b.job(w.b_done)
    assert done["status"] == "Completed" and done["retriedBy"] is None
    assert b.get("/datasets").json()["totalCount"] == 1
    assert b.get("/notebooks").json()["totalCount"] == 1
    assert b.get(f"/execution/job/{w.b_done}/artifacts/{w.b_artifact}").status_code == 200


def test_ids_of_b_in_request_bodies_look_unknown(stack: Stack, world: World) -> None:
    """A's own path, B's ids inside the body: refused exactly like ids that exist nowhere."""
    a = world.a
    random = str(uuid.uuid4())
    bodies = [
        {"jobType": "Analysis", "parameters": {"datasetId": "{id}"}},
        {"jobType": "ProcessMining", "parameters": {"datasetId": "{id}"}},
        {"jobType": "Notebook", "parameters": {"notebookId": "{id}"}},
        {
            "jobType": "DataEnrichment",
            "parameters": {
                "datasetId": world.a_dataset,
                "lookupDatasetId": "{id}",
                "lookupKey": "case:concept:name",
            },
        },
    ]
    for template in bodies:
        secret = world.b_notebook if template["jobType"] == "Notebook" else world.b_dataset

        def body(value: str, template: dict[str, Any] = template) -> dict[str, Any]:
            params = {k: (value if v == "{id}" else v) for k, v in template["parameters"].items()}
            return {"jobName": "probe", "jobType": template["jobType"], "parameters": params}

        got = _check_problem(a.post("/execution/job", json=body(secret)), 422, str(template))
        ref = _check_problem(a.post("/execution/job", json=body(random)), 422, str(template))
        assert got["detail"].replace(secret, "ID") == ref["detail"].replace(random, "ID")
        assert got.get("field") == ref.get("field")
    # B's Idempotency-Key does not hand A B's job: A gets a job of its own
    r = a.post(
        "/execution/job",
        json={
            "jobName": "same-key",
            "jobType": "Analysis",
            "scheduling": {"executeImmediately": False, "scheduledTime": _later()},
        },
        headers={"Idempotency-Key": world.b_idempotency_key},
    )
    assert r.status_code == 201, r.text
    mine = r.json()["jobId"]
    try:
        assert mine != world.b_queued
        for secret in world.secrets:
            assert secret not in r.text
    finally:
        a.delete(f"/execution/job/{mine}")
    _assert_b_untouched(world)


def test_no_listing_of_a_shows_b(stack: Stack, world: World) -> None:
    """Every collection A can read (from the schema: GETs without object ids), with filters."""
    schema = httpx.get(f"{stack.url}/openapi.json", timeout=30).json()
    a = world.a
    lists = [op for op in id_operations(schema) if op.method == "GET" and not op.objects]
    assert len(lists) >= 6, lists
    seen = 0
    for op in lists:
        url = stack.url + op.path.format(tenant_id=a.tenant, project_id=a.project)
        queries: list[dict[str, Any]] = [{}]
        queries += [{name: v} for name, values in op.query_enums for v in values]
        if op.path.endswith("/execution/jobs"):
            queries += [{"submittedBy": "bob"}, {"pageSize": 100}]
        for query in queries:
            r = a.http.get(url, params=query)
            assert r.status_code == 200, (url, query, r.text)
            seen += 1
            for secret in world.secrets:
                assert secret not in r.text, (url, query, secret)
    # controls: A sees its own, and B sees its own through the same endpoints
    queued = a.get("/execution/jobs", params={"status": "Queued"}).json()["jobs"]
    assert [j["jobId"] for j in queued] == [world.a_queued]
    assert [j["jobId"] for j in a.get("/execution/queue").json()["queuedJobs"]] == [world.a_queued]
    assert world.b_queued in world.b.get("/execution/queue").text
    assert world.b_notebook in world.b.get("/notebooks").text
    status = a.get(f"{stack.url}/api/{a.tenant}/execution/system/status").json()
    assert status["queueStatistics"]["totalQueuedJobs"] == 1
    assert status["performanceMetrics"]["jobsCompletedToday"] == 0
    print(f"\n{seen} listing probes")


# -- Prefect is not exposed --------------------------------------------------------------------


def _prefect(stack: Stack) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{stack.env['PMJOBS_PREFECT_PORT']}/api", timeout=30
    )


def _b_internals(stack: Stack, world: World) -> dict[str, str]:
    """Prefect's own ids behind B's jobs (read from Prefect directly, as an operator could)."""
    ids: dict[str, str] = {}
    with _prefect(stack) as prefect:
        for job in (world.b_done, world.b_queued):
            run = prefect.get(f"/flow_runs/{job}").json()
            for key in ("flow_id", "deployment_id", "work_queue_id", "state_id", "work_pool_id"):
                if run.get(key):
                    ids[f"{job}.{key}"] = run[key]
        flt = {"flow_runs": {"id": {"any_": [world.b_done]}}, "limit": 50}
        for kind in ("task_runs", "artifacts"):
            r = prefect.post(f"/{kind}/filter", json=flt)
            assert r.status_code == 200, r.text
            for i, item in enumerate(r.json()):
                ids[f"{kind}.{i}"] = item["id"]
    assert len(ids) >= 5, ids
    return ids


def test_prefect_internals_and_errors_never_reach_a_tenant(stack: Stack, world: World) -> None:
    """Prefect's ids behind B's jobs, used by A as any id, look unknown; and error answers
    (including ones Prefect itself fails on) carry pmjobs' words, not Prefect's."""
    a = world.a
    internals = _b_internals(stack, world)
    # flows, pipelines (deployments), queues and the pool serve every tenant; the rest is B's
    common = ("flow_id", "deployment_id", "work_queue_id", "work_pool_id")
    private = {v for k, v in internals.items() if not k.endswith(common)}
    assert private, internals
    bodies: list[tuple[str, httpx.Response]] = []
    for value in sorted(set(internals.values())):
        for path in (
            f"/execution/job/{value}",
            f"/execution/job/{value}/results",
            f"/execution/job/{value}/artifacts/{world.b_artifact}",
            f"/datasets/{value}",
            f"/notebooks/{value}",
        ):
            got = _check_problem(a.get(path), 404, path)
            ref = _check_problem(a.get(path.replace(value, str(uuid.uuid4()))), 404, path)
            assert _comparable(got) == _comparable(ref), (path, got, ref)
        for method, path, kw in (
            ("DELETE", f"/execution/job/{value}", {"json": {"forceTermination": True}}),
            ("POST", f"/execution/job/{value}/retry", {"json": {}}),
            ("PATCH", f"/execution/job/{value}", {"json": {"priority": "High"}}),
        ):
            _check_problem(a.http.request(method, a._url(path), **kw), 404, path)
    # error paths: engine failures, conflicts, invalid input, A naming Prefect objects
    a_done = a.submit(
        {
            "jobName": "a-done",
            "jobType": "Analysis",
            "priority": "Critical",
            "parameters": {"delaySeconds": 0},
        }
    )["jobId"]
    assert a.wait(a_done, timeout=300)["status"] == "Completed"
    deployment = next(v for k, v in internals.items() if k.endswith("deployment_id"))
    flow_run_as_pipeline = {
        "jobName": "x",
        "jobType": "Analysis",
        "resource": {"resourceType": "Pipeline", "resourceId": world.b_done},
    }
    requests = [
        # Prefect fails on this instant (year 1 at +14:00 is before year 1 in UTC)
        ("GET", "/execution/jobs", {"params": {"dateFrom": "0001-01-01T00:00:00+14:00"}}),
        ("GET", "/execution/jobs", {"params": {"dateTo": "9999-12-31T23:59:59-14:00"}}),
        ("PATCH", f"/execution/job/{a_done}", {"json": {"priority": "High"}}),
        ("DELETE", f"/execution/job/{a_done}", {}),
        ("POST", f"/execution/job/{a_done}/retry", {"json": {}}),
        ("GET", f"/execution/job/{deployment}", {}),
        ("POST", "/execution/job", {"json": flow_run_as_pipeline}),
        ("POST", "/execution/job", {"content": b"{not json", "headers": {"content-type": "x"}}),
        ("GET", "/execution/job/not-a-uuid", {}),
        ("GET", "/execution/jobs", {"params": {"status": "Scheduled"}}),
        ("PUT", "/execution/jobs", {}),
        ("GET", "/no/such/endpoint", {}),
    ]
    for method, path, kw in requests:
        r = a.http.request(method, a._url(path), **kw)
        assert r.status_code < 500 or r.status_code == 503, (method, path, r.text)
        if r.status_code >= 400:
            _check_problem(r, r.status_code, f"{method} {path}")
        bodies.append((f"{method} {path}", r))
    assert sum(r.status_code >= 400 for _, r in bodies) >= len(requests) - 2
    port = stack.env["PMJOBS_PREFECT_PORT"]
    for what, r in bodies:
        text = repr(_comparable(r.json())) if r.status_code >= 400 else r.text
        assert not PREFECT_TEXT.search(text), (what, text)
        assert f":{port}" not in text, (what, text)
        for value in private:
            assert value not in text, (what, value, text)
    _assert_b_untouched(world)
