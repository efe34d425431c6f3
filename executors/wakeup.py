"""Wake a node the moment a run of its work pool is scheduled, instead of at its next poll.

Prefect's server publishes every flow-run state change as an event; this subscribes to
``prefect.flow-run.Scheduled`` events of one pool over Prefect's event websocket. Each event
only *wakes* the worker, which then runs its normal pick-up cycle (so queue priorities and
FIFO order are Prefect's, unchanged). The worker keeps a slow poll as the fallback for missed
events. After every (re)connection the callback gets ``None``: events may have been missed
while disconnected, so the worker should look once. The subscription outlives server restarts
by reconnecting with a capped back-off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from uuid import UUID

from prefect.events import Event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

log = logging.getLogger("pmjobs.wakeup")

SCHEDULED_EVENT = "prefect.flow-run.Scheduled"
RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0


def scheduled_runs_filter(pool_id: UUID) -> EventFilter:
    return EventFilter(
        event=EventNameFilter(name=[SCHEDULED_EVENT]),
        any_resource=EventAnyResourceFilter(id=[f"prefect.work-pool.{pool_id}"]),
    )


def flow_run_id(event: Event) -> UUID | None:
    try:
        return UUID(event.resource.id.removeprefix("prefect.flow-run."))
    except ValueError:
        return None


async def watch_scheduled_runs(pool_id: UUID, on_scheduled: Callable[[UUID | None], None]) -> None:
    """Call ``on_scheduled(run id)`` per Scheduled event of the pool, forever (cancel to stop)."""
    delay = RETRY_SECONDS
    while True:
        try:
            subscriber = get_events_subscriber(
                filter=scheduled_runs_filter(pool_id), reconnection_attempts=0
            )
            async with subscriber:
                log.info("listening for scheduled runs of work pool %s", pool_id)
                delay = RETRY_SECONDS
                on_scheduled(None)
                async for event in subscriber:
                    on_scheduled(flow_run_id(event))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - server restarting or unreachable: retry
            log.info("event stream unavailable (%s); retrying in %.1f s", exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_SECONDS)
