"""Faults on the job side, for real: nodes and job processes killed, cancel storms, a full or
unwritable artifact store, jobs that ignore their timeout. Nothing accepted may be lost or
left Running/Cancelling, and every job ends in exactly one final state."""

from __future__ import annotations

import json
import resource
import shutil
import signal
import threading
import time
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import Api, poll
from tests.faults.conftest import FaultStack, alive, finished, wait_job

pytestmark = pytest.mark.faults


def _running(api: Api, faults: FaultStack, seconds: float = 120, name: str = "long") -> str:
    job = api.submit(wait_job(seconds, name))
    api.wait(job["jobId"], {"Running"}, timeout=120)
    return job["jobId"]


def _retry_completes(api: Api, job_id: str) -> None:
    r = api.post(
        f"/execution/job/{job_id}/retry",
        json={"modifyParameters": True, "updatedParameters": {"delaySeconds": 0.1}},
    )
    assert r.status_code == 200, r.text
    assert finished(api, r.json()["jobId"])["status"] == "Completed"


def _node_back(faults: FaultStack, old_pid: int) -> None:
    faults.wait_restarted("node-1", old_pid)
    faults.wait_healthy()


def test_node_killed_while_a_job_runs(faults: FaultStack, api: Api) -> None:
    job_id = _running(api, faults)
    job_pid = faults.job_pid(job_id)
    node_pid = faults.kill("node-1")
    t0 = time.monotonic()
    final = finished(api, job_id, timeout=90)
    print(f"node loss detected after {time.monotonic() - t0:.1f} s")
    assert final["status"] == "Failed", final
    assert final["error"] == "crashed: node lost", final
    poll(lambda: alive(job_pid), lambda up: not up, 15)  # no orphan keeps running it
    faults.assert_one_final_state(job_id)
    _node_back(faults, node_pid)
    _retry_completes(api, job_id)


@pytest.mark.parametrize("oom_like", [False, True], ids=["sigkill", "oom-like"])
def test_job_process_killed(faults: FaultStack, api: Api, oom_like: bool) -> None:
    """SIGKILL from outside; "OOM-like" first freezes the process (SIGSTOP) so not even its
    watcher thread can report anything before the kernel's SIGKILL."""
    job_id = _running(api, faults)
    pid = faults.job_pid(job_id)
    if oom_like:
        psutil.Process(pid).send_signal(signal.SIGSTOP)
        time.sleep(2)
    t0 = time.monotonic()
    psutil.Process(pid).kill()
    final = finished(api, job_id, timeout=90)
    print(f"killed job process detected after {time.monotonic() - t0:.1f} s")
    assert final["status"] == "Failed", final
    assert final["error"].startswith("crashed: "), final
    faults.assert_one_final_state(job_id)
    _retry_completes(api, job_id)


def test_cancel_storm_on_a_running_job(faults: FaultStack, api: Api) -> None:
    job_id = _running(api, faults)
    answers: list[int] = []
    barrier = threading.Barrier(20)

    def cancel(i: int) -> None:
        with httpx.Client(headers=api.http.headers, timeout=60) as http:
            barrier.wait()
            r = http.request(
                "DELETE",
                f"{api.base}/execution/job/{job_id}",
                json={"reason": f"storm {i}", "forceTermination": i % 2 == 0},
            )
            answers.append(r.status_code)

    threads = [threading.Thread(target=cancel, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 20 and set(answers) <= {200, 409}, answers
    final = finished(api, job_id, timeout=90)
    assert final["status"] == "Cancelled", final
    faults.assert_one_final_state(job_id)


@pytest.mark.parametrize("delay", [0.0, 0.1, 0.2, 0.35, 1.0, 2.5, 4.0])
def test_cancel_during_start_up(faults: FaultStack, api: Api, delay: float) -> None:
    """A cancel while the node takes the run (Pending) or starts its process must end the run
    Cancelled for good: the starting process must not report Running after it."""
    job_id = api.submit(wait_job(60, f"cancel after {delay}s"))["jobId"]
    time.sleep(delay)
    r = api.delete(f"/execution/job/{job_id}", json={"forceTermination": delay >= 2.5})
    assert r.status_code in (200, 409), r.text
    final = finished(api, job_id, timeout=90)
    assert final["status"] == "Cancelled", final
    faults.assert_one_final_state(job_id)


def test_cancel_a_job_whose_node_just_died(faults: FaultStack, api: Api) -> None:
    job_id = _running(api, faults)
    job_pid = faults.job_pid(job_id)
    node_pid = faults.kill("node-1")
    r = api.delete(f"/execution/job/{job_id}", json={"forceTermination": True})
    assert r.status_code in (200, 409), r.text
    final = finished(api, job_id, timeout=90)
    assert final["status"] in ("Cancelled", "Failed"), final
    faults.assert_one_final_state(job_id)
    poll(lambda: alive(job_pid), lambda up: not up, 15)
    _node_back(faults, node_pid)


def _fill_disk(faults: FaultStack, job_id: str) -> None:
    """Writes past 1 KiB fail with EFBIG, as on a full disk (works for root too)."""
    psutil.Process(faults.job_pid(job_id)).rlimit(resource.RLIMIT_FSIZE, (1024, 1024))


def _break_artifact_folder(faults: FaultStack, job_id: str) -> None:
    """The job's artifact folder becomes a file: every write fails (works for root too)."""
    folder = faults.stack.home / "artifacts" / job_id
    poll(folder.is_dir, bool, 60)
    shutil.rmtree(folder)
    folder.write_text("not a folder")


@pytest.mark.parametrize(
    ("breaker", "reason"),
    [(_fill_disk, "File too large"), (_break_artifact_folder, "File exists")],
    ids=["disk-full", "artifact-folder-unwritable"],
)
def test_artifact_store_fails_during_a_job(
    faults: FaultStack, api: Api, breaker: Any, reason: str
) -> None:
    dataset = api.upload("receipt.csv")
    job = api.submit(
        {
            "jobName": "store breaks",
            "jobType": "Analysis",
            "parameters": {"datasetId": dataset["datasetId"], "delaySeconds": 6},
        }
    )
    api.wait(job["jobId"], {"Running"}, timeout=120)
    breaker(faults, job["jobId"])
    final = finished(api, job["jobId"])
    assert final["status"] == "Failed", final
    assert reason in final["error"] and "Could not write" in final["error"], final
    assert api.get(f"/execution/job/{job['jobId']}/results").status_code == 409
    for name in ("analysis.html", "kpis.json", "cases.csv", "manifest.json"):
        got = api.get(f"/execution/job/{job['jobId']}/artifacts/{name}")
        assert got.status_code in (404, 409), (name, got.status_code)
    folder = faults.stack.home / "artifacts" / job["jobId"]
    left = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    assert left == [], f"half-written or orphaned files left: {left}"
    faults.assert_one_final_state(job["jobId"])


STUBBORN = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "stubborn",
            "metadata": {},
            "outputs": [],
            "source": (
                "import signal, time\n"
                "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "time.sleep(600)  # in C, deaf to interrupts"
            ),
        }
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "nbformat": 4,
    "nbformat_minor": 5,
}


def _stubborn_job(api: Api, **extra: Any) -> tuple[str, str]:
    r = api.post("/notebooks", files={"file": ("stubborn.ipynb", json.dumps(STUBBORN).encode())})
    assert r.status_code == 201, r.text
    job = api.submit(
        {
            "jobName": "stubborn notebook",
            "jobType": "Notebook",
            "parameters": {"notebookId": r.json()["notebookId"]},
            **extra,
        }
    )
    return job["jobId"], api.submit(wait_job(0.1, "next in line"))["jobId"]


def _its_processes(faults: FaultStack, api: Api, job_id: str) -> list[int]:
    """The job's process and the notebook kernel it started, once the cell runs."""
    api.wait(job_id, {"Running"}, timeout=120)
    poll(
        lambda: api.job(job_id)["progress"]["currentStage"],
        lambda s: s == "Running notebook",
        120,
    )
    pid = faults.job_pid(job_id)
    family = poll(
        lambda: [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))],
        lambda pids: len(pids) > 1,
        60,
    )
    time.sleep(1)  # the cell is running
    return family


def test_job_ignoring_its_timeout_is_killed_and_frees_its_slot(
    faults: FaultStack, api: Api
) -> None:
    job_id, next_id = _stubborn_job(api, scheduling={"timeoutMinutes": 0.4})
    family = _its_processes(faults, api, job_id)
    final = finished(api, job_id, timeout=180)
    assert final["status"] == "Failed" and final["state"] == "TimedOut", final.get("error")
    assert finished(api, next_id)["status"] == "Completed"
    for pid in family:
        poll(lambda pid=pid: alive(pid), lambda up: not up, 30)
    faults.assert_one_final_state(job_id)


def test_job_ignoring_a_cancel_is_killed_and_frees_its_slot(faults: FaultStack, api: Api) -> None:
    job_id, next_id = _stubborn_job(api)
    family = _its_processes(faults, api, job_id)
    r = api.delete(f"/execution/job/{job_id}", json={"reason": "stop it"})
    assert r.status_code == 200, r.text
    final = finished(api, job_id, timeout=180)
    assert final["status"] == "Cancelled", final
    assert finished(api, next_id)["status"] == "Completed"
    for pid in family:
        poll(lambda pid=pid: alive(pid), lambda up: not up, 30)
    faults.assert_one_final_state(job_id)
