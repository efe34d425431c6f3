"""One verified TLS context for all of Prefect's API clients in a process, instead of one each.

Prefect 3.9.1 builds a new ``ssl.create_default_context(cafile=certifi.where())`` for every
``PrefectClient``/``SyncPrefectClient`` (and server version check) it creates, even for a
plain ``http://`` API. Parsing the CA bundle costs 20-30 ms of CPU each time (over 100 ms on
a busy machine), and a worker and its flow run create several clients per run. A TLS context
is meant to be shared: this gives those Prefect modules a view of ``ssl`` whose
``create_default_context`` returns one cached context per CA file. Calls without a CA file
(Prefect's "skip verification" branch, which then edits the context it gets) still get a
fresh context.
"""

from __future__ import annotations

import functools
import ssl
import types
from typing import Any


@functools.cache
def _verified_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=cafile, capath=capath)


def _create_default_context(
    purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
    *,
    cafile: str | None = None,
    capath: str | None = None,
    cadata: Any = None,
) -> ssl.SSLContext:
    if (cafile or capath) and cadata is None and purpose == ssl.Purpose.SERVER_AUTH:
        return _verified_context(cafile, capath)
    return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)


class _SharedContextSSL(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)


def install() -> None:
    """Make Prefect's API clients in this process share their verified TLS context."""
    import prefect._internal.version_checking as version_checking
    import prefect.client.orchestration as orchestration

    shim = _SharedContextSSL("ssl")
    shim.create_default_context = _create_default_context  # type: ignore[attr-defined]
    for module in (orchestration, version_checking):
        if not isinstance(module.ssl, _SharedContextSSL):
            module.ssl = shim  # type: ignore[attr-defined]
