"""Schemathesis fuzzes every operation of the OpenAPI document against the real running stack.

Every response must be: not a 5xx; for a 4xx, ``application/problem+json`` with a title, the
status and a human detail; a documented status with the documented content type; and, where the
document describes it, a body that fits the schema. Each operation gets schemathesis' coverage
cases (boundaries, wrong types, missing fields) and ``PMJOBS_FUZZ_EXAMPLES`` random cases
(positive and negative); the module asserts how many requests it sent in all.

Getting past the 404 wall: most generated cases use the fixture's real tenant and project (a
random tenant is a plain 404), and job, dataset, notebook and artifact ids are now and then
real ones (a completed job with outputs, a failed one, a queued one), so results, downloads,
cancel, retry and priority changes are exercised on real objects, not only on unknown ids.

Heavy jobs: every generated submission whose ``scheduling`` is an object (or absent) gets
``executeImmediately=false`` and a ``scheduledTime`` in 2099, keeping everything else it asked
for, and a retry's ``Idempotency-Key`` is pinned to one value; so the only runs the fuzzer can
start are retries of the failed fixture job (at most two: without and with a key). The fixture
cancels whatever the fuzzer left queued or running when the module ends. This steering runs in
the test itself, not in generation hooks, because schemathesis' coverage phase skips those.

The schema is taken from the app in-process (checked equal to the served one) so the tests are
generated at collection time: the lazy ``from_fixture`` loader of schemathesis 4.32.5 breaks on
pytest 9.2 (``Function._nodeid``). Framing headers (Content-Length...) the fuzzer makes up are
dropped: uvicorn refuses those itself, before the app (test_hostile_requests covers that).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckContext
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.main import app
from tests.conftest import Stack
from tests.fuzz.conftest import FAR_FUTURE, FuzzWorld

pytestmark = pytest.mark.fuzz

# Random cases per operation (the coverage phase adds its own deterministic cases on top).
EXAMPLES = int(os.environ.get("PMJOBS_FUZZ_EXAMPLES", "75"))
MIN_CASES = 2000
PROBLEM = "application/problem+json"


@dataclass
class Tally:
    """What the fuzzer sent and got, over the whole module."""

    cases: int = 0
    by_operation: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)

    def add(self, label: str, status: int) -> None:
        self.cases += 1
        self.by_operation[label] += 1
        self.statuses[status] += 1


TALLY = Tally()


@dataclass
class Target:
    """Where the fuzzer sends its cases; filled by the ``target`` fixture before the first case."""

    url: str = ""
    world: FuzzWorld | None = None


TARGET = Target()

# The document the running API serves is the one of this code (checked below), so the tests can
# be generated at collection time, before the stack is up.
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(app.openapi())))


def _roller(case: schemathesis.Case) -> random.Random:
    """Random numbers fixed by the generated case, so a steered case replays the same."""
    generated = (case.path_parameters, case.query, case.headers, case.body, case.media_type)
    return random.Random(f"{case.operation.label}|{generated!r}")


_FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade"}


def steer(case: schemathesis.Case, world: FuzzWorld) -> None:
    """Point most cases at real objects, and keep generated jobs off the node (module doc).

    Done here rather than in generation hooks because schemathesis' coverage phase does not
    run those hooks, and its cases must not start real jobs either.
    """
    api, params, roll = world.api, case.path_parameters, _roller(case)
    meta = case.meta
    if isinstance(case.headers, dict):
        # framing headers belong to the HTTP server (h11 answers a bad Content-Length itself,
        # in plain text, before the app); test_hostile_requests covers server-level refusals
        for name in [n for n in case.headers if n.lower() in _FRAMING]:
            del case.headers[name]
    if not schema.is_security_param_negated(case):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {api.token}"}
    # a path generated to be invalid stays invalid (it must be refused, 404 or 422)
    if isinstance(params, dict) and not (meta and meta.is_negative_at(ParameterLocation.PATH)):
        choices: dict[str, list[str]] = {
            "tenant_id": [api.tenant] * 9,
            "project_id": [api.project] * 9,
            "job_id": [*world.job_ids],
            "dataset_id": [world.dataset_id],
            "notebook_id": [world.notebook_id],
            "name": [*world.artifact_names, "manifest.json"],
        }
        for name in list(params):
            real = choices.get(name)
            if real:
                pick = roll.randrange(len(real) + 1)
                if pick < len(real):  # the last slot keeps the generated value
                    params[name] = real[pick]
    method, path = case.operation.method.upper(), case.operation.path
    if method == "POST" and path.endswith("/execution/job") and isinstance(case.body, dict):
        defer(case.body)
    if method == "POST" and path.endswith("/retry") and isinstance(case.headers, dict):
        key = case.headers.get("Idempotency-Key")
        if isinstance(key, str) and len(key) <= 200:
            case.headers["Idempotency-Key"] = "fuzz-retry"


def defer(body: dict[str, Any]) -> None:
    """A submission that would start now starts in 2099 instead; an invalid one stays invalid."""
    scheduling = body.get("scheduling", {})
    if isinstance(scheduling, dict):
        body["scheduling"] = {
            **scheduling,
            "executeImmediately": False,
            "scheduledTime": FAR_FUTURE.isoformat(),
        }


@schemathesis.check
def problem_json_errors(ctx: CheckContext, response: schemathesis.Response, case: Any) -> None:
    """Every 4xx is a problem document a person can read."""
    if not 400 <= response.status_code < 500:
        return
    ctype = response.headers.get("content-type", [""])
    ctype = (ctype[0] if isinstance(ctype, list) else ctype).split(";")[0].strip()
    assert ctype == PROBLEM, f"{response.status_code} with content-type {ctype!r}, not {PROBLEM}"
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("status") == response.status_code, body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body


@pytest.fixture(scope="module")
def target(stack: Stack, fuzz_world: FuzzWorld) -> Target:
    TARGET.url = stack.url
    TARGET.world = fuzz_world
    return TARGET


def test_served_schema_is_the_fuzzed_one(target: Target) -> None:
    served = httpx.get(f"{target.url}/openapi.json", timeout=60)
    assert served.status_code == 200
    assert served.json() == schema.raw_schema


def _call(case: schemathesis.Case) -> schemathesis.Response:
    """Send the case; wait out a 429 (the token's rate limit) instead of counting it."""
    for _ in range(20):
        response = case.call(base_url=TARGET.url, timeout=60)
        if response.status_code != 429:
            return response
        time.sleep(min(float(response.headers.get("retry-after", ["1"])[0]), 10.0))
    return response


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
@schema.parametrize()
def test_openapi_fuzz(case: schemathesis.Case, target: Target) -> None:
    assert target.world is not None
    steer(case, target.world)
    response = _call(case)
    TALLY.add(case.operation.label, response.status_code)
    case.validate_response(
        response,
        additional_checks=[problem_json_errors],
        # A schema-valid body can still name a dataset that does not exist: a 422 is right.
        excluded_checks=[positive_data_acceptance],
    )


def test_fuzzer_sent_enough_cases() -> None:
    """Runs after the fuzz test (file order): every operation was fuzzed, and enough."""
    operations = {r.ok().label for r in schema.get_all_operations() if isinstance(r, Ok)}
    print(
        f"\nfuzz: {TALLY.cases} requests; per operation {dict(TALLY.by_operation)}; "
        f"statuses {dict(sorted(TALLY.statuses.items()))}"
    )
    assert operations and not operations - set(TALLY.by_operation), operations - set(
        TALLY.by_operation
    )
    assert TALLY.cases >= MIN_CASES, (TALLY.cases, dict(TALLY.by_operation))
