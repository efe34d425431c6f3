"""A stack of its own for each fault-test module: these tests kill and restart its processes.

The session ``stack`` of tests/conftest.py is shared by every other test and must never see a
fault, so each module here starts its own ``pmjobs up`` (one node of capacity 1, fresh home,
fresh PostgreSQL database when ``PMJOBS_TEST_DATABASE_URL`` is set). Its processes are found by
command line under the supervisor; teardown also ends any process still carrying this stack's
``PMJOBS_HOME`` (orphans of a killed node included).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import (
    ROOT,
    TERMINAL,
    Api,
    Stack,
    _fresh_postgres_database,
    _postgres,
    free_port,
    poll,
)

# role -> a test on a child's command line
ROLES: dict[str, Callable[[list[str]], bool]] = {
    "prefect-server": lambda cmd: "executors.prefect_server:create_app" in cmd,
    "api": lambda cmd: "api.main:app" in cmd,
    "node-1": lambda cmd: "node" in cmd and "node-1" in cmd,
    "notifier": lambda cmd: "notifier" in cmd,
    "reaper": lambda cmd: "executors.reaper" in cmd,
}
FINAL_STATE_TYPES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (an orphan's exit may go unreaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class FaultStack:
    stack: Stack
    supervisor: subprocess.Popen[bytes]
    prefect_url: str

    # -- processes ---------------------------------------------------------------------------
    def pid(self, role: str) -> int | None:
        """The live child of the supervisor playing ``role`` (None while it is down)."""
        try:
            children = psutil.Process(self.supervisor.pid).children()
        except psutil.Error:
            return None
        for child in children:
            with contextlib.suppress(psutil.Error):
                if child.status() != psutil.STATUS_ZOMBIE and ROLES[role](child.cmdline()):
                    return child.pid
        return None

    def kill(self, role: str, sig: int = signal.SIGKILL) -> int:
        pid = self.pid(role)
        assert pid is not None, f"no {role} process"
        os.kill(pid, sig)
        return pid

    def wait_restarted(self, role: str, old_pid: int, timeout: float = 120) -> int:
        return poll(lambda: self.pid(role), lambda pid: pid is not None and pid != old_pid, timeout)

    def wait_healthy(self, timeout: float = 180) -> None:
        def health() -> int:
            try:
                return httpx.get(f"{self.stack.url}/health", timeout=5).status_code
            except httpx.HTTPError:
                return 0

        poll(health, lambda code: code == 200, timeout)

    # -- Prefect's own view of a job ---------------------------------------------------------
    def flow_run(self, job_id: str) -> dict[str, Any]:
        r = httpx.get(f"{self.prefect_url}/flow_runs/{job_id}", timeout=30)
        r.raise_for_status()
        return r.json()

    def job_pid(self, job_id: str, timeout: float = 60) -> int:
        """The pid of the job's process (``infrastructure_pid``: ``pid`` or ``host:pid``)."""
        run = poll(
            lambda: self.flow_run(job_id), lambda r: bool(r.get("infrastructure_pid")), timeout
        )
        return int(str(run["infrastructure_pid"]).rpartition(":")[2])

    def states(self, job_id: str) -> list[dict[str, Any]]:
        """The run's state history, oldest first."""
        r = httpx.get(
            f"{self.prefect_url}/flow_run_states/", params={"flow_run_id": job_id}, timeout=30
        )
        r.raise_for_status()
        return sorted(r.json(), key=lambda s: s["timestamp"])

    def assert_one_final_state(self, job_id: str) -> list[str]:
        """Exactly one final state, and nothing after it; returns the history's types."""
        types = [s["type"] for s in self.states(job_id)]
        finals = [t for t in types if t in FINAL_STATE_TYPES]
        assert len(finals) == 1, f"final states {finals} in history {types}"
        assert types[-1] in FINAL_STATE_TYPES, f"history goes on after its end: {types}"
        return types


def _leftovers(home: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.environ().get("PMJOBS_HOME") == str(home):
                found.append(p)
    return found


def start_stack(home: Path, extra_env: dict[str, str] | None = None) -> Iterator[FaultStack]:
    """``pmjobs up`` on free ports in ``home``; yields once healthy, stops everything after."""
    api_port, prefect_port = free_port(), free_port()
    env = {
        **os.environ,
        "PMJOBS_HOME": str(home),
        "PMJOBS_API_PORT": str(api_port),
        "PMJOBS_PREFECT_PORT": str(prefect_port),
        "PMJOBS_NODES": "1",
        "PMJOBS_NODE_CAPACITY": "1",
        "PMJOBS_CANCEL_GRACE_SECONDS": "5",
        "PMJOBS_REAPER_POLL_SECONDS": "1",
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    env.pop("PREFECT_API_URL", None)
    admin_url = os.environ.get("PMJOBS_TEST_DATABASE_URL")
    database = None
    if admin_url:
        database, env["PMJOBS_DATABASE_URL"] = _fresh_postgres_database(admin_url)
    log = home / "supervisor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "executors.cli", "up"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stack = Stack(url=f"http://127.0.0.1:{api_port}", home=home, env=env, log=log)
    faults = FaultStack(stack, proc, f"http://127.0.0.1:{prefect_port}/api")
    try:
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{stack.url}/health", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pmjobs up did not become healthy:\n{stack.logs()}")
            time.sleep(0.5)
        yield faults
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        for p in _leftovers(home):
            with contextlib.suppress(psutil.Error):
                p.kill()
        if admin_url and database:
            _postgres(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    yield from start_stack(tmp_path_factory.mktemp("pmjobs-faults"))


@pytest.fixture(scope="module")
def api(faults: FaultStack) -> Api:
    tenant, project = str(uuid.uuid4()), str(uuid.uuid4())
    return Api(faults.stack, tenant, project, faults.stack.token(tenant, "fault", [project]))


def wait_job(seconds: float, name: str = "wait", **extra: Any) -> dict[str, Any]:
    """An Analysis job that waits ``seconds`` in its first stage (honouring stop requests)."""
    return {
        "jobName": name,
        "jobType": "Analysis",
        "priority": "Normal",
        "parameters": {"delaySeconds": seconds},
        **extra,
    }


def finished(api: Api, job_id: str, timeout: float = 180) -> dict[str, Any]:
    return api.wait(job_id, TERMINAL, timeout=timeout)
