"""Turn what Prefect holds about a run into the documented job JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api import formatting
from api.jobs.schemas import (
    Execution,
    Job,
    JobSummaryItem,
    Metrics,
    Progress,
    Resource,
)
from api.jobs.status import JobStatus, failure_reason, job_status
from api.prefect_gateway import JobRecord, ProgressRecord
from flows.steps.progress_report import ProgressReport


def _report(progress: ProgressRecord | None) -> ProgressReport | None:
    return ProgressReport.from_metadata(progress.details) if progress else None


def _elapsed(record: JobRecord, now: datetime) -> float | None:
    if record.start_time is None:
        return None
    end = record.end_time or now
    return max(0.0, (end - record.start_time).total_seconds())


def _percentage(status: JobStatus, report: ProgressReport | None) -> float:
    if status is JobStatus.COMPLETED:
        return 100.0
    return round(report.percentage, 1) if report else 0.0


def _stage(record: JobRecord, status: JobStatus, report: ProgressReport | None) -> str:
    if status is JobStatus.QUEUED:
        return "Queued" if record.state_name != "Late" else "Queued (late)"
    if status is JobStatus.RUNNING:
        if record.state_type == "CANCELLING" or record.tag("cancel") == "requested":
            return "Cancelling"
        return report.stage if report and report.stage != "Queued" else "Starting"
    return record.state_name


def _estimated_completion(
    record: JobRecord, status: JobStatus, percentage: float, elapsed: float | None, now: datetime
) -> datetime | None:
    if status is JobStatus.COMPLETED or status is JobStatus.FAILED or status is JobStatus.CANCELLED:
        return record.end_time
    if status is JobStatus.RUNNING and elapsed and 0 < percentage < 100:
        return now + timedelta(seconds=elapsed * (100 - percentage) / percentage)
    return None


def _rate(report: ProgressReport | None, elapsed: float | None) -> float | None:
    if not report or not report.records_processed or not elapsed:
        return None
    return report.records_processed / elapsed


def state_name(record: JobRecord) -> str:
    if record.state_type == "RUNNING" and record.tag("cancel") == "requested":
        return "Cancelling"
    return record.state_name


def job_view(record: JobRecord, progress: ProgressRecord | None, locale: str) -> Job:
    now = datetime.now(UTC)
    status = job_status(record.state_type)
    report = _report(progress)
    job = record.job
    elapsed = _elapsed(record, now)
    percentage = _percentage(status, report)
    rate = _rate(report, elapsed)
    resource = job.get("resource") or {}
    cancel = None
    if record.tag("cancel"):
        cancel = {
            "requested": True,
            "reason": record.tag("cancel-reason"),
            "forceTermination": record.tag("cancel") == "forced",
            "preservePartialResults": record.tag("cancel-preserve") == "true",
        }
    # On PostgreSQL a run's `updated` can precede its `created` by a few ms (different clocks
    # in one insert), so the latest of all three is the last change.
    moments = (record.created, record.updated, progress.updated if progress else None)
    last_updated = max((t for t in moments if t), default=None)
    duration_seconds = elapsed if status in (JobStatus.COMPLETED, JobStatus.FAILED) else None
    if status is JobStatus.CANCELLED and record.start_time and record.end_time:
        duration_seconds = elapsed
    error = None
    if status is JobStatus.FAILED:
        error = failure_reason(record.state_type, record.state_name, record.state_message)
    elif status is JobStatus.CANCELLED:
        error = record.state_message
    return Job(
        job_id=record.id,
        tenant_id=job.get("tenantId", ""),
        project_id=job.get("projectId", ""),
        job_type=record.job_type,
        job_name=record.name,
        job_description=job.get("jobDescription"),
        status=status,
        state=state_name(record),
        priority=record.priority,
        progress=Progress(
            percentage=percentage,
            current_stage=_stage(record, status, report),
            estimated_completion=_estimated_completion(record, status, percentage, elapsed, now),
            elapsed_time=formatting.duration(elapsed, locale),
            elapsed_seconds=round(elapsed, 3) if elapsed is not None else None,
        ),
        resource=Resource(
            resource_type=resource.get("resourceType", "Pipeline"),
            resource_id=resource.get("resourceId") or record.deployment_id,
            resource_name=resource.get("resourceName"),
        ),
        execution=Execution(
            start_time=record.start_time,
            submitted_by=job.get("submittedBy"),
            execution_node=report.node if report else None,
            memory_usage=formatting.size(report.rss_bytes) if report else None,
            memory_usage_bytes=report.rss_bytes if report else None,
            cpu_usage=formatting.percent(report.cpu_ratio) if report else None,
            cpu_usage_ratio=report.cpu_ratio if report else None,
            disk_usage=formatting.size(report.disk_written_bytes) if report else None,
            disk_usage_bytes=report.disk_written_bytes if report else None,
        ),
        metrics=Metrics(
            records_processed=report.records_processed if report else None,
            total_records=(report.total_records if report else None)
            or (job.get("dataset") or {}).get("events"),
            error_count=report.error_count if report else 0,
            warning_count=report.warning_count if report else 0,
            average_processing_rate=formatting.rate(rate, locale),
            average_processing_rate_per_second=round(rate, 2) if rate else None,
        ),
        parameters=record.job_parameters,
        scheduling=job.get("scheduling") or {},
        notifications=job.get("notifications") or {},
        end_time=record.end_time,
        duration=formatting.duration(duration_seconds, locale),
        duration_seconds=round(duration_seconds, 3) if duration_seconds is not None else None,
        error=error,
        cancellation=cancel,
        retry_of=job.get("retryOf"),
        retried_by=record.tag("retried-by"),
        date_created=record.created,
        last_updated=last_updated,
    )


def summary_item(record: JobRecord, progress: ProgressRecord | None, locale: str) -> JobSummaryItem:
    full = job_view(record, progress, locale)
    return JobSummaryItem(
        job_id=full.job_id,
        job_type=full.job_type,
        job_name=full.job_name,
        status=full.status,
        state=full.state,
        priority=full.priority,
        progress=full.progress.percentage,
        start_time=full.execution.start_time,
        estimated_completion=full.progress.estimated_completion,
        end_time=full.end_time,
        duration=full.duration,
        duration_seconds=full.duration_seconds,
        submitted_by=full.execution.submitted_by,
        resource_name=full.resource.resource_name,
        date_created=full.date_created,
    )
