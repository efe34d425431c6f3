"""The reaper: ends runs whose process or node is gone, so no job stays Running forever.

Prefect 3.9.1 does not reliably mark a run crashed when the process behind it vanishes: a
SIGKILLed worker leaves its runs Running (its children may even live on as orphans, see
PrefectHQ/prefect#16746), a run whose process died while Cancelling stays Cancelling
(PrefectHQ/prefect#17563), and a worker that dies between claiming a run and reporting on it
reports nothing. This service (started and restarted by ``pmjobs up``) looks every couple of
seconds at the pool's Pending, Running and Cancelling runs and:

* a run whose node is lost (its process lives on as an orphan of a dead node, the node was
  restarted since the run began, or the node's metrics variable ``pmjobs_node_<name>`` went
  stale) is killed if it still runs here and marked Crashed "crashed: node lost";
* a run whose process has exited while its node lives is marked Crashed
  "crashed: job process exited";
* a Cancelling run whose process is gone is marked Cancelled; one whose process ignores the
  kill for longer than the grace period is killed first.

Processes are recognised by the run's ``infrastructure_pid`` (``pid`` or ``hostname:pid``, set
by the worker) and the process start time, so a reused pid is never mistaken for the job.
Crashed is proposed without force: a run that reached a final state meanwhile keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psutil
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelled, Crashed

from api.settings import Settings

log = logging.getLogger("pmjobs.reaper")

NODE_VARIABLE_PREFIX = "pmjobs_node_"
NODE_LOST = "crashed: node lost"
PROCESS_EXITED = "crashed: job process exited"
START_SLACK_SECONDS = 2.0  # a job's process is created just before its run starts


@dataclass(frozen=True)
class Limits:
    poll_seconds: float = 2.0
    node_stale_seconds: float = 20.0  # nodes publish every 2 s; the API calls 30 s offline
    cancel_grace_seconds: float = 20.0  # a Cancelling run's process may take this to exit
    settle_seconds: float = 10.0  # let the worker report first; avoids a second final state

    @classmethod
    def from_env(cls) -> Limits:
        def get(name: str, default: float) -> float:
            return float(os.environ.get(f"PMJOBS_REAPER_{name}", default))

        return cls(
            poll_seconds=get("POLL_SECONDS", cls.poll_seconds),
            node_stale_seconds=get("NODE_STALE_SECONDS", cls.node_stale_seconds),
            cancel_grace_seconds=get("CANCEL_GRACE_SECONDS", cls.cancel_grace_seconds),
            settle_seconds=get("SETTLE_SECONDS", cls.settle_seconds),
        )


@dataclass(frozen=True)
class RunView:
    """What the reaper needs to know about one active run."""

    id: uuid.UUID
    state: str  # PENDING, RUNNING or CANCELLING
    state_since: float  # epoch seconds
    message: str | None
    began: float  # epoch seconds: the run's start, or now while it is Pending
    pid: int | None
    local: bool  # the pid names a process on this host
    node: str | None


@dataclass(frozen=True)
class ProcessView:
    alive: bool  # the run's own process (start time checked) still exists
    orphaned: bool  # alive, but no execution node among its ancestors


@dataclass(frozen=True)
class Action:
    kind: str  # "crash", "cancel" or "kill"
    message: str
    kill: bool = False


def decide(
    run: RunView, proc: ProcessView | None, node_lost: bool, now: float, limits: Limits
) -> Action | None:
    """The reaper's rules for one run (pure, so they can be read and tested on their own).
    ``proc`` is None when the run's process is not on this host or not known yet."""
    if run.state == "CANCELLING":
        waited = now - run.state_since
        message = run.message or "Cancelled"
        if proc is not None and proc.alive:
            if proc.orphaned or node_lost or waited > limits.cancel_grace_seconds:
                return Action("kill", message, kill=True)
            return None
        gone = (proc is not None and not proc.alive) or run.pid is None or node_lost
        if gone and waited > limits.settle_seconds:
            return Action("cancel", message)
        return None
    if proc is not None and proc.alive and proc.orphaned:
        return Action("crash", NODE_LOST, kill=True)
    if node_lost:
        return Action("crash", NODE_LOST, kill=proc is not None and proc.alive)
    if proc is not None and not proc.alive:
        return Action("crash", PROCESS_EXITED)
    return None


# -- looking at this host -------------------------------------------------------------------


def parse_infrastructure_pid(value: str | None) -> tuple[str | None, int | None]:
    """``"host:pid"`` or ``"pid"`` (the stock process worker) -> (host or None, pid)."""
    if not value:
        return None, None
    host, _, pid = str(value).rpartition(":")
    try:
        return (host or None), int(pid)
    except ValueError:
        return None, None


def _is_node(cmdline: list[str]) -> str | None:
    """The node name if ``cmdline`` is an execution node (``... node --name NAME``)."""
    if "node" not in cmdline or "--name" not in cmdline:
        return None
    i = cmdline.index("--name")
    return cmdline[i + 1] if i + 1 < len(cmdline) else None


def local_nodes(prefect_url: str) -> dict[str, float]:
    """Execution nodes of this stack (same Prefect server) on this host: name -> start time.
    Other stacks on the host may have nodes of the same name."""
    found: dict[str, float] = {}
    for p in psutil.process_iter(["cmdline", "create_time"]):
        name = _is_node(p.info.get("cmdline") or [])
        if not name:
            continue
        try:
            url = p.environ().get("PREFECT_API_URL", "")
        except psutil.Error:
            continue
        if url.rstrip("/") == prefect_url.rstrip("/"):
            # the earliest: a node's helpers (a fork server, say) may share its command line
            created = p.info["create_time"] or 0.0
            found[name] = min(found.get(name, created), created)
    return found


def inspect_process(pid: int, began: float) -> tuple[ProcessView, str | None]:
    """Is the run's process alive (and not a reused pid), and is it orphaned? Also returns
    the node name it inherited (``PMJOBS_NODE_NAME``) when readable."""
    try:
        p = psutil.Process(pid)
        if p.create_time() > began + START_SLACK_SECONDS or p.status() == psutil.STATUS_ZOMBIE:
            return ProcessView(alive=False, orphaned=False), None
        node = None
        with contextlib.suppress(psutil.Error):
            node = p.environ().get("PMJOBS_NODE_NAME")
        orphaned = not any(_is_node(a.cmdline()) for a in p.parents())
        return ProcessView(alive=True, orphaned=orphaned), node
    except psutil.NoSuchProcess:
        return ProcessView(alive=False, orphaned=False), None
    except psutil.Error:  # not ours to inspect: treat as alive and attached
        return ProcessView(alive=True, orphaned=False), None


def kill_tree(pid: int) -> None:
    """SIGKILL a job's process and everything it started (a notebook kernel, say)."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for p in family:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(family, timeout=5)


# -- the service ------------------------------------------------------------------------------


@dataclass
class Reaper:
    client: PrefectClient
    work_pool: str
    prefect_url: str
    limits: Limits = field(default_factory=Limits)
    hostname: str = field(default_factory=socket.gethostname)
    _nodes_of_runs: dict[uuid.UUID, str] = field(default_factory=dict)
    _killed_at: dict[uuid.UUID, float] = field(default_factory=dict)

    async def _active_runs(self) -> list[Any]:
        return await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
                    )
                )
            ),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[self.work_pool])),
            limit=200,
        )

    async def _node_metrics(self) -> dict[str, tuple[float, int | None]]:
        """Node name -> when it last published its metrics (epoch seconds) and its pid."""
        published: dict[str, tuple[float, int | None]] = {}
        for var in await self.client.read_variables(limit=200):
            if var.name.startswith(NODE_VARIABLE_PREFIX) and isinstance(var.value, dict):
                pid = var.value.get("pid")
                published[str(var.value.get("nodeId"))] = (
                    float(var.value.get("publishedAt", 0)),
                    int(pid) if pid is not None else None,
                )
        return published

    async def _reported_nodes(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
        """The node each run reported in its progress artifact (set when the flow starts)."""
        if not ids:
            return {}
        artifacts = await self.client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=ids),
                type=ArtifactFilterType(any_=["progress"]),
            ),
            limit=len(ids) * 2,
        )
        return {
            a.flow_run_id: str((a.metadata_ or {})["node"])
            for a in artifacts
            if a.flow_run_id and (a.metadata_ or {}).get("node")
        }

    def _view(self, run: Any, node: str | None, nodes_here: dict[str, float]) -> RunView:
        host, pid = parse_infrastructure_pid(run.infrastructure_pid)
        if host is not None:
            local = host == self.hostname
        else:  # the stock worker writes a bare pid: local when its node runs here
            local = pid is not None and ((node is None and bool(nodes_here)) or node in nodes_here)
        # A run's process is created before the run starts (Running is set from inside it);
        # while Pending, any process start time up to now fits.
        began = run.start_time.timestamp() if run.start_time else time.time()
        state = run.state
        return RunView(
            id=run.id,
            state=state.type.value,
            state_since=state.timestamp.timestamp(),
            message=state.message,
            began=began,
            pid=pid,
            local=local,
            node=node,
        )

    def _node_lost(
        self,
        run: RunView,
        nodes_here: dict[str, float],
        published: dict[str, tuple[float, int | None]],
        now: float,
    ) -> bool:
        if run.node is None:
            return False
        last, pid = published.get(run.node, (None, None))
        if run.node in nodes_here or run.local:
            # A node here: the process it last published must still be that node, started
            # before the run (helpers forked from a dead node may linger; pids are reused).
            if pid is None:
                return run.node not in nodes_here
            return not self._is_our_node(pid, run.node, run.began)
        return last is not None and now - last > self.limits.node_stale_seconds

    def _is_our_node(self, pid: int, name: str, began: float) -> bool:
        try:
            p = psutil.Process(pid)
            return (
                p.status() != psutil.STATUS_ZOMBIE
                and _is_node(p.cmdline()) == name
                and p.environ().get("PREFECT_API_URL", "").rstrip("/")
                == self.prefect_url.rstrip("/")
                and p.create_time() <= began + START_SLACK_SECONDS
            )
        except psutil.Error:
            return False

    async def tick(self) -> int:
        """One pass; returns how many runs it acted on."""
        runs = [r for r in await self._active_runs() if r.state is not None]
        if not runs:
            self._nodes_of_runs.clear()
            self._killed_at.clear()
            return 0
        published = await self._node_metrics()
        reported = await self._reported_nodes([r.id for r in runs])
        nodes_here = local_nodes(self.prefect_url)
        now = time.time()
        acted = 0
        for run in runs:
            node = reported.get(run.id) or self._nodes_of_runs.get(run.id)
            view = self._view(run, node, nodes_here)
            proc = None
            if view.local and view.pid is not None:
                proc, env_node = inspect_process(view.pid, view.began)
                if env_node and not node:
                    self._nodes_of_runs[run.id] = env_node
                    view = self._view(run, env_node, nodes_here)
            action = decide(
                view, proc, self._node_lost(view, nodes_here, published, now), now, self.limits
            )
            if action is None:
                continue
            acted += await self._apply(view, action, now)
        active = {r.id for r in runs}
        for cache in (self._nodes_of_runs, self._killed_at):
            for run_id in [k for k in cache if k not in active]:
                cache.pop(run_id)
        return acted

    async def _apply(self, run: RunView, action: Action, now: float) -> int:
        if action.kill and run.pid is not None:
            log.warning(
                "killing the process of run %s (pid %s): %s", run.id, run.pid, action.message
            )
            await asyncio.to_thread(kill_tree, run.pid)
            self._killed_at[run.id] = now
        if action.kind == "kill":
            return 1  # the worker reports Cancelled; if it does not, the next passes do
        if action.kind == "cancel":
            killed = self._killed_at.get(run.id)
            if killed is not None and now - killed < self.limits.settle_seconds:
                return 0
            state = Cancelled(message=action.message)
        else:
            state = Crashed(message=action.message)
        current = await self.client.read_flow_run(run.id)
        if current.state is None or current.state.type.value != run.state:
            return 0  # it moved on by itself meanwhile
        result = await self.client.set_flow_run_state(run.id, state)
        log.warning(
            "run %s (%s): %s -> %s (%s)",
            run.id,
            run.node or "node unknown",
            run.state,
            state.type.value,
            getattr(result.status, "value", result.status),
        )
        return 1

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # noqa: BLE001 - Prefect may be restarting
                log.warning("reaper pass failed: %s", exc)
            await asyncio.sleep(self.limits.poll_seconds)


async def _main(settings: Settings) -> None:
    async with get_client() as client:
        await Reaper(client, settings.work_pool, settings.prefect_url, Limits.from_env()).run()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    asyncio.run(_main(Settings()))


if __name__ == "__main__":
    main()
