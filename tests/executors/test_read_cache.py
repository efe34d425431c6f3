"""executors.read_cache: the worker's short-lived cache of deployment and flow reads (pure code,
a fake clock and a fake client)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from pydantic import BaseModel

from executors.read_cache import ReadCache


class Deployment(BaseModel):
    id: uuid.UUID
    job_variables: dict[str, Any]


class FakeClient:
    def __init__(self) -> None:
        self.reads: list[tuple[str, uuid.UUID]] = []
        self.version = 0

    async def read_deployment(self, deployment_id: uuid.UUID) -> Deployment:
        self.reads.append(("deployment", deployment_id))
        return Deployment(id=deployment_id, job_variables={"env": {"V": str(self.version)}})

    async def read_flow(self, flow_id: uuid.UUID) -> Deployment:
        self.reads.append(("flow", flow_id))
        return Deployment(id=flow_id, job_variables={})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_reads_are_answered_from_memory_until_the_ttl_passes() -> None:
    client, clock = FakeClient(), Clock()
    ReadCache(ttl=10, clock=clock).install(client)
    dep, flow = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> list[str]:
        seen = []
        for _ in range(3):
            seen.append((await client.read_deployment(dep)).job_variables["env"]["V"])
            await client.read_flow(flow)
        client.version = 1  # redeployed
        clock.now += 9.9
        seen.append((await client.read_deployment(dep)).job_variables["env"]["V"])
        clock.now += 0.1  # the entry is now ttl seconds old: read again
        seen.append((await client.read_deployment(dep)).job_variables["env"]["V"])
        return seen

    assert asyncio.run(scenario()) == ["0", "0", "0", "0", "1"]
    assert client.reads == [("deployment", dep), ("flow", flow), ("deployment", dep)]


def test_each_caller_gets_its_own_copy() -> None:
    """Prefect merges a run's job variables into the deployment's env dict in place."""
    client = FakeClient()
    ReadCache(ttl=10, clock=Clock()).install(client)
    dep = uuid.uuid4()

    async def scenario() -> dict[str, str]:
        first = await client.read_deployment(dep)
        first.job_variables["env"]["RUN_ONLY"] = "x"
        return (await client.read_deployment(dep)).job_variables["env"]

    assert asyncio.run(scenario()) == {"V": "0"}


def test_different_ids_are_cached_apart() -> None:
    client = FakeClient()
    ReadCache(ttl=10, clock=Clock()).install(client)
    a, b = uuid.uuid4(), uuid.uuid4()

    async def scenario() -> list[uuid.UUID]:
        return [(await client.read_deployment(x)).id for x in (a, b, a, b)]

    assert asyncio.run(scenario()) == [a, b, a, b]
    assert client.reads == [("deployment", a), ("deployment", b)]
