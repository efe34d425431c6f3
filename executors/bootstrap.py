"""Make Prefect ready for pmjobs: the work pool, its four priority queues, the pipelines.

The pool's type is pmjobs' own worker type (``pmjobs-process``), so only pmjobs nodes serve it;
pools of the stock type "process" made by earlier versions are kept (pmjobs nodes serve those
too).

Idempotent: run at every start. Pipelines (deployments) are declared only in ``prefect.yaml``
and applied with Prefect's own ``prefect deploy --all``.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import PREFECT_API_URL, temporary_settings

from api.jobs.status import Priority
from executors.worker import WORKER_TYPE, PmJobsWorker

ROOT = Path(__file__).resolve().parent.parent


async def ensure_work_pool(pool: str, api_url: str) -> None:
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        await _ensure_work_pool(pool)


async def _ensure_work_pool(pool: str) -> None:
    async with get_client() as client:
        try:
            await client.read_work_pool(pool)
        except ObjectNotFound:
            with contextlib.suppress(ObjectAlreadyExists):
                await client.create_work_pool(
                    WorkPoolCreate(
                        name=pool,
                        type=WORKER_TYPE,
                        base_job_template=PmJobsWorker.get_default_base_job_template(),
                        description="pmjobs execution nodes",
                    )
                )
        existing = {q.name: q for q in await client.read_work_queues(work_pool_name=pool)}
        for priority in Priority:
            if priority.queue not in existing:
                with contextlib.suppress(ObjectAlreadyExists):
                    await client.create_work_queue(
                        name=priority.queue,
                        work_pool_name=pool,
                        priority=priority.rank,
                        description=f"{priority.value} priority jobs",
                    )
        # Prefect renumbers priorities on insert; set them explicitly, lowest last.
        queues = {q.name: q for q in await client.read_work_queues(work_pool_name=pool)}
        ranked = [queues[p.queue] for p in Priority]
        others = [q for n, q in queues.items() if n not in {p.queue for p in Priority}]
        for rank, queue in enumerate([*ranked, *others], start=1):
            if queue.priority != rank:
                await client.update_work_queue(queue.id, priority=rank)


def deploy_pipelines(api_url: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": api_url, "PMJOBS_ROOT": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "--no-prompt",
        "deploy",
        "--all",
        "--prefect-file",
        str(ROOT / "prefect.yaml"),
    ]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(
            f"prefect deploy failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
