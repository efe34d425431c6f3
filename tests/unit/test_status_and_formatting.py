"""Pure unit tests: status mapping, human-readable formatting, duration estimates, progress report.

No stack, no Prefect server: these modules are plain code. The expected values are the ones
CONTRACT.md and the original specification document.
"""

from __future__ import annotations

from typing import Any

import pytest
from prefect.client.schemas.objects import StateType
from prefect.states import (
    AwaitingRetry,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    Late,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    State,
    Suspended,
)

from api import formatting
from api.jobs import estimates
from api.jobs.estimates import DurationEstimate, estimate_from_history
from api.jobs.status import TERMINAL, JobStatus, Priority, job_status, state_types
from flows.steps.progress_report import ProgressReport
from tests.unit.records import job_record

# -- status -----------------------------------------------------------------------------------

# CONTRACT.md: Scheduled/Pending/Late -> Queued; Running, Cancelling, Paused -> Running;
# Completed -> Completed; Failed, Crashed, TimedOut -> Failed; Cancelled -> Cancelled.
CONTRACT_BY_TYPE = {
    StateType.SCHEDULED: JobStatus.QUEUED,
    StateType.PENDING: JobStatus.QUEUED,
    StateType.RUNNING: JobStatus.RUNNING,
    StateType.CANCELLING: JobStatus.RUNNING,
    StateType.PAUSED: JobStatus.RUNNING,
    StateType.COMPLETED: JobStatus.COMPLETED,
    StateType.FAILED: JobStatus.FAILED,
    StateType.CRASHED: JobStatus.FAILED,
    StateType.CANCELLED: JobStatus.CANCELLED,
}


def test_contract_table_covers_every_prefect_state_type() -> None:
    assert set(CONTRACT_BY_TYPE) == set(StateType)


@pytest.mark.parametrize("state_type", list(StateType), ids=lambda t: t.value)
def test_every_state_type_maps_as_the_contract_says(state_type: StateType) -> None:
    expected = CONTRACT_BY_TYPE[state_type]
    assert job_status(state_type) is expected
    # the gateway hands over plain strings; any spelling of the type maps the same
    assert job_status(state_type.value) is expected
    assert job_status(state_type.value.lower()) is expected


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (Scheduled(), JobStatus.QUEUED),
        (Late(), JobStatus.QUEUED),
        (AwaitingRetry(), JobStatus.QUEUED),
        (Pending(), JobStatus.QUEUED),
        (Running(), JobStatus.RUNNING),
        (Retrying(), JobStatus.RUNNING),
        (Cancelling(), JobStatus.RUNNING),
        (Paused(), JobStatus.RUNNING),
        (Suspended(), JobStatus.RUNNING),
        (Completed(), JobStatus.COMPLETED),
        (Failed(), JobStatus.FAILED),
        (State(type=StateType.FAILED, name="TimedOut"), JobStatus.FAILED),
        (Crashed(), JobStatus.FAILED),
        (Cancelled(), JobStatus.CANCELLED),
    ],
    ids=lambda v: v.name if isinstance(v, State) else str(v),
)
def test_named_prefect_states_map_by_their_type(state: State, expected: JobStatus) -> None:
    """Late is a SCHEDULED state and TimedOut a FAILED one: the name never decides the status."""
    assert job_status(state.type) is expected
    assert job_status(state.type.value) is expected


def test_no_state_yet_is_queued() -> None:
    assert job_status(None) is JobStatus.QUEUED


def test_unknown_state_type_is_not_silently_mapped() -> None:
    with pytest.raises((KeyError, ValueError)):
        job_status("EXPLODED")


@pytest.mark.parametrize("status", list(JobStatus), ids=str)
def test_state_types_round_trip(status: JobStatus) -> None:
    types = state_types(status)
    assert types, f"{status} covers no Prefect state type"
    assert all(job_status(t) is status for t in types)
    assert set(types) == {t.value for t, s in CONTRACT_BY_TYPE.items() if s is status}


def test_state_types_partition_all_prefect_types() -> None:
    covered = [t for s in JobStatus for t in state_types(s)]
    assert len(covered) == len(set(covered)), "a state type belongs to two statuses"
    assert set(covered) == {t.value for t in StateType}


def test_status_and_enum_vocabulary_is_the_documented_one() -> None:
    assert [s.value for s in JobStatus] == ["Queued", "Running", "Completed", "Failed", "Cancelled"]
    assert {p.value for p in Priority} == {"Low", "Normal", "High", "Critical"}
    assert {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED} == TERMINAL


def test_priority_order_and_work_queues() -> None:
    ordered = sorted(Priority, key=lambda p: p.rank)
    assert ordered == [Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW]
    for p in Priority:
        assert Priority.from_queue(p.queue) is p
    assert Priority.from_queue(None) is Priority.NORMAL


# -- formatting (the documented human forms) -------------------------------------------------


def test_elapsed_time_form() -> None:
    assert formatting.duration(8 * 60 + 32) == "8 dakika 32 saniye"
    assert formatting.duration(23 * 60) == "23 dakika"
    assert formatting.duration(42) == "42 saniye"
    assert formatting.duration(0) == "0 saniye"
    assert formatting.duration(3600 + 5 * 60) == "1 saat 5 dakika"
    assert formatting.duration(None) is None


def test_size_form() -> None:
    assert formatting.size(2.1e9) == "2.1 GB"
    assert formatting.size(890e6) == "890 MB"
    assert formatting.size(2.3e12) == "2.3 TB"
    assert formatting.size(64e9) == "64.0 GB"
    assert formatting.size(None) is None


def test_percent_form() -> None:
    assert formatting.percent(0.45) == "45%"
    assert formatting.percent(1.0) == "100%"
    assert formatting.percent(None) is None


def test_rate_form() -> None:
    assert formatting.rate(1250) == "1250 kayıt/saniye"
    assert formatting.rate(1249.6) == "1250 kayıt/saniye"
    assert formatting.rate(None) is None


def test_estimated_duration_range_form() -> None:
    assert formatting.duration_range(45 * 60, 60 * 60) == "45-60 dakika"
    assert formatting.duration_range(None, 60) is None


def test_minutes_form() -> None:
    assert formatting.minutes(4.2 * 60) == "4.2 dakika"
    assert formatting.minutes(18.5 * 60) == "18.5 dakika"
    assert formatting.minutes(None) is None


# -- estimates ---------------------------------------------------------------------------------


def _record(total_run_time: float, events: int | None = None, job_type: str = "Analysis") -> Any:
    job: dict[str, Any] = {"tenantId": "t", "projectId": "p"}
    if events is not None:
        job["dataset"] = {"events": events}
    return job_record(
        name="history",
        job_type=job_type,
        parameters={"parameters": {}, "job": job},
        total_run_time=total_run_time,
    )


def _sane(e: DurationEstimate) -> None:
    assert 0 < e.low <= e.seconds <= e.high


def test_fallback_without_history() -> None:
    e = estimate_from_history([], None)
    assert e.basis == "fallback"
    assert e.seconds == pytest.approx(estimates.FALLBACK_BASE_SECONDS)
    _sane(e)


def test_fallback_grows_with_the_dataset() -> None:
    small = estimate_from_history([], 1_000)
    big = estimate_from_history([], 1_000_000)
    assert small.basis == big.basis == "fallback"
    assert big.seconds - small.seconds == pytest.approx(
        estimates.FALLBACK_SECONDS_PER_EVENT * 999_000
    )
    _sane(big)


def test_history_without_runtime_is_no_history() -> None:
    e = estimate_from_history([_record(0.0, 1000), _record(0.0)], 5000)
    assert e.basis == "fallback"


def test_history_scales_by_events() -> None:
    # three past runs at 1 ms per event (with different sizes)
    history = [_record(1.0, 1_000), _record(2.0, 2_000), _record(4.0, 4_000)]
    e10 = estimate_from_history(history, 10_000)
    e20 = estimate_from_history(history, 20_000)
    assert e10.basis == e20.basis == "history"
    assert e10.seconds == pytest.approx(10.0)
    assert e20.seconds == pytest.approx(20.0)
    _sane(e20)


def test_history_estimate_is_not_below_the_fastest_run() -> None:
    history = [_record(3.0, 3_000), _record(6.0, 6_000)]
    e = estimate_from_history(history, 10)  # 10 ms by rate, but no run ever took < 3 s
    assert e.basis == "history"
    assert e.seconds == pytest.approx(3.0)
    assert e.low >= 3.0


def test_history_without_size_uses_durations() -> None:
    history = [_record(10.0), _record(20.0), _record(30.0), _record(40.0), _record(50.0)]
    e = estimate_from_history(history, None)
    assert e.basis == "history"
    assert e.seconds == pytest.approx(30.0)
    assert e.low == pytest.approx(20.0)
    assert e.high == pytest.approx(40.0)


def test_single_history_run() -> None:
    e = estimate_from_history([_record(12.0, 6_000)], 12_000)
    assert e.basis == "history"
    assert e.seconds == pytest.approx(24.0)
    _sane(e)


def test_history_estimate_differs_from_fallback() -> None:
    """Measured history, not constants: a slow history makes a longer estimate."""
    fast = estimate_from_history([_record(1.0, 1_000)], 50_000)
    slow = estimate_from_history([_record(10.0, 1_000)], 50_000)
    assert slow.seconds == pytest.approx(10 * fast.seconds)
    assert fast.seconds != estimate_from_history([], 50_000).seconds


# -- progress report ---------------------------------------------------------------------------


def test_progress_report_round_trip_full() -> None:
    report = ProgressReport(
        stage="Data Processing",
        percentage=65.5,
        records_processed=125430,
        total_records=192850,
        error_count=3,
        warning_count=12,
        node="node-1",
        pid=4242,
        rss_bytes=2_100_000_000,
        peak_rss_bytes=3_200_000_000,
        cpu_ratio=0.45,
        disk_written_bytes=890_000_000,
        started_at=1_705_746_600.25,
        cancel_requested=True,
    )
    meta = report.to_metadata()
    assert all(isinstance(v, str) for v in meta.values())
    assert ProgressReport.from_metadata(meta) == report


def test_progress_report_round_trip_defaults() -> None:
    report = ProgressReport()
    meta = report.to_metadata()
    assert "node" not in meta and "rss_bytes" not in meta  # None is not sent
    back = ProgressReport.from_metadata(meta)
    assert back == report
    assert back.cancel_requested is False


def test_progress_report_types_survive() -> None:
    back = ProgressReport.from_metadata(
        ProgressReport(stage="Loading", percentage=10, records_processed=7).to_metadata()
    )
    assert isinstance(back.records_processed, int) and back.records_processed == 7
    assert isinstance(back.percentage, float) and back.percentage == 10.0
    assert back.stage == "Loading"


def test_progress_report_skips_garbage_values() -> None:
    back = ProgressReport.from_metadata(
        {"stage": "Mining", "percentage": "lots", "records_processed": "12", "unknown": "x"}
    )
    assert back.stage == "Mining"
    assert back.percentage == 0.0
    assert back.records_processed == 12
