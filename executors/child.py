"""One flow run, in a single-use process forked from the node's fork server.

It does what ``python -m prefect.engine`` does (load the flow run and its flow from the
deployment, run it under Prefect's state machine and signal handling, so Cancelled and Crashed
are reported as usual) without starting an interpreter and importing Prefect and pm4py again.
Two round trips and a module execution are saved too: the worker hands over the flow run and
its deployment with the fork (``Handoff``), and when the deployment's only pull step is
``set_working_directory`` and its entrypoint is a flow file the fork server preloaded and that
has not changed on disk since, that preloaded flow is used (``preloaded_flow``). Anything else
loads the flow the stock way.

Two waits of Prefect's engine are trimmed (``trim_engine_waits``): they bought a pmjobs run
nothing and kept its node's slot busy after the run had ended.

A forked process exits with ``os._exit``, which skips the interpreter's exit hooks, so the run's
logs and events are sent explicitly before it ends.

Only the standard library is imported at module level: the node process imports this module to
name the child's entry point, and must not pay for Prefect's engine or pm4py.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLUSH_SECONDS = 5.0
PROBE_OK, PROBE_NOT_PRELOADED = 0, 3
SET_WORKING_DIRECTORY = "prefect.deployments.steps.set_working_directory"


@dataclass(frozen=True)
class Handoff:
    """What the worker already read, as JSON: the flow run and its deployment (if any)."""

    flow_run: str
    deployment: str | None

    @property
    def flow_run_id(self) -> str:
        return str(json.loads(self.flow_run)["id"])


def run_flow_run(
    env: dict[str, str], cwd: str | None, settings_changed: bool, handoff: Handoff
) -> None:
    """The forked child's entry point (raises ``SystemExit`` with the engine's exit code)."""
    from executors import forkserver_preload

    forkserver_preload.die_with_parent(forkserver_preload.FORKSERVER_PID)
    _adopt_environment(env, settings_changed)
    if cwd:
        os.chdir(cwd)
    try:
        _run(handoff)
    finally:
        _flush()


def probe() -> None:
    """Warm-up child: exits 0 only if the fork server preloaded everything and owns us."""
    from executors import forkserver_preload

    ok = os.getppid() == forkserver_preload.FORKSERVER_PID and "pm4py" in sys.modules
    sys.exit(PROBE_OK if ok else PROBE_NOT_PRELOADED)


def _adopt_environment(env: dict[str, str], settings_changed: bool) -> None:
    """Take the run's environment. Prefect's settings were read when the fork server imported
    Prefect, from the same node environment; rebuild them only if the run changes one."""
    os.environ.clear()
    os.environ.update(env)
    if settings_changed:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()


def _run(handoff: Handoff) -> None:
    """``prefect.engine``'s ``__main__`` block (Prefect 3.9.1), for the handed-over flow run."""
    from prefect._internal.control_listener import configure_from_env
    from prefect._internal.metrics import RunMetrics
    from prefect.client.schemas.objects import FlowRun
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect.engine import _drive_run_flow_result, handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow, run_flow

    configure_from_env()
    trim_engine_waits()
    flow_run = FlowRun.model_validate_json(handoff.flow_run)
    with handle_engine_signals(flow_run.id):
        run_logger = flow_run_logger(flow_run=flow_run)
        try:
            deployment = (
                DeploymentResponse.model_validate_json(handoff.deployment)
                if handoff.deployment
                else None
            )
            flow = preloaded_flow(deployment) if deployment else None
            if flow is None:
                flow = load_flow(flow_run)
        except Exception:
            run_logger.error(
                "Unexpected exception encountered when trying to load flow", exc_info=True
            )
            raise
        with RunMetrics(flow_run, flow):
            result = run_flow(flow, flow_run=flow_run, error_logger=run_logger)
            _drive_run_flow_result(flow, result)


def trim_engine_waits() -> None:
    """Prefect 3.9.1's engine, in this process only:

    - does not start the flow-run *suspension* observer (an events websocket in its own
      thread, ~80 ms before the run may report Running and up to 0.2 s to stop). pmjobs has no
      suspend operation; a run suspended from Prefect's UI simply keeps running;
    - does not *join* its heartbeat thread on the way out: that thread sleeps in 1 s steps, so
      the join kept a finished run's process (and slot) alive up to a second. The thread is a
      daemon, stops at the next step or with the process, and heartbeats are still sent.
    """
    import contextlib

    from prefect import flow_engine

    send_heartbeats = flow_engine._send_heartbeats  # noqa: SLF001

    def heartbeats_without_join(engine: Any, join_on_exit: bool = True) -> Any:
        return send_heartbeats(engine, join_on_exit=False)

    flow_engine.observe_flow_run_suspension = lambda *a, **k: contextlib.nullcontext()
    flow_engine._send_heartbeats = heartbeats_without_join  # noqa: SLF001


def preloaded_flow(deployment: Any) -> Any | None:
    """The flow the fork server preloaded for this deployment, in the deployment's working
    directory, or ``None`` when loading it the stock way could give something else: other pull
    steps, a templated directory, a module-path entrypoint, a file that is not preloaded or that
    changed on disk since."""
    from prefect.flows import Flow
    from prefect.utilities.templating import apply_values

    from executors import forkserver_preload

    steps = deployment.pull_steps or []
    entrypoint = deployment.entrypoint or ""
    if len(steps) != 1 or list(steps[0]) != [SET_WORKING_DIRECTORY] or ":" not in entrypoint:
        return None
    inputs = apply_values(dict(steps[0][SET_WORKING_DIRECTORY] or {}), os.environ)
    directory = inputs.get("directory")
    if set(inputs) != {"directory"} or not isinstance(directory, str) or "{{" in directory:
        return None
    if not Path(directory).is_absolute():
        return None
    path, _, name = entrypoint.rpartition(":")
    module = forkserver_preload.preloaded_module(Path(directory, path))
    flow = getattr(module, name, None) if module is not None else None
    if not isinstance(flow, Flow):
        return None
    os.chdir(directory)  # what the pull step would have done
    return flow


def _flush() -> None:
    """Send the run's queued logs and events now: ``os._exit`` would drop them."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=FLUSH_SECONDS)
        except Exception as exc:  # noqa: BLE001 - exiting anyway; say why on stderr
            print(f"pmjobs child: could not flush {service.__name__}: {exc}", file=sys.stderr)
