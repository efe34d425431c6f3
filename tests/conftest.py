"""Fixtures that start the real stack: ``pmjobs up`` (Prefect server, a worker node, the API).

One stack serves the whole session. Its node has capacity 1, so run order is observable.
With ``PMJOBS_TEST_DATABASE_URL`` set (CI does), Prefect runs on a fresh PostgreSQL database
created for this session; otherwise on its embedded SQLite database.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TERMINAL = {"Completed", "Failed", "Cancelled"}


def poll(fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float) -> Any:
    """Call ``fetch`` until ``done`` holds for its value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s: {value}")
        time.sleep(0.25)


def canonical_events(tmp: Path, name: str) -> Any:
    """A log from tests/data as jobs see it: ingested to canonical Parquet and loaded back."""
    from flows.steps.eventlog import ColumnMapping, ingest, load_events

    dest = tmp / f"{name}.parquet"
    ingest(DATA / name, name, ColumnMapping(), dest)
    return load_events(dest)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _postgres(url: str, statement: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def _fresh_postgres_database(url: str) -> tuple[str, str]:
    """Create an empty database next to the one ``url`` names; return its name and URL."""
    name = f"pmjobs_test_{uuid.uuid4().hex[:10]}"
    _postgres(url, f'CREATE DATABASE "{name}"')
    return name, f"{url.rpartition('/')[0]}/{name}"


@dataclass
class Stack:
    url: str
    home: Path
    env: dict[str, str]
    log: Path

    def token(self, tenant: str, user: str, projects: list[str] | None = None) -> str:
        cmd = [
            sys.executable,
            "-m",
            "executors.cli",
            "token",
            "create",
            "--tenant",
            tenant,
            "--user",
            user,
        ]
        for p in projects or []:
            cmd += ["--project", p]
        out = subprocess.run(
            cmd, env=self.env, cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip().splitlines()[-1]

    def logs(self) -> str:
        parts = [self.log.read_text(errors="replace")[-4000:]]
        for f in sorted((self.home / "logs").glob("*.log")):
            parts.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-4000:])
        return "\n".join(parts)


class Api:
    """An authenticated client bound to one tenant and project."""

    def __init__(self, stack: Stack, tenant: str, project: str, token: str) -> None:
        self.stack = stack
        self.tenant = tenant
        self.project = project
        self.token = token
        self.base = f"{stack.url}/api/{tenant}/{project}"
        self.http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(self._url(path), **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.post(self._url(path), **kw)

    def patch(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.patch(self._url(path), **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.request("DELETE", self._url(path), **kw)

    def _url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.base}{path}"

    # conveniences
    def upload(self, filename: str, **form: str) -> dict[str, Any]:
        with (DATA / filename).open("rb") as fh:
            r = self.post("/datasets", files={"file": (filename, fh)}, data=form)
        assert r.status_code == 201, r.text
        return r.json()

    def submit(self, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        r = self.post("/execution/job", json=body, **kw)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.get(f"/execution/job/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(
        self, job_id: str, statuses: set[str] = TERMINAL, timeout: float = 180
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"job {job_id} still {job['status']}/{job['state']} after {timeout}s"
                )
            time.sleep(0.25)

    def pipeline_id(self, job_type: str, name: str = "default") -> str:
        pipelines = self.get("/pipelines").json()["pipelines"]
        return next(
            p["resourceId"] for p in pipelines if p["jobType"] == job_type and p["name"] == name
        )


@dataclass
class Inbox:
    """What the local SMTP server and webhook receiver got."""

    smtp_port: int
    http_port: int
    mails: list[Message] = field(default_factory=list)
    posts: list[tuple[str, Any]] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)  # path -> 5xx answers still to give

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"


@pytest.fixture(scope="session")
def inbox() -> Iterator[Inbox]:
    """A real SMTP server (aiosmtpd) and a real HTTP receiver on free local ports."""
    from aiosmtpd.controller import Controller

    box = Inbox(smtp_port=free_port(), http_port=free_port())

    class Mail:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.mails.append(message_from_bytes(envelope.content))
            return "250 OK"

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            box.posts.append((self.path, json.loads(body or b"null")))
            failing = box.fail_next.get(self.path, 0)
            if failing:
                box.fail_next[self.path] = failing - 1
            self.send_response(503 if failing else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    smtp = Controller(Mail(), hostname="127.0.0.1", port=box.smtp_port)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", box.http_port), Hook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield box
    finally:
        http.shutdown()
        smtp.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, inbox: Inbox) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("pmjobs-home")
    api_port, prefect_port = free_port(), free_port()
    env = {
        **os.environ,
        "PMJOBS_HOME": str(home),
        "PMJOBS_API_PORT": str(api_port),
        "PMJOBS_PREFECT_PORT": str(prefect_port),
        "PMJOBS_NODES": "1",
        "PMJOBS_NODE_CAPACITY": "1",
        "PMJOBS_CANCEL_GRACE_SECONDS": "5",
        "PMJOBS_SMTP_HOST": "127.0.0.1",
        "PMJOBS_SMTP_PORT": str(inbox.smtp_port),
        "PMJOBS_NOTIFY_POLL_SECONDS": "0.5",
        "PYTHONPATH": str(ROOT),
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
    url = f"http://127.0.0.1:{api_port}"
    s = Stack(url=url, home=home, env=env, log=log)
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"pmjobs up did not become healthy:\n{s.logs()}")
        time.sleep(0.5)
    try:
        yield s
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if admin_url and database:
            _postgres(admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def tenant_api(stack: Stack) -> Api:
    tenant, project = str(uuid.uuid4()), str(uuid.uuid4())
    return Api(stack, tenant, project, stack.token(tenant, "alice", [project]))


@pytest.fixture(scope="session")
def road_dataset(tenant_api: Api) -> dict[str, Any]:
    return tenant_api.upload("roadtraffic100traces.xes")


def new_tenant(stack: Stack, user: str = "bob") -> Api:
    tenant, project = str(uuid.uuid4()), str(uuid.uuid4())
    return Api(stack, tenant, project, stack.token(tenant, user, [project]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests (minutes on the capacity-1 node) run last, so they hold up nothing else."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)
