"""The execution node's worker: Prefect's process worker, woken by events, running forked children.

The stock ``ProcessWorker`` polled every second and started ``python -m prefect.engine`` per run
(submit -> Running took 4-9 s, cancel -> Cancelled ~5 s). This subclass keeps its pick-up cycle
(queue priorities, FIFO, Pending/Submitting states, crash reporting) and changes three things:

- *when* it looks: a Scheduled event of the pool (``executors.wakeup``), a freed slot or a due
  scheduled time wakes the cycle at once; the poll (``PREFECT_WORKER_QUERY_SECONDS``) is only
  the fallback;
- *how* a run starts: forked from the node's warm fork server (``executors.forkserver``), with
  ``infrastructure_pid`` "host:pid", stopped on cancel as ``executors.starter`` describes;
- *slots*: a ``SlotLedger`` that knows who holds each slot and frees any slot whose run has no
  process (``executors.slots``; Prefect issue #17415);
- *round trips before the fork*: the deployment and flow reads come from a short-lived cache
  (``executors.read_cache``); the worker labels and the Submitting state are sent alongside the
  fork instead of before it; the child gets the flow run and its deployment with the fork
  (``executors.child``), so it does not read them again. Stock Prefect makes eight sequential
  API calls between a run's Pending and Running states; this path makes two (the child's
  flow-run update and its Running state) once the cache is warm.

Its worker type is ``pmjobs-process``; it also serves pools of the stock type ``process`` (pools
created by earlier pmjobs versions) the same way. Prefect internals used here and in
``executors.starter``/``executors.child`` are those of Prefect 3.9.1 (pinned; a test checks it).
"""

from __future__ import annotations

import asyncio
import datetime
import warnings
from typing import TYPE_CHECKING, Any
from uuid import UUID

import anyio
import anyio.abc
from prefect.exceptions import InfrastructureNotAvailable, InfrastructureNotFound
from prefect.runner._flow_run_executor import FlowRunExecutionResult, FlowRunExecutorContext
from prefect.workers.process import (
    ProcessJobConfiguration,
    ProcessWorker,
    ProcessWorkerResult,
)

from executors.forkserver import ForkServer
from executors.read_cache import ReadCache
from executors.slots import SlotLedger
from executors.starter import HOSTNAME, ForkedChild, ForkStarter, infrastructure_pid, settings_env
from executors.wakeup import watch_scheduled_runs

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun, WorkPool
    from prefect.states import State

WORKER_TYPE = "pmjobs-process"
SERVED_POOL_TYPES = {WORKER_TYPE, "process"}
MIN_CYCLE_GAP_SECONDS = 0.05  # between event-driven cycles: a burst of events is one look
DUE_CHECK_DELAY_SECONDS = 1.0  # after a Scheduled event: is the run due later? (then a timer)
MAX_TIMER_SECONDS = 3600.0  # further ahead, the fallback poll picks the run up


class PmJobsJobConfiguration(ProcessJobConfiguration):
    """Prefect's process job configuration, with the node's settings environment computed once
    (``executors.starter.settings_env``) instead of for every run."""

    @classmethod
    def _base_environment(cls) -> dict[str, str]:
        return dict(settings_env())


class NoStateHooks:
    """pmjobs flows declare no ``on_cancellation``/``on_crashed`` hooks (a test checks it).
    Prefect would load the flow *in the node* to find none: importing pm4py into the node and
    delaying the first cancel by seconds."""

    async def run_cancellation_hooks(self, flow_run: FlowRun, state: State) -> None:
        return None

    async def run_crashed_hooks(self, flow_run: FlowRun, state: State) -> None:
        return None


class PmJobsWorker(ProcessWorker):
    type = WORKER_TYPE
    job_configuration = PmJobsJobConfiguration
    _display_name = "pmjobs process"
    _description = (
        "Runs pmjobs flow runs in processes forked from a pre-warmed fork server; picks runs "
        "up on Prefect's Scheduled events."
    )

    def __init__(self, *args: Any, forkserver: ForkServer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._forkserver = forkserver
        self._children: dict[UUID, ForkedChild] = {}
        self._in_run: set[UUID] = set()
        self._wake_event: asyncio.Event | None = None
        self._cycle_lock: asyncio.Lock | None = None
        self._services: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()
        self._executors: FlowRunExecutorContext | None = None

    # -- what the node reports -------------------------------------------------------------------
    @property
    def active_runs(self) -> int:
        """Flow runs with a live process on this node."""
        return sum(1 for c in list(self._children.values()) if c.alive()) + len(
            self._in_run - self._children.keys()
        )

    # -- lifecycle -------------------------------------------------------------------------------
    async def setup(self) -> None:
        await super().setup()
        ReadCache().install(self.client)
        if self._limit is not None:
            self._limiter = SlotLedger(self._limit)  # type: ignore[assignment]
        self._wake_event = asyncio.Event()
        self._cycle_lock = asyncio.Lock()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            # one for all runs (as Prefect's Runner has): its client, cancel observer and
            # control channel are set up once, not on the path of every run
            self._executors = await self._exit_stack.enter_async_context(FlowRunExecutorContext())
        self._spawn(self._pickup_loop())
        self._spawn(self._watch_events())

    async def teardown(self, *exc_info: Any) -> None:
        for task in list(self._services):
            task.cancel()
        await asyncio.gather(*self._services, return_exceptions=True)
        for timer in self._timers:
            timer.cancel()
        await super().teardown(*exc_info)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._services.add(task)
        task.add_done_callback(self._services.discard)

    def _record_work_pool_snapshot(self, work_pool: WorkPool) -> None:
        # a pool of the stock "process" type is served the same way: no type-mismatch warning
        if work_pool.type in SERVED_POOL_TYPES:
            work_pool = work_pool.model_copy(update={"type": self.type})
        super()._record_work_pool_snapshot(work_pool)

    # -- waking the pick-up cycle ----------------------------------------------------------------
    def wake(self) -> None:
        if self._wake_event is not None:
            self._wake_event.set()

    async def _pickup_loop(self) -> None:
        assert self._wake_event is not None
        while True:
            await self._wake_event.wait()
            self._wake_event.clear()
            try:
                await self.get_and_submit_flow_runs()
            except Exception as exc:  # noqa: BLE001 - the next wake or poll tries again
                self._logger.warning("pick-up cycle failed: %s", exc)
            await asyncio.sleep(MIN_CYCLE_GAP_SECONDS)

    async def _watch_events(self) -> None:
        while self._work_pool is None:
            await asyncio.sleep(0.2)
        await watch_scheduled_runs(self._work_pool.id, self._on_scheduled)

    def _on_scheduled(self, flow_run_id: UUID | None) -> None:
        self.wake()
        if flow_run_id is not None:
            self._spawn(self._wake_when_due(flow_run_id))

    async def _wake_when_due(self, flow_run_id: UUID) -> None:
        """A run scheduled for later: wake the cycle at its time rather than the next poll."""
        await asyncio.sleep(DUE_CHECK_DELAY_SECONDS)
        try:
            run = await self.client.read_flow_run(flow_run_id)
        except Exception:  # noqa: BLE001 - the fallback poll still finds it
            return
        when = (
            run.state.state_details.scheduled_time
            if run.state and run.state.is_scheduled()
            else None
        )
        if when is None:
            return
        delay = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
        if 0 < delay <= MAX_TIMER_SECONDS:
            timer = asyncio.get_running_loop().call_later(delay, self.wake)
            self._timers.add(timer)

    async def get_and_submit_flow_runs(self) -> list[FlowRun]:
        """One cycle at a time (event, timer and poll all land here)."""
        assert self._cycle_lock is not None
        async with self._cycle_lock:
            self._timers = {t for t in self._timers if t.when() > asyncio.get_running_loop().time()}
            self.release_orphan_slots()
            return await super().get_and_submit_flow_runs()

    # -- off the path to the fork -----------------------------------------------------------------
    async def _give_worker_labels_to_flow_run(self, flow_run_id: UUID) -> None:
        """Labels only attribute the run to this node: sent while the child starts."""
        give = super()._give_worker_labels_to_flow_run
        self._spawn(self._background("labels", flow_run_id, give))

    async def _propose_submitting_state(self, flow_run: FlowRun) -> None:
        """Submitting is informational (the run is already Pending, which is what stops a second
        worker taking it); sent while the child starts. Should it arrive after the child's
        Running, Prefect refuses the transition and nothing changes."""
        propose = super()._propose_submitting_state
        self._spawn(self._background("Submitting state", flow_run, propose))

    async def _background(self, what: str, arg: Any, call: Any) -> None:
        try:
            await call(arg)
        except Exception as exc:  # noqa: BLE001 - informational only
            self._logger.debug("could not send the %s for %s: %s", what, arg, exc)

    # -- slots -----------------------------------------------------------------------------------
    def release_orphan_slots(self) -> list[Any]:
        """Free every slot held for a run that is neither being submitted nor running."""
        if not isinstance(self._limiter, SlotLedger):
            return []
        orphans = self._limiter.release_orphans(self._submitting_flow_run_ids, self._in_run)
        for run_id in orphans:
            self._logger.warning("freed the slot of flow run %s: it has no process", run_id)
        return orphans

    def _release_limit_slot(self, flow_run_id: UUID) -> None:
        super()._release_limit_slot(flow_run_id)
        self.wake()  # a slot is free: take the next run now, not at the next poll

    async def _submit_run(self, flow_run: FlowRun) -> None:
        # Prefect's version leaks the slot (and stops the worker) when it raises.
        try:
            await super()._submit_run(flow_run)
        except Exception:
            self._logger.exception("could not submit flow run %s; it stays queued", flow_run.id)
        finally:
            self._submitting_flow_run_ids.discard(flow_run.id)
            if flow_run.id not in self._in_run:
                self._release_limit_slot(flow_run.id)

    # -- running and stopping one flow run -------------------------------------------------------
    async def run(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[Any] | None = None,
    ) -> ProcessWorkerResult:
        status = task_status if task_status is not None else anyio.TASK_STATUS_IGNORED
        self._in_run.add(flow_run.id)
        try:
            if configuration._command_configured:  # noqa: SLF001 - a custom command: stock way
                self._logger.info("flow run %s has its own command; not forked", flow_run.id)
                return await super().run(flow_run, configuration, status)
            return await self._run_forked(flow_run, configuration, status)
        finally:
            self._in_run.discard(flow_run.id)

    async def _run_forked(
        self,
        flow_run: FlowRun,
        configuration: ProcessJobConfiguration,
        task_status: anyio.abc.TaskStatus[Any],
    ) -> ProcessWorkerResult:
        ctx = self._executors
        if ctx is None:
            raise RuntimeError("the worker is not set up")
        execution: FlowRunExecutionResult | None = None
        starter = ForkStarter(
            self._forkserver,
            deployment=configuration._related_objects.get("deployment"),  # noqa: SLF001
            env=configuration.env,
            cwd=str(configuration.working_dir) if configuration.working_dir else None,
            control_channel=ctx.control_channel,
            track=lambda child: self._children.__setitem__(child.flow_run_id, child),
            untrack=lambda child: self._children.pop(child.flow_run_id, None),
        )
        executor = ctx.create_executor(
            flow_run, starter, propose_submitting=False, hook_runner=NoStateHooks()
        )

        async def execute(
            *, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED
        ) -> None:
            nonlocal execution
            execution = await executor.submit(task_status=task_status)

        async with anyio.create_task_group() as group:
            handle = await group.start(execute)
            task_status.started(infrastructure_pid(handle.pid))
        if execution is None or execution.status_code is None:
            raise RuntimeError("Failed to start flow run process.")
        return ProcessWorkerResult(
            status_code=execution.status_code,
            identifier=infrastructure_pid(execution.handle.pid or 0),
        )

    async def kill_infrastructure(
        self,
        infrastructure_pid: str,
        configuration: ProcessJobConfiguration,
        grace_seconds: int = 30,
    ) -> None:
        """Stop the child of a run cancelled before it reported Running ("host:pid")."""
        host, _, pid = infrastructure_pid.rpartition(":")
        if host and host != HOSTNAME:
            raise InfrastructureNotAvailable(
                f"flow run process {infrastructure_pid} runs on {host}, not on {HOSTNAME}"
            )
        child = next((c for c in list(self._children.values()) if str(c.pid) == pid), None)
        if child is None or not child.alive():
            raise InfrastructureNotFound(f"no live flow run process {infrastructure_pid}")
        child.terminate()
