"""api.prefect_gateway.FinishedProgress: progress reports of finished jobs kept in memory (pure
code; the gateway's use of it is covered by the API tests)."""

from __future__ import annotations

from api.prefect_gateway import FinishedProgress, JobRecord, ProgressRecord
from tests.unit.records import job_record


def record(state_type: str) -> JobRecord:
    return job_record(state_type)


def report(percentage: float) -> ProgressRecord:
    return ProgressRecord(percentage=percentage, stage="s", details={}, updated=None)


def test_only_finished_jobs_are_kept_with_or_without_a_report() -> None:
    kept = FinishedProgress()
    done, crashed, running, queued = (
        record("COMPLETED"),
        record("CRASHED"),
        record("RUNNING"),
        record("SCHEDULED"),
    )
    cancelling = record("CANCELLING")
    kept.keep([done, crashed, running, queued, cancelling], {done.id: report(100)})
    assert done.id in kept and kept.get(done.id) == report(100)
    assert crashed.id in kept and kept.get(crashed.id) is None  # finished without a report
    for unfinished in (running, queued, cancelling):
        assert unfinished.id not in kept


def test_the_least_recently_used_entry_goes_first() -> None:
    kept = FinishedProgress(size=2)
    a, b, c = record("COMPLETED"), record("FAILED"), record("CANCELLED")
    kept.keep([a, b], {})
    kept.get(a.id)  # a is now the most recently used
    kept.keep([c], {})
    assert a.id in kept and c.id in kept and b.id not in kept
