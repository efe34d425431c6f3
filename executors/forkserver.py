"""The node's fork server: a warm process that forks one single-use child per flow run.

Starting ``python -m prefect.engine`` per run costs ~4 s of imports (Prefect, pandas, pm4py);
forking a process that already imported them costs milliseconds. This uses the standard
library's fork server (``multiprocessing`` "forkserver" context): it reports each child's pid
and exit code back to the node, and exits when the node does. The fork server preloads
``executors.forkserver_preload`` (which also makes it die with the node, and its children with
it); each child runs ``executors.child.run_flow_run`` once and exits.

The fork server must be started from the node's main thread: Linux's parent-death signal fires
when the *thread* that started a process ends.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.forkserver
import os
import threading
import time
from multiprocessing.process import BaseProcess

from executors import child

log = logging.getLogger("pmjobs.forkserver")

PARENT_ENV = "PMJOBS_FORKSERVER_PARENT"
PRELOAD = ["executors.forkserver_preload"]


class ForkServer:
    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self.pid: int | None = None

    def start(self) -> None:
        """Start the fork server and wait until it has preloaded everything (a few seconds)."""
        started = time.monotonic()
        self._ensure_running()
        probe = self._ctx.Process(target=child.probe, name="pmjobs-probe")
        probe.start()
        probe.join()
        if probe.exitcode != child.PROBE_OK:
            raise RuntimeError(
                f"the fork server did not preload the flows (probe exit code {probe.exitcode}); "
                "run `python -c 'import executors.forkserver_preload'` to see the import error"
            )
        log.info("fork server %s ready in %.1f s", self.pid, time.monotonic() - started)

    def spawn(
        self, env: dict[str, str], cwd: str | None, settings_changed: bool, handoff: child.Handoff
    ) -> BaseProcess:
        """Fork a child that runs this flow run; returns once it has a pid (milliseconds)."""
        self._ensure_running()
        process = self._ctx.Process(
            target=child.run_flow_run,
            args=(env, cwd, settings_changed, handoff),
            name=f"pmjobs-run-{handoff.flow_run_id}",
        )
        process.start()
        return process

    def _ensure_running(self) -> None:
        """(Re)start the fork server if needed, telling it which process it must die with."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the fork server must be started from the node's main thread")
        os.environ[PARENT_ENV] = str(os.getpid())
        try:
            multiprocessing.forkserver.ensure_running()
        finally:
            os.environ.pop(PARENT_ENV, None)
        pid = multiprocessing.forkserver._forkserver._forkserver_pid  # noqa: SLF001
        if self.pid is not None and pid != self.pid:
            log.warning("fork server %s died; started %s (it preloads again)", self.pid, pid)
        self.pid = pid
