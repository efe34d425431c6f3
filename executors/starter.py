"""Start a flow run in a forked child and stop it on cancel: Prefect's process-starter contract.

Prefect's ``FlowRunExecutor`` (3.9.1) runs an attempt through a "starter": it reports crashes,
watches for Cancelling and drives the cancel sequence (control-channel intent, then a signal).
``ForkStarter`` is that starter for children of the node's fork server, with the environment
``python -m prefect.engine`` would get. Two changes to the stock stop sequence:

- Prefect checks a signalled process every 3 s (and so finished a cancel 4-5 s after the
  request); here SIGTERM is sent and the cancel goes on at once, and a child still alive
  ``KILL_GRACE_SECONDS`` later gets SIGKILL. The node's slot is freed only when it has exited.
- A child that died of the signal *we* sent to cancel it reports exit code 0: it did what was
  asked, and its run is being marked Cancelled. Otherwise the executor would race a Crashed
  state against the Cancelled one. Any other death (node shutdown, OOM killer, ``kill -9``)
  keeps its code, and the run is reported Crashed.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import threading
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING
from uuid import UUID

import anyio
import anyio.abc
from prefect.runner._process_manager import ProcessHandle
from prefect.settings import get_current_settings
from prefect.utilities.processutils import sanitize_subprocess_env

from executors.child import Handoff
from executors.forkserver import ForkServer

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect.runner._control_channel import ControlChannel

KILL_GRACE_SECONDS = 10.0
HOSTNAME = socket.gethostname()


@functools.cache
def settings_env() -> dict[str, str]:
    """The node's Prefect settings as environment variables, as every run gets them. Prefect
    recomputes this per run (~50 ms, twice); a node's settings do not change while it runs.
    Callers must not modify the dict."""
    return get_current_settings().to_environment_variables(exclude_unset=True)


def infrastructure_pid(pid: int) -> str:
    """What the run's ``infrastructure_pid`` says: this host and the child's pid."""
    return f"{HOSTNAME}:{pid}"


class ForkedChild:
    """One forked child: its pid, its exit code, and how to stop it (see the module docstring)."""

    wait_after_graceful_kill = False  # ProcessTerminationScope: do not poll in 3 s steps

    def __init__(self, flow_run_id: UUID, process: BaseProcess) -> None:
        self.flow_run_id = flow_run_id
        self.process = process
        self.stop_requested = False
        self._kill_timer: asyncio.TimerHandle | threading.Timer | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        code = self.process.exitcode
        if code is not None and code < 0 and self.stop_requested:
            return 0
        return code

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    def alive(self) -> bool:
        return self.process.exitcode is None

    # -- ProcessTerminationScope (the pid argument is ours anyway) ------------------------------
    def is_alive(self, pid: int) -> bool:
        return self.alive()

    def graceful_kill(self, pid: int) -> None:
        self._signal(signal.SIGTERM)
        if self._kill_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on the worker's loop: use a timer thread
                self._kill_timer = threading.Timer(KILL_GRACE_SECONDS, self._kill_if_alive)
                self._kill_timer.daemon = True
                self._kill_timer.start()
            else:
                self._kill_timer = loop.call_later(KILL_GRACE_SECONDS, self._kill_if_alive)

    def hard_kill(self, pid: int) -> None:
        self._signal(signal.SIGKILL)

    def close(self) -> None:
        if self._kill_timer is not None and not self.alive():
            self._kill_timer.cancel()

    def terminate(self) -> None:
        """Stop the child as a cancel does: SIGTERM now, SIGKILL after the grace period."""
        self.graceful_kill(self.pid or 0)

    def _kill_if_alive(self) -> None:
        if self.alive():
            self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if not self.alive() or self.pid is None:
            raise ProcessLookupError(f"flow run process {self.pid} has already exited")
        self.stop_requested = True
        os.kill(self.pid, signum)


class ForkStarter:
    """Prefect ``ProcessStarter``: fork the child, hand back its handle, return when it exits."""

    def __init__(
        self,
        forkserver: ForkServer,
        *,
        deployment: DeploymentResponse | None,
        env: dict[str, str | None],
        cwd: str | None,
        control_channel: ControlChannel | None,
        track: Callable[[ForkedChild], None],
        untrack: Callable[[ForkedChild], None],
    ) -> None:
        self._forkserver = forkserver
        self._deployment = deployment
        self._env = env
        self._cwd = cwd
        self._control_channel = control_channel
        self._track = track
        self._untrack = untrack

    def child_env(self, flow_run: FlowRun) -> tuple[dict[str, str], bool, bool]:
        """The environment ``EngineCommandStarter`` gives ``python -m prefect.engine``; whether
        the control channel is registered; whether it changes a Prefect setting (a job variable
        did), in which case the child rebuilds its settings (~50 ms) instead of keeping those
        it was forked with."""
        control: dict[str, str] = {}
        if self._control_channel is not None:
            try:
                port, token = self._control_channel.register(flow_run.id)
                control = {"PREFECT__CONTROL_PORT": str(port), "PREFECT__CONTROL_TOKEN": token}
            except RuntimeError:
                pass  # no loopback listener: cancel falls back to the signal alone
        settings = settings_env()
        env: dict[str, str | None] = {
            **os.environ,
            **self._env,
            **settings,
            "PREFECT__FLOW_RUN_ID": str(flow_run.id),
            "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
            **control,
        }
        changed = any(
            k.startswith("PREFECT_")
            and not k.startswith("PREFECT__")
            and v != settings.get(k)
            and v != os.environ.get(k)
            for k, v in self._env.items()
        )
        return sanitize_subprocess_env(env), bool(control), changed

    async def start(
        self,
        flow_run: FlowRun,
        task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        env, registered, settings_changed = self.child_env(flow_run)
        handoff = Handoff(
            flow_run=flow_run.model_dump_json(),
            deployment=self._deployment.model_dump_json() if self._deployment else None,
        )
        try:
            process = self._forkserver.spawn(env, self._cwd, settings_changed, handoff)
        except BaseException:
            if registered and self._control_channel is not None:
                self._control_channel.unregister(flow_run.id)
            raise
        child = ForkedChild(flow_run.id, process)
        self._track(child)
        try:
            task_status.started(ProcessHandle(child, termination_scope=child))  # type: ignore[arg-type]
            while child.alive():
                await anyio.wait_readable(child.sentinel)
        finally:
            self._untrack(child)
