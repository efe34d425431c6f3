"""The order the queue view promises: taken runs first, then due runs by priority and FIFO,
then runs scheduled for later by time (pure code: JobRecord values, no Prefect)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from api.prefect_gateway import JobRecord, take_order

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _run(name: str, queue: str, minutes: float, state: str = "SCHEDULED") -> JobRecord:
    return JobRecord(
        id=uuid.uuid4(),
        name=name,
        job_type="Analysis",
        state_type=state,
        state_name=state.title(),
        state_message=None,
        queue=queue,
        tags=(),
        parameters={},
        deployment_id=None,
        created=NOW,
        updated=NOW,
        expected_start=NOW + timedelta(minutes=minutes),
        start_time=None,
        end_time=None,
        total_run_time=0.0,
        idempotency_key=None,
    )


def test_take_order() -> None:
    runs = [
        _run("later-critical", "critical", 30),
        _run("low-old", "low", -10),
        _run("normal", "normal", -1),
        _run("critical-new", "critical", -0.5),
        _run("critical-old", "critical", -5),
        _run("taken", "low", -20, state="PENDING"),
        _run("soon-low", "low", 5),
    ]
    ordered = [r.name for r in sorted(runs, key=take_order(NOW))]
    assert ordered == [
        "taken",
        "critical-old",
        "critical-new",
        "normal",
        "low-old",
        "soon-low",
        "later-critical",
    ]
