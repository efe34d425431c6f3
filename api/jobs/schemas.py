"""The documented job JSON (CONTRACT.md), requests and responses.

Every documented field is always present in a response, ``null`` where not known yet. Human
values keep the documented form and get a machine-readable sibling (seconds, bytes, ratio).
"""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)

from api.jobs.status import JobStatus, JobType, Priority
from api.schemas import ApiModel, RequestModel

# -- requests ---------------------------------------------------------------------------------

# Request values keep their JSON type: pydantic's lax mode would take 0 for false, "5" for 5 and
# 1700000000 for a date, which hides client bugs; the schema documents the strict types.
Flag = StrictBool
Number = Annotated[float, Strict()]  # an integer is a number too
_NUMERIC = re.compile(r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")


def iso_text(value: Any) -> Any:
    """Dates are ISO 8601 text; a number (or numeric text) is refused, not read as epoch."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("must be an ISO 8601 date-time text, e.g. 2024-01-20T10:45:00Z")
    if isinstance(value, str) and _NUMERIC.match(value):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2024-01-20T10:45:00Z, not a number")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(iso_text)]
MAX_JSON_DEPTH = 32


def shallow(value: dict[str, Any]) -> dict[str, Any]:
    """Free-form JSON is stored in Prefect and re-serialised several times; past a sane depth
    that fails deep inside the serialisers, so refuse it here with a message."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"is nested more than {MAX_JSON_DEPTH} levels deep")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return value


FreeJson = Annotated[dict[str, Any], AfterValidator(shallow)]


class TimeWindow(RequestModel):
    start_date: Annotated[date | datetime, BeforeValidator(iso_text)] | None = None
    end_date: Annotated[date | datetime, BeforeValidator(iso_text)] | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TimeWindow:
        if self.start_date and self.end_date and str(self.start_date) > str(self.end_date):
            raise ValueError("timeWindow.startDate must not be after timeWindow.endDate")
        return self


class QualityChecks(RequestModel):
    validate_timestamps: Flag = True
    check_duplicates: Flag = True
    validate_activities: Flag = True


PerformanceMetric = Literal["cycle_time", "waiting_time", "resource_utilization"]


class JobParameters(RequestModel):
    """The documented parameters (any job type) and the one demo aid."""

    dataset_id: uuid.UUID | None = None
    analysis_type: Literal["quick", "standard", "comprehensive"] = Field(
        default="standard",
        description="quick: map, variants, durations. standard: + model, token-based replay, "
        "bottlenecks, rework, BPMN/PNML. comprehensive: + resources, anomalies, alignments, "
        "enriched data, prediction model, insights.",
    )
    time_window: TimeWindow | None = Field(
        default=None, description="Keep whole cases whose first event lies in the window."
    )
    include_anomaly_detection: Flag = False
    include_process_variants: Flag = True
    generate_insights: Flag = False
    output_format: Literal["summary", "detailed_report", "json"] = "detailed_report"
    performance_metrics: list[PerformanceMetric] = Field(default_factory=list, max_length=3)
    quality_checks: QualityChecks | None = None
    delay_seconds: Number = Field(
        default=0.0,
        ge=0.0,
        le=3600.0,
        description="Hold the job in a 'Waiting' stage first (demos, queueing and cancel tests).",
    )


class ProcessMiningParameters(JobParameters):
    noise_threshold: Number = Field(
        default=0.2, ge=0.0, le=1.0, description="Inductive miner noise threshold."
    )
    alignments_max_cases: StrictInt = Field(
        default=1000, ge=0, le=1_000_000, description="Alignments only up to this many cases."
    )


class WorkingCalendar(RequestModel):
    days: list[Annotated[StrictInt, Field(ge=0, le=6)]] = Field(
        default=[0, 1, 2, 3, 4], max_length=7
    )
    start: str = Field(default="09:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(default="17:00", pattern=r"^([01]\d|2[0-4]):[0-5]\d$")
    timezone: str = Field(default="UTC", max_length=64)


class DataEnrichmentParameters(JobParameters):
    working_calendar: WorkingCalendar | None = None
    remove_duplicates: Flag = False
    repair_timestamps: Flag = False
    lookup_dataset_id: uuid.UUID | None = None
    lookup_key: str | None = Field(default=None, max_length=200)
    lookup_columns: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=100
    )


class AnalysisParameters(JobParameters):
    sla_hours: Number | None = Field(default=None, gt=0, le=24 * 3650)
    group_by: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=20, description="Case attributes to break KPIs down by."
    )
    time_bucket: Literal["D", "W", "M"] = "M"
    root_cause_target: Literal["long", "sla"] = "long"


class NotebookParameters(JobParameters):
    notebook_id: uuid.UUID | None = None
    notebook_parameters: FreeJson = Field(
        default_factory=dict, description="Injected after the notebook's 'parameters' cell."
    )


class AnyJobParameters(
    ProcessMiningParameters, DataEnrichmentParameters, AnalysisParameters, NotebookParameters
):
    """Every parameter of every job type (the submit schema); each job type then accepts only
    its own (see ``parameters_model``)."""


def parameters_model(job_type: JobType) -> type[JobParameters]:
    return {
        JobType.PROCESS_MINING: ProcessMiningParameters,
        JobType.DATA_ENRICHMENT: DataEnrichmentParameters,
        JobType.ANALYSIS: AnalysisParameters,
        JobType.NOTEBOOK: NotebookParameters,
    }[job_type]


class ResourceRef(RequestModel):
    resource_type: Literal["Pipeline"] = "Pipeline"
    resource_id: uuid.UUID | None = None
    resource_name: str | None = Field(default=None, max_length=200)


class Scheduling(RequestModel):
    execute_immediately: Flag = True
    scheduled_time: IsoDateTime | None = None
    timeout_minutes: Number | None = Field(
        default=None, gt=0, le=7 * 24 * 60, description="Minutes; fractions allowed (0.5 = 30 s)."
    )

    @field_validator("scheduled_time")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("scheduledTime needs a time zone, e.g. 2024-01-20T10:45:00Z")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Scheduling:
        if not self.execute_immediately and self.scheduled_time is None:
            raise ValueError("executeImmediately=false needs a scheduledTime")
        return self


Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


class Notifications(RequestModel):
    on_completion: Flag = False
    on_failure: Flag = False
    email_recipients: list[Email] = Field(default_factory=list, max_length=50)
    webhook_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://")


class SubmitJobRequest(RequestModel):
    job_name: str = Field(min_length=1, max_length=200)
    job_description: str | None = Field(default=None, max_length=4000)
    job_type: JobType
    priority: Priority = Priority.NORMAL
    resource: ResourceRef | None = None
    parameters: AnyJobParameters = Field(default_factory=AnyJobParameters)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    notifications: Notifications = Field(default_factory=Notifications)


class CancelRequest(RequestModel):
    reason: str | None = Field(default=None, max_length=1000)
    force_termination: Flag = False
    preserve_partial_results: Flag = False


class RetryRequest(RequestModel):
    retry_reason: str | None = Field(default=None, max_length=1000)
    modify_parameters: Flag = False
    updated_parameters: FreeJson = Field(default_factory=dict)
    priority: Priority | None = None
    immediate_execution: Flag = True


class PriorityChange(RequestModel):
    priority: Priority


# -- responses --------------------------------------------------------------------------------


class Progress(ApiModel):
    percentage: float = 0
    current_stage: str | None = None
    estimated_completion: datetime | None = None
    elapsed_time: str | None = None
    elapsed_seconds: float | None = None


class Resource(ApiModel):
    resource_type: str = "Pipeline"
    resource_id: uuid.UUID | None = None
    resource_name: str | None = None


class Execution(ApiModel):
    start_time: datetime | None = None
    submitted_by: str | None = None
    execution_node: str | None = None
    memory_usage: str | None = None
    memory_usage_bytes: int | None = None
    cpu_usage: str | None = None
    cpu_usage_ratio: float | None = None
    disk_usage: str | None = None
    disk_usage_bytes: int | None = None


class Metrics(ApiModel):
    records_processed: int | None = None
    total_records: int | None = None
    error_count: int = 0
    warning_count: int = 0
    average_processing_rate: str | None = None
    average_processing_rate_per_second: float | None = None


class Job(ApiModel):
    job_id: uuid.UUID
    tenant_id: str
    project_id: str
    job_type: str
    job_name: str
    job_description: str | None = None
    status: JobStatus
    state: str = Field(description="The raw Prefect state name (e.g. Late, Pending, TimedOut).")
    priority: Priority
    progress: Progress
    resource: Resource
    execution: Execution
    metrics: Metrics
    parameters: dict[str, Any] = Field(default_factory=dict)
    scheduling: dict[str, Any] = Field(default_factory=dict)
    notifications: dict[str, Any] = Field(default_factory=dict)
    queue_position: int | None = None
    end_time: datetime | None = None
    duration: str | None = None
    duration_seconds: float | None = None
    error: str | None = None
    cancellation: dict[str, Any] | None = None
    retry_of: uuid.UUID | None = None
    retried_by: uuid.UUID | None = None
    date_created: datetime | None = None
    last_updated: datetime | None = None


class JobSummaryItem(ApiModel):
    job_id: uuid.UUID
    job_type: str
    job_name: str
    status: JobStatus
    state: str
    priority: Priority
    progress: float = 0
    start_time: datetime | None = None
    estimated_completion: datetime | None = None
    end_time: datetime | None = None
    duration: str | None = None
    duration_seconds: float | None = None
    submitted_by: str | None = None
    resource_name: str | None = None
    date_created: datetime | None = None


class JobsSummary(ApiModel):
    total_jobs: int
    running_jobs: int
    queued_jobs: int
    completed_jobs: int
    failed_jobs: int
    cancelled_jobs: int


class JobPage(ApiModel):
    jobs: list[JobSummaryItem]
    summary: JobsSummary
    page: int
    page_size: int
    total_count: int
    has_next_page: bool


class SubmittedJob(ApiModel):
    job_id: uuid.UUID
    status: JobStatus
    state: str
    queue_position: int | None
    estimated_start_time: datetime | None
    estimated_duration: str | None
    estimated_duration_seconds: float | None
    job_name: str
    job_type: str
    priority: Priority
    date_submitted: datetime | None
    submitted_by: str | None
    resource: Resource
    scheduled_time: datetime | None = None
