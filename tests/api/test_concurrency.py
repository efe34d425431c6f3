"""The embedded default must serve one team: concurrent submits without lock errors.

Runs on whichever database the session's stack uses (SQLite by default, PostgreSQL in CI's
first pass; ``make test-sqlite`` runs it on SQLite).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from tests.conftest import Api, Stack, new_tenant

CLIENTS = 16
PER_CLIENT = 8


def test_concurrent_submits_and_cancels(stack: Stack) -> None:
    api = new_tenant(stack, "burst")
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    body = {
        "jobName": "burst",
        "jobType": "Analysis",
        "parameters": {"delaySeconds": 1},
        "scheduling": {"executeImmediately": False, "scheduledTime": later},
    }

    def submit_many(i: int) -> list[tuple[int, str]]:
        client = Api(stack, api.tenant, api.project, api.token)
        out = []
        for _ in range(PER_CLIENT):
            r = client.post("/execution/job", json=body)
            out.append((r.status_code, r.json().get("jobId", r.text)))
        return out

    t0 = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [r for batch in pool.map(submit_many, range(CLIENTS)) for r in batch]
    elapsed = time.monotonic() - t0
    failures = [r for r in results if r[0] != 201]
    assert not failures, failures[:5]
    ids = [job_id for _, job_id in results]
    assert len(set(ids)) == CLIENTS * PER_CLIENT
    print(
        f"{len(ids)} submits from {CLIENTS} clients in {elapsed:.1f} s ({len(ids) / elapsed:.1f}/s)"
    )

    listed = api.get("/execution/jobs", params={"status": "Queued", "pageSize": 100}).json()
    assert listed["summary"]["queuedJobs"] == len(ids)

    with ThreadPoolExecutor(CLIENTS) as pool:
        codes = list(pool.map(lambda j: api.delete(f"/execution/job/{j}").status_code, ids))
    assert codes.count(200) == len(ids), codes

    server_log = (stack.home / "logs" / "prefect-server.log").read_text(errors="replace")
    assert "database is locked" not in server_log
