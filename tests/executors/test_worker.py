"""pmjobs' worker on the real stack: runs forked from the node's fork server, cancel, crashes,
a killed node, slots; plus the pure parts (slot ledger, stop bookkeeping) on their own."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import prefect
import psutil
import pytest

from executors.slots import SlotLedger
from executors.starter import ForkedChild
from tests.conftest import Api, Stack, poll


def _wait_job(seconds: float, name: str = "wait") -> dict[str, Any]:
    return {
        "jobName": name,
        "jobType": "Analysis",
        "priority": "Normal",
        "parameters": {"delaySeconds": seconds},
    }


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _prefect(stack: Stack, path: str) -> Any:
    url = f"http://127.0.0.1:{stack.env['PMJOBS_PREFECT_PORT']}/api{path}"
    r = httpx.get(url, timeout=30)
    r.raise_for_status()
    return r.json()


def _state_types(stack: Stack, job_id: str) -> list[str]:
    states = _prefect(stack, f"/flow_run_states/?flow_run_id={job_id}")
    return [s["type"] for s in sorted(states, key=lambda s: s["timestamp"])]


def _job_pid(stack: Stack, job_id: str) -> int:
    run = poll(
        lambda: _prefect(stack, f"/flow_runs/{job_id}"),
        lambda r: bool(r.get("infrastructure_pid")),
        60,
    )
    host, _, pid = run["infrastructure_pid"].rpartition(":")
    assert host == socket.gethostname(), run["infrastructure_pid"]
    return int(pid)


def _find_node(stack: Stack) -> psutil.Process | None:
    """This stack's execution node (``... node --name node-1``), if it runs."""
    for p in psutil.process_iter():
        try:
            cmd = p.cmdline()
            if (
                "node" in cmd
                and "node-1" in cmd
                and p.environ().get("PMJOBS_HOME") == str(stack.home)
                and p.status() != psutil.STATUS_ZOMBIE
            ):
                return p
        except psutil.Error:
            continue
    return None


def _node(stack: Stack) -> psutil.Process:
    node = _find_node(stack)
    assert node is not None, "no node-1 process for this stack"
    return node


def _running(api: Api, seconds: float = 120, name: str = "long") -> str:
    job = api.submit(_wait_job(seconds, name))
    api.wait(job["jobId"], {"Running"}, timeout=120)
    return job["jobId"]


# -- pure parts ------------------------------------------------------------------------------


def test_prefect_is_the_version_the_worker_relies_on() -> None:
    # executors/worker.py, starter.py, child.py and prefect_tls.py use Prefect internals
    assert prefect.__version__ == "3.9.1"


def test_flows_declare_no_state_hooks() -> None:
    """The worker skips Prefect's on_cancellation/on_crashed hooks (NoStateHooks)."""
    from flows.analysis import analysis
    from flows.data_enrichment import data_enrichment
    from flows.notebook import notebook
    from flows.process_mining import process_mining

    for flow in (analysis, data_enrichment, notebook, process_mining):
        assert not flow.on_cancellation_hooks, flow.name
        assert not flow.on_crashed_hooks, flow.name


def test_slot_ledger_keeps_capacity_and_frees_orphans() -> None:
    ledger = SlotLedger(2)
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ledger.acquire_on_behalf_of_nowait(a)
    ledger.acquire_on_behalf_of_nowait(b)
    with pytest.raises(anyio.WouldBlock):
        ledger.acquire_on_behalf_of_nowait(c)
    with pytest.raises(RuntimeError):
        ledger.acquire_on_behalf_of_nowait(a)
    assert ledger.borrowed_tokens == 2
    # a is still being submitted; b has neither a submission nor a process: its slot leaked
    assert ledger.release_orphans({a}, set()) == [b]
    assert ledger.holders == {a}
    ledger.acquire_on_behalf_of_nowait(c)
    ledger.release_on_behalf_of(a)
    with pytest.raises(RuntimeError):
        ledger.release_on_behalf_of(a)
    assert ledger.holders == {c}


@pytest.fixture
def sleeper() -> Iterator[multiprocessing.Process]:
    process = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
    process.start()
    yield process
    if process.is_alive():
        process.kill()
    process.join()


def test_a_child_stopped_for_a_cancel_is_not_a_crash(sleeper: multiprocessing.Process) -> None:
    child = ForkedChild(uuid.uuid4(), sleeper)
    assert child.alive() and child.returncode is None
    child.terminate()
    sleeper.join(10)
    assert sleeper.exitcode == -signal.SIGTERM
    assert child.returncode == 0  # we asked it to stop: its run is being marked Cancelled
    with pytest.raises(ProcessLookupError):
        child.hard_kill(sleeper.pid or 0)
    child.close()


def test_a_child_killed_by_someone_else_is_a_crash(sleeper: multiprocessing.Process) -> None:
    child = ForkedChild(uuid.uuid4(), sleeper)
    os.kill(sleeper.pid or 0, signal.SIGKILL)
    sleeper.join(10)
    assert child.returncode == -signal.SIGKILL


# -- the real stack --------------------------------------------------------------------------


def test_jobs_run_in_single_use_children_of_the_node(tenant_api: Api, stack: Stack) -> None:
    pool = httpx.post(
        f"http://127.0.0.1:{stack.env['PMJOBS_PREFECT_PORT']}/api/work_pools/filter",
        json={},
        timeout=30,
    ).json()
    assert {p["name"]: p["type"] for p in pool}["pmjobs"] == "pmjobs-process"

    job_id = _running(tenant_api, 3, "forked")
    pid = _job_pid(stack, job_id)
    node = _node(stack)
    child = psutil.Process(pid)
    assert node.pid in [p.pid for p in child.parents()]  # forked via the node's fork server
    assert child.pid not in [c.pid for c in node.children()]  # ... not started by the node
    final = tenant_api.wait(job_id, timeout=120)
    assert final["status"] == "Completed", final
    assert final["execution"]["executionNode"] == "node-1"
    poll(lambda: _alive(pid), lambda up: not up, 15)  # single use: gone with its run

    second = tenant_api.wait(tenant_api.submit(_wait_job(0.2, "next"))["jobId"], timeout=120)
    assert second["status"] == "Completed", second
    assert _job_pid(stack, second["jobId"]) != pid


def test_forced_cancel_kills_the_child_and_ends_cancelled(tenant_api: Api, stack: Stack) -> None:
    job_id = _running(tenant_api, 120, "stuck")
    pid = _job_pid(stack, job_id)
    r = tenant_api.delete(f"/execution/job/{job_id}", json={"forceTermination": True})
    assert r.status_code == 200, r.text
    final = tenant_api.wait(job_id, timeout=60)
    assert final["status"] == "Cancelled", final
    poll(lambda: _alive(pid), lambda up: not up, 30)
    types = _state_types(stack, job_id)
    assert "CRASHED" not in types and types[-1] == "CANCELLED", types


def test_a_killed_child_is_reported_and_frees_its_slot(tenant_api: Api, stack: Stack) -> None:
    job_id = _running(tenant_api, 120, "victim")
    os.kill(_job_pid(stack, job_id), signal.SIGKILL)
    final = tenant_api.wait(job_id, timeout=60)
    assert final["status"] == "Failed", final
    assert final["state"] == "Crashed", final
    # the node has one slot: the next job runs only if the crashed child gave it back
    after = tenant_api.wait(tenant_api.submit(_wait_job(0.2, "after"))["jobId"], timeout=120)
    assert after["status"] == "Completed", after


@pytest.mark.slow
def test_a_node_killed_with_sigkill_leaves_no_flow_process(tenant_api: Api, stack: Stack) -> None:
    job_id = _running(tenant_api, 120, "orphan?")
    pid = _job_pid(stack, job_id)
    node = _node(stack)
    helpers = [p.pid for p in node.children()]  # the fork server (and multiprocessing's tracker)
    os.kill(node.pid, signal.SIGKILL)
    poll(lambda: _alive(pid), lambda up: not up, 30)
    poll(lambda: [h for h in helpers if _alive(h)], lambda left: left == [], 30)
    # the supervisor restarts the node, which takes jobs again
    poll(lambda: _find_node(stack), lambda n: n is not None and n.pid != node.pid, 60)
    after = tenant_api.wait(tenant_api.submit(_wait_job(0.2, "after"))["jobId"], timeout=240)
    assert after["status"] == "Completed", after
