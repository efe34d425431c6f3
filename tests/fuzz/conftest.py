"""A project with real objects for the fuzzer to find: a dataset, a notebook, a completed job
with outputs, a failed job and a queued one. Whatever the fuzzer leaves queued or running is
cancelled when the module ends, so the capacity-1 test node is free for the next suite."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import Api, Stack, new_tenant

TINY = (
    b"case:concept:name,concept:name,time:timestamp,org:resource\n"
    b"c1,a,2024-01-01T00:00:00Z,r1\nc1,b,2024-01-01T01:00:00Z,r2\n"
    b"c2,a,2024-01-02T00:00:00Z,r1\nc2,c,2024-01-02T03:00:00Z,r2\n"
)
FAR_FUTURE = datetime(2099, 1, 1, tzinfo=UTC)


@dataclass
class FuzzWorld:
    """The ids the fuzzer should hit now and then, besides the random ones it makes up."""

    api: Api
    dataset_id: str
    notebook_id: str
    completed_job: str
    failed_job: str
    queued_job: str
    artifact_names: list[str] = field(default_factory=list)

    @property
    def job_ids(self) -> list[str]:
        return [self.completed_job, self.failed_job, self.queued_job]


def _notebook() -> bytes:
    nb = new_notebook(cells=[new_code_cell("x = 1", metadata={"tags": ["parameters"]})])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nbformat.writes(nb).encode()


def cancel_leftovers(api: Api) -> int:
    """Cancel every queued or running job of the project (the fuzzer's submissions and retries)."""
    cancelled = 0
    for status in ("Queued", "Running"):
        for _ in range(50):  # pages of 100; each pass cancels what it lists
            listed = api.get("/execution/jobs", params={"status": status, "pageSize": 100})
            assert listed.status_code == 200, listed.text
            jobs = listed.json()["jobs"]
            if not jobs:
                break
            for job in jobs:
                r = api.delete(f"/execution/job/{job['jobId']}", json={"forceTermination": True})
                assert r.status_code in (200, 409), r.text  # 409: it finished meanwhile
                cancelled += 1
    return cancelled


@pytest.fixture(scope="module")
def fuzz_world(stack: Stack) -> Iterator[FuzzWorld]:
    api = new_tenant(stack, user="fuzzer")
    r = api.post("/datasets", files={"file": ("tiny.csv", TINY)})
    assert r.status_code == 201, r.text
    dataset_id = r.json()["datasetId"]
    r = api.post("/notebooks", files={"file": ("fuzz.ipynb", _notebook())})
    assert r.status_code == 201, r.text
    notebook_id = r.json()["notebookId"]

    completed = api.submit(
        {
            "jobName": "fuzz completed",
            "jobType": "Analysis",
            "priority": "Critical",
            "parameters": {"datasetId": dataset_id},
        }
    )["jobId"]
    failed = api.submit(
        {
            "jobName": "fuzz failed",
            "jobType": "Analysis",
            "priority": "Critical",
            "parameters": {"delaySeconds": 30},
            "scheduling": {"timeoutMinutes": 0.02},
        }
    )["jobId"]
    queued = api.submit(
        {
            "jobName": "fuzz queued",
            "jobType": "Analysis",
            "scheduling": {"executeImmediately": False, "scheduledTime": FAR_FUTURE.isoformat()},
        }
    )["jobId"]
    assert api.wait(completed, timeout=300)["status"] == "Completed"
    assert api.wait(failed, timeout=300)["status"] == "Failed"
    results = api.get(f"/execution/job/{completed}/results").json()["results"]
    names = [results["primaryOutput"]["name"]] + [o["name"] for o in results["additionalOutputs"]]
    world = FuzzWorld(api, dataset_id, notebook_id, completed, failed, queued, names)
    try:
        yield world
    finally:
        cancel_leftovers(api)
