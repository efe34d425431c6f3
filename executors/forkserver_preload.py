"""Imported once, inside the node's fork server, before it forks any flow run.

Importing Prefect, pandas, pm4py and the flows costs ~4 s; done here once, every forked child
starts with them loaded (and with Prefect's clients sharing one TLS context, see
``executors.prefect_tls``). ``gc.freeze()`` then moves these objects out of the collector's reach,
so children do not copy the shared pages just by collecting (idle child: 78 MB -> 25 MB).
The fork server also dies with its node (``PR_SET_PDEATHSIG``), and its children die with it,
so a node killed with SIGKILL leaves no flow process behind.

Importing this module elsewhere only imports those libraries: the side effects need
``PMJOBS_FORKSERVER_PARENT`` in the environment, which the node sets only while it starts its
fork server (and which the fork server removes, so flow runs do not inherit it).
"""

from __future__ import annotations

import ctypes
import encodings.idna  # noqa: F401
import gc
import os
import signal
import sys
from pathlib import Path
from types import ModuleType

import anyio._backends._asyncio  # noqa: F401
import pandas  # noqa: F401
import pm4py  # noqa: F401
import prefect.deployments.steps  # noqa: F401
import prefect.engine  # noqa: F401
import prefect.flow_engine  # noqa: F401
import prefect.runner.runner  # noqa: F401
import typer  # noqa: F401  (with api.settings: what the node's __main__ needs in each child)
from prefect._internal import control_listener, observers  # noqa: F401

import api.settings  # noqa: F401
import flows.analysis  # noqa: F401
import flows.data_enrichment  # noqa: F401
import flows.notebook  # noqa: F401
import flows.process_mining  # noqa: F401
from executors import child, prefect_tls  # noqa: F401
from executors.forkserver import PARENT_ENV

PR_SET_PDEATHSIG = 1
FLOW_MODULES = (flows.analysis, flows.data_enrichment, flows.notebook, flows.process_mining)


def _fingerprint(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


# the flow files as they were when imported here: a child uses a preloaded flow only while its
# file is unchanged (a deployment pointing at an edited file gets it loaded afresh)
PRELOADED_FLOWS: dict[Path, tuple[ModuleType, tuple[int, int]]] = {
    Path(m.__file__).resolve(): (m, _fingerprint(Path(m.__file__)))
    for m in FLOW_MODULES
    if m.__file__
}


def preloaded_module(path: Path) -> ModuleType | None:
    """The preloaded flow module of this file, if the file has not changed since."""
    try:
        resolved = path.resolve()
        entry = PRELOADED_FLOWS.get(resolved)
        if entry is None or _fingerprint(resolved) != entry[1]:
            return None
    except OSError:
        return None
    return entry[0] if sys.modules.get(entry[0].__name__) is entry[0] else None


def die_with_parent(expected_parent: int | None = None) -> None:
    """Ask Linux to SIGKILL this process when its parent dies; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)  # the parent died before the request took effect


prefect_tls.install()

FORKSERVER_PID: int | None = None
if PARENT_ENV in os.environ:
    die_with_parent(int(os.environ.pop(PARENT_ENV)))
    FORKSERVER_PID = os.getpid()
    gc.collect()
    gc.freeze()
