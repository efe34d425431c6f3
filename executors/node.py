"""An execution node: a Prefect process worker plus the metrics it publishes about itself.

OSS Prefect keeps only a worker's name, heartbeat time and status (heartbeat metadata is
dropped), so each node writes its CPU, memory, running jobs and capacity to a Prefect variable
``pmjobs_node_<name>`` every few seconds; the API joins that with Prefect's worker list.
Flow-run processes inherit ``PMJOBS_NODE_NAME`` and report it as their ``executionNode``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time

import psutil
from prefect import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.workers.process import ProcessWorker

from executors.metrics import sample_host

log = logging.getLogger("pmjobs.node")

PUBLISH_SECONDS = 2.0
NODE_VARIABLE_PREFIX = "pmjobs_node_"


def variable_name(node: str) -> str:
    return NODE_VARIABLE_PREFIX + re.sub(r"[^a-z0-9_]", "_", node.lower())


def active_jobs() -> int:
    """Flow runs this node is executing = its live child processes."""
    try:
        return sum(1 for c in psutil.Process().children() if c.is_running())
    except psutil.Error:
        return 0


async def publish_metrics(node: str, capacity: int) -> None:
    name = variable_name(node)
    psutil.cpu_percent(interval=None)  # prime the counter
    async with get_client() as client:
        while True:
            host = sample_host()
            value = {
                "nodeId": node,
                "cpuUsage": round(host.cpu_percent),
                "memoryUsage": round(host.memory_percent),
                "activeJobs": active_jobs(),
                "jobCapacity": capacity,
                "cpuCores": host.cpu_cores,
                "memoryTotalBytes": host.memory_total_bytes,
                "memoryUsedBytes": host.memory_used_bytes,
                "pid": os.getpid(),
                "publishedAt": time.time(),
            }
            try:
                existing = await client.read_variable_by_name(name)
                if existing is None:
                    await client.create_variable(
                        VariableCreate(name=name, value=value, tags=["pmjobs"])
                    )
                else:
                    await client.update_variable(VariableUpdate(name=name, value=value))
            except Exception as exc:  # noqa: BLE001 - the server may be restarting
                log.warning("could not publish node metrics: %s", exc)
            await asyncio.sleep(PUBLISH_SECONDS)


async def run_node(node: str, capacity: int, work_pool: str) -> None:
    os.environ["PMJOBS_NODE_NAME"] = node
    publisher = asyncio.create_task(publish_metrics(node, capacity))
    try:
        async with ProcessWorker(
            work_pool_name=work_pool,
            name=node,
            limit=capacity,
            create_pool_if_not_found=False,
            heartbeat_interval_seconds=5,
        ) as worker:
            await worker.start()
    finally:
        publisher.cancel()


def main(node: str, capacity: int, work_pool: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(run_node(node, capacity, work_pool))
