"""Endpoints of the documented Execution API that act on jobs."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError
from starlette.background import BackgroundTask

from api.deps import (
    GatewayDep,
    ProjectId,
    ProjectScope,
    ProjectWriteScope,
    SettingsDep,
    TenantId,
)
from api.jobs import results as results_service
from api.jobs.schemas import (
    CancelRequest,
    IsoDateTime,
    Job,
    JobPage,
    JobsSummary,
    PriorityChange,
    RetryRequest,
    SubmitJobRequest,
    SubmittedJob,
)
from api.jobs.service import JobService, scoped_job
from api.jobs.status import JobStatus, JobType, Priority
from api.jobs.views import job_view, summary_item
from api.prefect_gateway import JobQuery, JobRecord, PrefectGateway, ProgressRecord
from api.problems import Unprocessable

router = APIRouter(prefix="/api/{tenant_id}/{project_id}/execution", tags=["jobs"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a submit safely: the same key returns the same job.",
    ),
]


def _service(request: Request) -> JobService:
    return request.app.state.jobs


ServiceDep = Annotated[JobService, Depends(_service)]


def _aware(value: datetime | None) -> datetime | None:
    """Dates without a zone are UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.get("/jobs", response_model=JobPage, summary="List jobs")
async def list_jobs(
    tenant_id: TenantId,
    project_id: ProjectId,
    principal: ProjectScope,
    gateway: GatewayDep,
    settings: SettingsDep,
    status: Annotated[JobStatus | None, Query()] = None,
    job_type: Annotated[JobType | None, Query(alias="jobType")] = None,
    priority: Annotated[Priority | None, Query()] = None,
    submitted_by: Annotated[str | None, Query(alias="submittedBy", max_length=200)] = None,
    date_from: Annotated[IsoDateTime | None, Query(alias="dateFrom")] = None,
    date_to: Annotated[IsoDateTime | None, Query(alias="dateTo")] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=100)] = 20,
) -> JobPage:
    date_from, date_to = _aware(date_from), _aware(date_to)
    if date_from and date_to and date_from > date_to:
        raise Unprocessable("dateFrom must not be after dateTo.", field="dateFrom")
    base = JobQuery(
        tenant=tenant_id,
        project=project_id,
        job_types=[job_type.value] if job_type else [],
        priorities=[priority] if priority else [],
        submitted_by=submitted_by,
        date_from=date_from,
        date_to=date_to,
    )
    # The summary counts every status under the other filters; the page honours `status` too.
    counted = list(JobStatus)
    records, total, *by_status = await asyncio.gather(
        gateway.jobs(
            replace(base, statuses=[status] if status else []),
            limit=page_size + 1,
            offset=(page - 1) * page_size,
        ),
        gateway.count(base),
        *(gateway.count(replace(base, statuses=[s])) for s in counted),
    )
    counts = dict(zip(counted, by_status, strict=True))
    has_next = len(records) > page_size
    records = records[:page_size]
    progress = await gateway.progress_of(records)
    return JobPage(
        jobs=[summary_item(r, progress.get(r.id), settings.locale) for r in records],
        summary=JobsSummary(
            total_jobs=total,
            running_jobs=counts[JobStatus.RUNNING],
            queued_jobs=counts[JobStatus.QUEUED],
            completed_jobs=counts[JobStatus.COMPLETED],
            failed_jobs=counts[JobStatus.FAILED],
            cancelled_jobs=counts[JobStatus.CANCELLED],
        ),
        page=page,
        page_size=page_size,
        total_count=counts[status] if status else total,
        has_next_page=has_next,
    )


@router.post(
    "/job",
    response_model=SubmittedJob,
    status_code=201,
    summary="Submit a job",
    responses={200: {"description": "Idempotent replay: the job created earlier with this key."}},
)
async def submit_job(
    tenant_id: TenantId,
    project_id: ProjectId,
    principal: ProjectWriteScope,
    body: SubmitJobRequest,
    service: ServiceDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SubmittedJob:
    received = datetime.now(UTC)
    record = await service.submit(principal, tenant_id, project_id, body, idempotency_key)
    view = await service.submitted_view(record)
    if idempotency_key and record.created and record.created < received - timedelta(seconds=1):
        response.status_code = 200  # a replay: Prefect returned the run made for this key
    return view


async def _scoped(
    tenant_id: TenantId,
    project_id: ProjectId,
    job_id: uuid.UUID,
    principal: ProjectScope,
    gateway: GatewayDep,
) -> JobRecord:
    return await scoped_job(gateway, principal, tenant_id, project_id, job_id)


ScopedJob = Annotated[JobRecord, Depends(_scoped)]


async def _present(
    gateway: PrefectGateway,
    record: JobRecord,
    locale: str,
    progress: dict[uuid.UUID, ProgressRecord] | None = None,
) -> Job:
    """The job JSON: the run, its latest progress report and, while queued, its position."""
    if progress is None:
        progress = await gateway.progress_of([record])
    view = job_view(record, progress.get(record.id), locale)
    if view.status is JobStatus.QUEUED:
        view.queue_position = await gateway.queued_ahead(record) + 1
    return view


@router.get("/job/{job_id}", response_model=Job, summary="Get job status")
async def get_job(
    tenant_id: TenantId,
    project_id: ProjectId,
    job_id: uuid.UUID,
    principal: ProjectScope,
    gateway: GatewayDep,
    settings: SettingsDep,
) -> Job:
    # The progress read runs alongside the run read (the hot polling path costs one round
    # trip, not two); it is discarded unread when the run is not this caller's. A finished
    # job's progress is usually known already (``FinishedProgress``): no second read at all.
    if job_id in gateway.finished_progress:
        record = await scoped_job(gateway, principal, tenant_id, project_id, job_id)
        return await _present(gateway, record, settings.locale)
    progress = asyncio.create_task(gateway.progress([job_id]))
    try:
        record = await scoped_job(gateway, principal, tenant_id, project_id, job_id)
    except BaseException:
        progress.cancel()
        raise
    found = await progress
    gateway.finished_progress.keep([record], found)
    return await _present(gateway, record, settings.locale, found)


async def _cancel_body(request: Request) -> CancelRequest:
    """DELETE with an optional JSON body (FastAPI does not parse bodies of DELETE by default)."""
    raw = await request.body()
    if not raw.strip():
        return CancelRequest()
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise Unprocessable(f"The request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise Unprocessable("The request body is nested too deeply.") from exc
    try:
        return CancelRequest.model_validate(payload)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from exc


@router.delete(
    "/job/{job_id}",
    response_model=Job,
    summary="Cancel a job",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {"schema": CancelRequest.model_json_schema(by_alias=True)}
            },
        }
    },
    responses={404: {"description": "Job not found"}, 409: {"description": "Job already finished"}},
)
async def cancel_job(
    principal: ProjectWriteScope,
    record: ScopedJob,
    gateway: GatewayDep,
    service: ServiceDep,
    settings: SettingsDep,
    body: Annotated[CancelRequest, Depends(_cancel_body)],
) -> Job:
    return await _present(gateway, await service.cancel(record, body), settings.locale)


@router.patch("/job/{job_id}", response_model=Job, summary="Change the priority of a queued job")
async def change_priority(
    principal: ProjectWriteScope,
    record: ScopedJob,
    body: PriorityChange,
    gateway: GatewayDep,
    service: ServiceDep,
    settings: SettingsDep,
) -> Job:
    moved = await service.change_priority(record, body.priority)
    return await _present(gateway, moved, settings.locale)


@router.post("/job/{job_id}/retry", response_model=Job, summary="Retry a failed job")
async def retry_job(
    principal: ProjectWriteScope,
    record: ScopedJob,
    gateway: GatewayDep,
    service: ServiceDep,
    settings: SettingsDep,
    body: RetryRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> Job:
    new = await service.retry(principal, record, body or RetryRequest(), idempotency_key)
    return await _present(gateway, new, settings.locale)


@router.get(
    "/job/{job_id}/results",
    summary="Get job results",
    responses={
        200: {
            "description": "The results (JSON), or with format=download a zip of the outputs.",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def get_results(
    record: ScopedJob,
    tenant_id: TenantId,
    project_id: ProjectId,
    settings: SettingsDep,
    format: Annotated[Literal["summary", "detailed", "download"], Query()] = "summary",
    include_artifacts: Annotated[bool, Query(alias="includeArtifacts")] = True,
    output_type: Annotated[str | None, Query(alias="outputType", max_length=40)] = None,
) -> Response:
    category = results_service.output_category(output_type)
    manifest = results_service.available_manifest(record)
    base = (
        f"{settings.api_base_url}/api/{tenant_id}/{project_id}/execution/job/{record.id}/artifacts"
    )
    if format == "download":
        path = await results_service.bundle(record, manifest, category)
        return FileResponse(
            path,
            media_type="application/zip",
            filename=f"job-{record.id}-results.zip",
            background=BackgroundTask(path.unlink, missing_ok=True),
        )
    body = results_service.results_view(
        record,
        manifest,
        detailed=format == "detailed",
        include_artifacts=include_artifacts,
        category=category,
        download_base=base,
        locale=settings.locale,
    )
    return JSONResponse(body)


@router.get(
    "/job/{job_id}/artifacts/{name}",
    summary="Download one output of a job",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The file, with the media type the job recorded for it.",
            "content": {"*/*": {"schema": {}}},
        }
    },
)
async def download_artifact(record: ScopedJob, name: str) -> FileResponse:
    path, entry = results_service.artifact_file(record, name)
    return FileResponse(
        path, media_type=entry.get("mediaType") or "application/octet-stream", filename=name
    )
