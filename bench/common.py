"""What the benchmark scripts share: their own pmjobs stack, tokens, jobs, Prefect state times.

A benchmark never touches a running ``make run`` stack: it starts ``python -m executors.cli up``
on free ports with a temporary ``$PMJOBS_HOME`` (as tests/conftest.py does), on the embedded
SQLite database, or — with ``--database-url`` / ``PMJOBS_BENCH_DATABASE_URL`` naming a
PostgreSQL server — on a fresh database created for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

from api.client import PmJobsClient

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BPIC = ROOT / "bench" / "data" / "bpic2012.xes.gz"
DATABASE_ENV = "PMJOBS_BENCH_DATABASE_URL"

# Prefect's client keeps a profile folder; keep the bench's own out of ~/.prefect.
os.environ.setdefault("PREFECT_HOME", str(Path(tempfile.gettempdir()) / "pmjobs-bench-prefect"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _postgres(url: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@dataclass
class Tenant:
    """One tenant and project with a token: what a benchmark client acts as."""

    url: str
    tenant: str
    project: str
    token: str

    @property
    def base(self) -> str:
        return f"{self.url}/api/{self.tenant}/{self.project}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self, timeout: float = 600) -> PmJobsClient:
        return PmJobsClient(self.url, self.tenant, self.project, self.token, timeout=timeout)


@dataclass
class Stack:
    url: str
    prefect_url: str
    home: Path
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes]
    database: str | None = None
    admin_url: str | None = None
    keep_home: bool = False
    _stopped: bool = field(default=False, repr=False)

    @property
    def database_kind(self) -> str:
        return "PostgreSQL" if self.database else "SQLite (embedded)"

    def token(self, tenant: str, user: str, projects: Sequence[str] = ()) -> str:
        cmd = [sys.executable, "-m", "executors.cli", "token", "create"]
        cmd += ["--tenant", tenant, "--user", user]
        for p in projects:
            cmd += ["--project", p]
        out = subprocess.run(
            cmd, env=self.env, cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip().splitlines()[-1]

    def new_tenant(self, user: str = "bench") -> Tenant:
        tenant, project = str(uuid.uuid4()), str(uuid.uuid4())
        return Tenant(self.url, tenant, project, self.token(tenant, user, [project]))

    def processes(self) -> dict[str, psutil.Process]:
        """The stack's long-lived processes by role: api, prefect-server, node-N, notifier."""
        found: dict[str, psutil.Process] = {}
        try:
            children = psutil.Process(self.proc.pid).children(recursive=False)
        except psutil.Error:
            return found
        for child in children:
            try:
                cmd = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if "api.main:app" in cmd:
                found["api"] = child
            elif "executors.prefect_server" in cmd:
                found["prefect-server"] = child
            elif " node " in f" {cmd} " and "--name" in cmd:
                name = cmd.split("--name", 1)[1].split()[0]
                found[name] = child
            elif "notifier" in cmd:
                found["notifier"] = child
        return found

    def logs(self, tail: int = 3000) -> str:
        parts = [self.log.read_text(errors="replace")[-tail:]]
        for f in sorted((self.home / "logs").glob("*.log")):
            parts.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-tail:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.admin_url and self.database:
            with contextlib.suppress(Exception):
                _postgres(self.admin_url, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        if not self.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)


def start_stack(
    *,
    nodes: int = 1,
    capacity: int = 1,
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
    keep_home: bool = False,
    rate_limit: bool = False,
    timeout: float = 300,
) -> Stack:
    """Start ``pmjobs up`` on free ports and wait until the API answers /health.

    Rate limiting is off (``PMJOBS_RATE_LIMIT_PER_MINUTE=0``) unless ``rate_limit``: the
    benchmarks measure the engine, not the limiter.
    """
    home = Path(tempfile.mkdtemp(prefix="pmjobs-bench-"))
    api_port, prefect_port = free_port(), free_port()
    env = {
        **os.environ,
        "PMJOBS_HOME": str(home),
        "PMJOBS_API_PORT": str(api_port),
        "PMJOBS_PREFECT_PORT": str(prefect_port),
        "PMJOBS_NODES": str(nodes),
        "PMJOBS_NODE_CAPACITY": str(capacity),
        "PMJOBS_RATE_LIMIT_PER_MINUTE": "0",
        "PMJOBS_CANCEL_GRACE_SECONDS": "10",
        "PMJOBS_MAX_UPLOAD_BYTES": str(16 * 2**30),  # 5M-event CSVs are ~450 MB
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    if rate_limit:
        env.pop("PMJOBS_RATE_LIMIT_PER_MINUTE", None)
    env.pop("PREFECT_API_URL", None)
    env.pop("PMJOBS_DATABASE_URL", None)
    database = None
    if database_url:
        database = f"pmjobs_bench_{uuid.uuid4().hex[:10]}"
        _postgres(database_url, f'CREATE DATABASE "{database}"')
        env["PMJOBS_DATABASE_URL"] = f"{database_url.rpartition('/')[0]}/{database}"
    log = home / "supervisor.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "executors.cli", "up"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    stack = Stack(
        url=f"http://127.0.0.1:{api_port}",
        prefect_url=f"http://127.0.0.1:{prefect_port}/api",
        home=home,
        env=env,
        log=log,
        proc=proc,
        database=database,
        admin_url=database_url,
        keep_home=keep_home,
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{stack.url}/health", timeout=2).status_code == 200:
                return stack
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            logs = stack.logs()
            stack.keep_home = True
            stack.stop()
            raise RuntimeError(f"pmjobs up did not become healthy (home {home}):\n{logs}")
        time.sleep(0.5)


@contextlib.contextmanager
def running_stack(args: argparse.Namespace, **kw: Any) -> Iterator[Stack]:
    """``start_stack`` from the common command-line flags; always stopped on the way out."""
    stack = start_stack(
        nodes=kw.pop("nodes", getattr(args, "nodes", 1)),
        capacity=kw.pop("capacity", getattr(args, "capacity", 1)),
        database_url=args.database_url or None,
        keep_home=args.keep_home,
        **kw,
    )
    print(
        f"# stack: {stack.url} (Prefect {stack.prefect_url}, {stack.database_kind}, "
        f"home {stack.home})",
        file=sys.stderr,
        flush=True,
    )
    try:
        yield stack
    finally:
        stack.stop()


def add_stack_arguments(parser: argparse.ArgumentParser, nodes: int = 1, capacity: int = 1) -> None:
    group = parser.add_argument_group("the pmjobs stack the benchmark starts")
    group.add_argument(
        "--database-url",
        default=os.environ.get(DATABASE_ENV, ""),
        help="PostgreSQL server (e.g. postgresql+asyncpg://postgres@127.0.0.1:5432/postgres): "
        "a fresh database is created on it and dropped afterwards; default embedded SQLite "
        f"(env {DATABASE_ENV})",
    )
    group.add_argument("--nodes", type=int, default=nodes, help=f"execution nodes ({nodes})")
    group.add_argument(
        "--capacity", type=int, default=capacity, help=f"concurrent jobs per node ({capacity})"
    )
    group.add_argument(
        "--keep-home", action="store_true", help="keep the stack's PMJOBS_HOME (logs) afterwards"
    )


# --------------------------------------------------------------------------------------------
# Prefect: state history of a run (what "submit → Running" is measured from)


@dataclass(frozen=True)
class StateStamp:
    type: str
    name: str
    timestamp: datetime


async def state_history_async(prefect_url: str, run_ids: Sequence[uuid.UUID | str]) -> dict:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(prefect_url) as client:
        histories = await asyncio.gather(
            *(client.read_flow_run_states(uuid.UUID(str(r))) for r in run_ids)
        )
    return {
        str(run_id): sorted(
            (StateStamp(s.type.value, s.name or s.type.value, s.timestamp) for s in states),
            key=lambda s: s.timestamp,
        )
        for run_id, states in zip(run_ids, histories, strict=True)
    }


async def read_flow_run(prefect_url: str, run_id: uuid.UUID | str) -> Any:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(prefect_url) as client:
        return await client.read_flow_run(uuid.UUID(str(run_id)))


def state_history(prefect_url: str, run_id: uuid.UUID | str) -> list[StateStamp]:
    return asyncio.run(state_history_async(prefect_url, [run_id]))[str(run_id)]


def first_time(history: Sequence[StateStamp], state_type: str) -> datetime | None:
    return next((s.timestamp for s in history if s.type == state_type), None)


def seconds_between(history: Sequence[StateStamp], a: str, b: str) -> float | None:
    start, end = first_time(history, a), first_time(history, b)
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


# --------------------------------------------------------------------------------------------
# Numbers


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def ms(value: float) -> str:
    return "n/a" if value != value else f"{value * 1000:,.1f}"


def mb(value: float | int | None) -> str:
    return "n/a" if value is None else f"{value / 2**20:,.0f} MB"


def machine_info() -> dict[str, Any]:
    """Cores, RAM and CPU model: the line every published number needs next to it."""
    model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": model or "unknown",
        "logicalCores": psutil.cpu_count(logical=True),
        "physicalCores": psutil.cpu_count(logical=False),
        "ramGiB": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "loadAverage1m": round(load[0], 2),
    }


def machine_line() -> str:
    m = machine_info()
    return (
        f"Machine: {m['cpu']}, {m['logicalCores']} logical cores "
        f"({m['physicalCores']} physical), {m['ramGiB']} GiB RAM, Python {m['python']}, "
        f"{m['os']}; load average (1 min) {m['loadAverage1m']}"
    )
