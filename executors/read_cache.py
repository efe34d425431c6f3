"""A short-lived cache of the deployment and flow reads on the worker's pick-up path.

Prefect 3.9.1's worker reads a run's deployment twice and its flow once before it can start the
run (``_submit_run`` checks the deployment still exists, ``resolve_for_flow_run`` reads both
again): three sequential round trips on every pick-up, for objects that change only when a
pipeline is redeployed. Here they are answered from memory for ``ttl`` seconds. Each caller
gets a deep copy: ``resolve_for_flow_run`` merges job variables *into* the deployment's ``env``
dict, which must not leak into the next run. A deleted or redeployed deployment is noticed
after at most ``ttl`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel

DEFAULT_TTL_SECONDS = 10.0

Model = TypeVar("Model", bound=BaseModel)


class ReadCache:
    def __init__(
        self, ttl: float = DEFAULT_TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[tuple[str, UUID], tuple[float, BaseModel]] = {}

    def cached(
        self, kind: str, read: Callable[[UUID], Awaitable[Model]]
    ) -> Callable[[UUID], Awaitable[Model]]:
        """``read`` answered from the cache while an entry is younger than ``ttl``."""

        async def cached_read(object_id: UUID) -> Model:
            key = (kind, object_id)
            entry = self._entries.get(key)
            now = self._clock()
            if entry is None or now - entry[0] >= self.ttl:
                value = await read(object_id)
                self._entries[key] = entry = (now, value)
            return entry[1].model_copy(deep=True)  # type: ignore[return-value]

        return cached_read

    def install(self, client: Any) -> None:
        """Route ``client.read_deployment`` and ``client.read_flow`` through the cache."""
        client.read_deployment = self.cached("deployment", client.read_deployment)
        client.read_flow = self.cached("flow", client.read_flow)
