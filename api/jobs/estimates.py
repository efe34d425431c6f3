"""Estimated durations and start times from measured history, not constants.

Duration: the median processing rate (seconds per event) of the last completed runs of the same
job type, times the new job's dataset size; without a dataset size, the median duration.
Fallback when a job type has no completed run yet: ``FALLBACK_BASE_SECONDS`` plus
``FALLBACK_SECONDS_PER_EVENT`` per event. The range shown ("45-60 dakika") is the interquartile
range of the history scaled the same way.

History is cached for a few seconds: estimates are advice, and a submit burst should not cost a
history query each.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api.prefect_gateway import JobRecord, NodeRecord, PrefectGateway

FALLBACK_BASE_SECONDS = 30.0
FALLBACK_SECONDS_PER_EVENT = 50e-6
_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class DurationEstimate:
    seconds: float
    low: float
    high: float
    basis: str  # "history" or "fallback"


def _events(record: JobRecord) -> int | None:
    dataset = record.job.get("dataset") or {}
    events = dataset.get("events")
    return int(events) if isinstance(events, int) and events > 0 else None


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def estimate_from_history(history: list[JobRecord], events: int | None) -> DurationEstimate:
    durations = [r.total_run_time for r in history if r.total_run_time > 0]
    if not durations:
        seconds = FALLBACK_BASE_SECONDS + FALLBACK_SECONDS_PER_EVENT * (events or 0)
        return DurationEstimate(seconds, seconds * 0.75, seconds * 1.5, "fallback")
    rates = [r.total_run_time / e for r in history if r.total_run_time > 0 and (e := _events(r))]
    if events and rates:
        low, mid, high = (q * events for q in _quartiles(rates))
        floor = min(durations)
        return DurationEstimate(max(mid, floor), max(low, floor), max(high, floor), "history")
    low, mid, high = _quartiles(durations)
    return DurationEstimate(mid, low, high, "history")


class Estimator:
    def __init__(self, gateway: PrefectGateway) -> None:
        self._gateway = gateway
        self._history: dict[str, tuple[float, list[JobRecord]]] = {}
        self._nodes: tuple[float, list[NodeRecord]] | None = None

    async def history(self, job_type: str) -> list[JobRecord]:
        cached = self._history.get(job_type)
        if cached and time.monotonic() - cached[0] < _CACHE_SECONDS:
            return cached[1]
        records = await self._gateway.finished(job_type)
        self._history[job_type] = (time.monotonic(), records)
        return records

    async def nodes(self) -> list[NodeRecord]:
        if self._nodes and time.monotonic() - self._nodes[0] < _CACHE_SECONDS:
            return self._nodes[1]
        nodes = await self._gateway.nodes()
        self._nodes = (time.monotonic(), nodes)
        return nodes

    async def duration(self, job_type: str, events: int | None) -> DurationEstimate:
        return estimate_from_history(await self.history(job_type), events)

    async def capacity(self) -> int:
        nodes = await self.nodes()
        return sum(int(n.metrics.get("jobCapacity", 1)) for n in nodes if n.online) or 1

    async def start_time(
        self, ahead: int, job_type: str, not_before: datetime | None = None
    ) -> datetime:
        """Now (or the scheduled time) plus the time the capacity needs for the jobs ahead."""
        typical = (await self.duration(job_type, None)).seconds
        wait = typical * ahead / await self.capacity()
        start = max(datetime.now(UTC), not_before or datetime.now(UTC))
        return start + timedelta(seconds=wait)
