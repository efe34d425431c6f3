"""One flow run, in a single-use process forked from the node's fork server.

It does what ``python -m prefect.engine`` does (load the flow run and its flow from the
deployment, run it under Prefect's state machine and signal handling, so Cancelled and Crashed
are reported as usual) without starting an interpreter and importing Prefect and pm4py again.
A forked process exits with ``os._exit``, which skips the interpreter's exit hooks, so the run's
logs and events are sent explicitly before it ends.

Only the standard library is imported at module level: the node process imports this module to
name the child's entry point, and must not pay for Prefect's engine or pm4py.
"""

from __future__ import annotations

import os
import sys
from uuid import UUID

FLUSH_SECONDS = 5.0
PROBE_OK, PROBE_NOT_PRELOADED = 0, 3


def run_flow_run(
    flow_run_id: str, env: dict[str, str], cwd: str | None, settings_changed: bool
) -> None:
    """The forked child's entry point (raises ``SystemExit`` with the engine's exit code)."""
    from executors import forkserver_preload

    forkserver_preload.die_with_parent(forkserver_preload.FORKSERVER_PID)
    _adopt_environment(env, settings_changed)
    if cwd:
        os.chdir(cwd)
    try:
        _run(UUID(flow_run_id))
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


def _run(flow_run_id: UUID) -> None:
    """``prefect.engine``'s ``__main__`` block (Prefect 3.9.1), for one flow run id."""
    from prefect._internal.control_listener import configure_from_env
    from prefect._internal.metrics import RunMetrics
    from prefect.engine import _drive_run_flow_result, handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow, load_flow_run, run_flow

    configure_from_env()
    with handle_engine_signals(flow_run_id):
        flow_run = load_flow_run(flow_run_id=flow_run_id)
        run_logger = flow_run_logger(flow_run=flow_run)
        try:
            flow = load_flow(flow_run)
        except Exception:
            run_logger.error(
                "Unexpected exception encountered when trying to load flow", exc_info=True
            )
            raise
        with RunMetrics(flow_run, flow):
            result = run_flow(flow, flow_run=flow_run, error_logger=run_logger)
            _drive_run_flow_result(flow, result)


def _flush() -> None:
    """Send the run's queued logs and events now: ``os._exit`` would drop them."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        try:
            service.drain_all(timeout=FLUSH_SECONDS)
        except Exception as exc:  # noqa: BLE001 - exiting anyway; say why on stderr
            print(f"pmjobs child: could not flush {service.__name__}: {exc}", file=sys.stderr)
