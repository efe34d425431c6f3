"""``pmjobs up``: one supervisor for the whole stack.

Starts, in order, the Prefect server (embedded SQLite under ``$PMJOBS_HOME`` unless a database
URL is set), the work pool and pipelines, the execution nodes and the API; restarts any that
dies; on Ctrl-C or SIGTERM stops them all, job processes included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from api.auth.tokens import TokenStore
from api.settings import Settings
from executors.bootstrap import ROOT, deploy_pipelines, ensure_work_pool


@dataclass
class Child:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        try:
            family = [
                psutil.Process(self.proc.pid),
                *psutil.Process(self.proc.pid).children(recursive=True),
            ]
        except psutil.Error:
            family = []
        for p in family:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        _, alive = psutil.wait_procs(family, timeout=timeout)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()
        self.proc = None


def _env(settings: Settings, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PMJOBS_HOME": str(home),
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_API_URL": settings.prefect_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_API_URL": settings.prefect_url,
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "PREFECT_LOGGING_LEVEL": env.get("PREFECT_LOGGING_LEVEL", "INFO"),
            "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if settings.database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = settings.database_url
    return env


def _wait_http(url: str, timeout: float, what: str, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise RuntimeError(f"{what} exited during start-up; see {child.log_path}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s ({url})")


def _check_port_free(host: str, port: int, variable: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError:
            raise SystemExit(
                f"port {port} on {host} is already in use (another pmjobs?); "
                f"stop it or choose another with {variable}=..."
            ) from None


def dev_credentials(home: Path) -> dict[str, str]:
    """A demo tenant, project and token, created once and reused (development convenience)."""
    path = home / "dev-token.json"
    if path.exists():
        return json.loads(path.read_text())
    creds = {
        "tenant": str(uuid.uuid4()),
        "project": str(uuid.uuid4()),
        "user": "dev",
    }
    creds["token"] = TokenStore(home).create(creds["tenant"], creds["user"], [creds["project"]])
    path.write_text(json.dumps(creds, indent=2))
    os.chmod(path, 0o600)
    return creds


def _banner(settings: Settings, creds: dict[str, str]) -> str:
    api = f"http://{settings.api_host}:{settings.api_port}"
    ui = settings.prefect_url.removesuffix("/api")
    base = f"{api}/api/{creds['tenant']}/{creds['project']}"
    return "\n".join(
        [
            "",
            "pmjobs is up.",
            f"  API docs     {api}/docs",
            f"  Prefect UI   {ui}",
            f"  tenant       {creds['tenant']}",
            f"  project      {creds['project']}",
            f"  token        {creds['token']}",
            "",
            "Try:",
            f"  curl -s -H 'Authorization: Bearer {creds['token']}' {base}/pipelines",
            "",
            "Ctrl-C stops everything.",
            "",
        ]
    )


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.resolved_home
        self.env = _env(settings, self.home)
        self.children: list[Child] = []
        self._stopping = False

    def _child(self, name: str, cmd: list[str], extra_env: dict[str, str] | None = None) -> Child:
        child = Child(
            name, cmd, {**self.env, **(extra_env or {})}, self.home / "logs" / f"{name}.log"
        )
        self.children.append(child)
        return child

    def start(self) -> None:
        s = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        py = sys.executable
        _check_port_free(s.api_host, s.api_port, "PMJOBS_API_PORT")
        if not s.prefect_api_url:
            _check_port_free(s.prefect_host, s.prefect_port, "PMJOBS_PREFECT_PORT")
            server = self._child(
                "prefect-server",
                [
                    py,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "executors.prefect_server:create_app",
                    "--host",
                    s.prefect_host,
                    "--port",
                    str(s.prefect_port),
                    "--log-level",
                    "warning",
                ],
            )
            print(
                f"starting Prefect server on {s.prefect_url} (logs: {server.log_path})", flush=True
            )
            server.start()
            _wait_http(s.prefect_url + "/health", 180, "Prefect server", server)
        os.environ.update(
            {k: v for k, v in self.env.items() if k.startswith(("PREFECT_", "PMJOBS_"))}
        )
        print("preparing work pool and pipelines", flush=True)
        asyncio.run(ensure_work_pool(s.work_pool, s.prefect_url))
        deploy_pipelines(s.prefect_url)
        for i in range(1, s.nodes + 1):
            name = f"node-{i}"
            self._child(
                name,
                [
                    py,
                    "-m",
                    "executors.cli",
                    "node",
                    "--name",
                    name,
                    "--capacity",
                    str(s.node_capacity),
                ],
            ).start()
        self._child("notifier", [py, "-m", "executors.cli", "notifier"]).start()
        # ends runs whose process or node vanished (Prefect leaves them Running)
        self._child("reaper", [py, "-m", "executors.reaper"]).start()
        api = self._child(
            "api",
            [
                py,
                "-m",
                "uvicorn",
                "api.main:app",
                "--host",
                s.api_host,
                "--port",
                str(s.api_port),
                "--log-level",
                "warning",
            ],
            # While Prefect restarts the API answers 503 within seconds instead of retrying
            # for a minute (Prefect's client default: 5 retries, exponential back-off).
            {"PREFECT_CLIENT_MAX_RETRIES": "1"},
        )
        api.start()
        _wait_http(f"http://{s.api_host}:{s.api_port}/health", 180, "API and nodes", api)
        print(_banner(s, dev_credentials(self.home)), flush=True)

    def watch(self) -> None:
        """Restart what dies (at most 5 times a minute each), until asked to stop."""
        while not self._stopping:
            for child in self.children:
                if self._stopping or child.alive():
                    continue
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < 60]
                if len(child.restarts) >= 5:
                    continue
                code = child.proc.returncode if child.proc else None
                print(f"{child.name} exited ({code}); restarting", flush=True)
                child.restarts.append(now)
                child.start()
            time.sleep(0.5)

    def stop(self, *_: object) -> None:
        if self._stopping:
            return
        self._stopping = True
        # a second Ctrl-C or SIGTERM must not interrupt the clean-up itself
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping pmjobs ...", flush=True)
        for child in reversed(self.children):
            child.stop()
        print("stopped.", flush=True)


def up(settings: Settings) -> None:
    supervisor = Supervisor(settings)

    def _signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _signal)
    try:
        supervisor.start()
        supervisor.watch()
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()
