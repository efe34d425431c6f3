"""The API and the Prefect server SIGKILLed while jobs run and wait; the supervisor restarts
them. Nothing accepted may be lost, a retried submit must not run twice, and while Prefect is
down the API answers 503 problem+json promptly, then recovers by itself. (PostgreSQL instead
of the embedded SQLite when PMJOBS_TEST_DATABASE_URL is set, as for every stack.)"""

from __future__ import annotations

import contextlib
import time
import uuid

import httpx
import pytest

from tests.conftest import Api, poll
from tests.faults.conftest import FaultStack, finished, wait_job

pytestmark = pytest.mark.faults


def _runs_with_key(faults: FaultStack, api: Api, key: str) -> list[str]:
    r = httpx.post(
        f"{faults.prefect_url}/flow_runs/filter",
        json={
            "flow_runs": {
                "idempotency_key": {"any_": [f"{api.tenant}/{api.project}/{key}"]},
            }
        },
        timeout=30,
    )
    r.raise_for_status()
    return [run["id"] for run in r.json()]


def test_api_restart_loses_nothing_and_retried_submits_run_once(
    faults: FaultStack, api: Api
) -> None:
    running = api.submit(wait_job(8, "running"))["jobId"]
    api.wait(running, {"Running"}, timeout=120)
    queued = [api.submit(wait_job(0.5, f"queued {i}"))["jobId"] for i in range(3)]

    # a submit whose answer the client never saw (it timed out), then the API dies
    key = str(uuid.uuid4())
    body = wait_job(0.5, "idempotent")
    with contextlib.suppress(httpx.TimeoutException):
        api.post("/execution/job", json=body, headers={"Idempotency-Key": key}, timeout=0.05)
    old = faults.kill("api")
    faults.wait_restarted("api", old)
    faults.wait_healthy()

    retried = api.post("/execution/job", json=body, headers={"Idempotency-Key": key})
    assert retried.status_code in (200, 201), retried.text
    again = api.post("/execution/job", json=body, headers={"Idempotency-Key": key})
    assert again.json()["jobId"] == retried.json()["jobId"]
    assert _runs_with_key(faults, api, key) == [retried.json()["jobId"]]

    for job_id in [running, *queued, retried.json()["jobId"]]:
        assert finished(api, job_id)["status"] == "Completed"
        faults.assert_one_final_state(job_id)


def test_prefect_restart_api_answers_503_then_recovers(faults: FaultStack, api: Api) -> None:
    running = api.submit(wait_job(20, "running through"))["jobId"]
    api.wait(running, {"Running"}, timeout=120)
    queued = [api.submit(wait_job(0.5, f"queued {i}"))["jobId"] for i in range(2)]

    old = faults.kill("prefect-server")
    answers: list[tuple[int, str, float]] = []

    def probe() -> int:
        t0 = time.monotonic()
        try:
            r = api.get(f"/execution/job/{running}", timeout=60)
        except httpx.TimeoutException:
            answers.append((0, "timeout", time.monotonic() - t0))
            return 0
        answers.append((r.status_code, r.headers.get("content-type", ""), time.monotonic() - t0))
        return r.status_code

    poll(probe, lambda code: code == 200 and len(answers) > 1, 240)
    print("answers while Prefect was down:", [(c, round(s, 1)) for c, _, s in answers])
    assert {c for c, _, _ in answers} <= {200, 503}, answers
    assert any(c == 503 for c, _, _ in answers), answers
    for code, media, _ in answers:
        if code == 503:
            assert media == "application/problem+json"
    faults.wait_restarted("prefect-server", old)
    faults.wait_healthy()

    final = finished(api, running, timeout=180)
    if final["status"] == "Failed":  # truthfully: only as a crash, never left Running
        assert final["error"].startswith("crashed: "), final
    else:
        assert final["status"] == "Completed", final
    for job_id in queued:
        assert finished(api, job_id)["status"] == "Completed"
    for job_id in [running, *queued]:
        faults.assert_one_final_state(job_id)
