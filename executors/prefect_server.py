"""The Prefect server pmjobs runs: stock Prefect plus one route Prefect lacks.

Prefect cannot move a scheduled flow run to another work queue (``FlowRunUpdate`` has no
``work_queue_name``), yet the contract lets a user change a queued job's priority while keeping
its jobId. ``POST /api/pmjobs/flow_runs/{id}/work_queue`` does exactly that, atomically and only
while the run is still SCHEDULED, using Prefect's own models and database session.

Start with: ``uvicorn --factory executors.prefect_server:create_app``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from fastapi import Body, FastAPI, HTTPException
from prefect.server.api.server import create_app as create_prefect_app
from prefect.server.database import provide_database_interface
from prefect.server.database.configurations import AioSqliteConfiguration
from prefect.server.models import workers as worker_models
from prefect.server.schemas.states import StateType


async def move_flow_run(
    id: uuid.UUID,
    work_pool_name: str = Body(...),
    work_queue_name: str = Body(...),
) -> dict[str, str]:
    db = provide_database_interface()
    async with db.session_context(begin_transaction=True) as session:
        queue = await worker_models.read_work_queue_by_name(
            session=session, work_pool_name=work_pool_name, work_queue_name=work_queue_name
        )
        if queue is None:
            raise HTTPException(404, f"work queue {work_queue_name!r} not found")
        result = await session.execute(
            sa.update(db.FlowRun)
            .where(db.FlowRun.id == id, db.FlowRun.state_type == StateType.SCHEDULED)
            .values(work_queue_id=queue.id, work_queue_name=queue.name)
        )
        if result.rowcount != 1:
            raise HTTPException(409, "flow run is not scheduled")
    return {"id": str(id), "work_queue_name": queue.name}


def _sqlite_writes_take_the_lock_first() -> None:
    """Make every SQLite transaction ``BEGIN IMMEDIATE``.

    Prefect opens most transactions DEFERRED: a transaction that read first and then writes
    must upgrade its lock, and in WAL mode that upgrade fails at once with "database is
    locked" (the busy timeout does not apply) when another writer got there first — measured
    here under concurrent submits and worker heartbeats. Taking the write lock up front turns
    those failures into short waits bounded by Prefect's 60 s busy timeout. PostgreSQL is
    unaffected.
    """
    original = AioSqliteConfiguration.begin_transaction
    if getattr(original, "__pmjobs__", False):
        return

    @asynccontextmanager
    async def begin_immediate(
        self: AioSqliteConfiguration, session: Any, with_for_update: bool = False
    ) -> AsyncIterator[Any]:
        async with original(self, session, with_for_update=True) as transaction:
            yield transaction

    begin_immediate.__pmjobs__ = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_immediate  # type: ignore[method-assign]


def create_app() -> FastAPI:
    _sqlite_writes_take_the_lock_first()
    app = create_prefect_app()
    app.api_app.add_api_route(  # type: ignore[attr-defined]
        "/pmjobs/flow_runs/{id}/work_queue", move_flow_run, methods=["POST"]
    )
    return app
