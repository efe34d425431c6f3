"""An execution node: a warm fork server, pmjobs' worker, and the metrics it publishes.

The fork server starts first (from the main thread, which it must outlive: see
``executors.forkserver``) and preloads the flows; then the worker (``executors.worker``) picks
runs up on Prefect's events, polling only every ``FALLBACK_POLL_SECONDS`` in case one is missed.
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
from collections.abc import Callable

import psutil
from prefect import get_client
from prefect.client.schemas.actions import VariableCreate, VariableUpdate
from prefect.settings import PREFECT_WORKER_QUERY_SECONDS, temporary_settings

from executors import prefect_tls
from executors.forkserver import ForkServer
from executors.metrics import sample_host
from executors.worker import PmJobsWorker

log = logging.getLogger("pmjobs.node")

PUBLISH_SECONDS = 2.0
FALLBACK_POLL_SECONDS = 5  # events wake the worker at once; this only catches a missed one
NODE_VARIABLE_PREFIX = "pmjobs_node_"


def variable_name(node: str) -> str:
    return NODE_VARIABLE_PREFIX + re.sub(r"[^a-z0-9_]", "_", node.lower())


async def publish_metrics(node: str, capacity: int, active_jobs: Callable[[], int]) -> None:
    """``active_jobs``: the node's flow runs with a live process (the worker tracks them; the
    node's own children are the fork server and its helpers, not the runs)."""
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


async def run_node(node: str, capacity: int, work_pool: str, forkserver: ForkServer) -> None:
    worker = PmJobsWorker(
        work_pool_name=work_pool,
        name=node,
        limit=capacity,
        create_pool_if_not_found=False,
        heartbeat_interval_seconds=5,
        forkserver=forkserver,
    )
    publisher = asyncio.create_task(publish_metrics(node, capacity, lambda: worker.active_runs))
    try:
        with temporary_settings(updates={PREFECT_WORKER_QUERY_SECONDS: FALLBACK_POLL_SECONDS}):
            await worker.start()
    finally:
        publisher.cancel()


def main(node: str, capacity: int, work_pool: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("pmjobs").setLevel(logging.INFO)  # Prefect's logging config sets WARNING
    os.environ["PMJOBS_NODE_NAME"] = node  # before the fork server: its children inherit it
    prefect_tls.install()
    forkserver = ForkServer()
    forkserver.start()
    asyncio.run(run_node(node, capacity, work_pool, forkserver))
