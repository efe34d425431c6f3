"""Job lifecycle: submit, read, cancel, retry, re-prioritise — each a translation to Prefect."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from api import formatting
from api.auth.tokens import Principal
from api.datasets.store import DatasetStore
from api.jobs.estimates import Estimator
from api.jobs.notify import NOTIFY_TAG, wants
from api.jobs.schemas import (
    CancelRequest,
    Resource,
    RetryRequest,
    SubmitJobRequest,
    SubmittedJob,
    parameters_model,
)
from api.jobs.status import TERMINAL, JobStatus, JobType, Priority, job_status
from api.prefect_gateway import PIPELINE_TAG, JobRecord, PipelineRecord, PrefectGateway, tag
from api.problems import Conflict, NotFound, Unprocessable
from flows.steps import storage

DEFAULT_PIPELINE = "default"
_CLOCK_SKEW = timedelta(seconds=5)
# updatedParameters keys of the original's retry example that are recorded, not applied
_RETRY_OPTIONS = {"retryFailedRecords", "increaseMemoryLimit"}


async def scoped_job(
    gateway: PrefectGateway,
    principal: Principal,
    tenant_id: str,
    project_id: str,
    job_id: uuid.UUID,
) -> JobRecord:
    """The job, if it belongs to this tenant and project; otherwise exactly like an unknown id."""
    record = await gateway.job(job_id)
    if (
        record is None
        or PIPELINE_TAG not in record.tags
        or record.tag("tenant") != tenant_id
        or record.tag("project") != project_id
        or not principal.can_see(tenant_id, project_id)
    ):
        raise NotFound("Job")
    return record


async def resolve_pipeline(
    gateway: PrefectGateway, job_type: JobType, resource_id: uuid.UUID | None
) -> PipelineRecord:
    if resource_id is not None:
        pipeline = await gateway.pipeline(resource_id)
        if pipeline is None or pipeline.job_type != job_type.value:
            raise Unprocessable(
                f"resource.resourceId {resource_id} names no pipeline of job type "
                f"{job_type.value}; GET .../pipelines lists them.",
                field="resource.resourceId",
            )
        return pipeline
    pipelines = await gateway.pipelines(job_type.value)
    for pipeline in pipelines:
        if pipeline.name == DEFAULT_PIPELINE:
            return pipeline
    if pipelines:
        return pipelines[0]
    raise Unprocessable(f"No pipeline is deployed for job type {job_type.value}.", field="jobType")


def _resolved_parameters(
    pipeline: PipelineRecord, job_type: JobType, given: dict[str, Any]
) -> dict[str, Any]:
    """Pipeline defaults, then what the user set; validated against the job type's own
    parameters (another type's parameter is refused), stored complete."""
    defaults = dict(pipeline.parameters.get("parameters") or {})
    try:
        model = parameters_model(job_type).model_validate({**defaults, **given})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        raise Unprocessable(
            f"parameters.{loc}: {first.get('msg')}", field=f"parameters.{loc}"
        ) from exc
    return model.model_dump(mode="json", by_alias=True)


def _dataset_info(
    datasets: DatasetStore,
    tenant_id: str,
    project_id: str,
    parameters: dict[str, Any],
    job_type: JobType,
) -> dict[str, Any] | None:
    notebook = parameters.get("notebookId")
    if (
        notebook
        and not (
            storage.notebook_dir(tenant_id, project_id, notebook, base=datasets.home)
            / storage.NOTEBOOK_META
        ).is_file()
    ):
        raise Unprocessable(
            f"parameters.notebookId {notebook} is not a notebook of this project; upload one "
            f"with POST /api/{tenant_id}/{project_id}/notebooks.",
            field="parameters.notebookId",
        )
    dataset_id = parameters.get("datasetId")
    if dataset_id is None:
        if job_type in (JobType.PROCESS_MINING, JobType.DATA_ENRICHMENT):
            raise Unprocessable(
                f"parameters.datasetId is required for {job_type.value} jobs; upload a log with "
                f"POST /api/{tenant_id}/{project_id}/datasets first.",
                field="parameters.datasetId",
            )
        return None
    meta = datasets.get(tenant_id, project_id, uuid.UUID(dataset_id))
    if meta is None:
        raise Unprocessable(
            f"parameters.datasetId {dataset_id} is not a dataset of this project.",
            field="parameters.datasetId",
        )
    lookup = parameters.get("lookupDatasetId")
    if lookup and datasets.get(tenant_id, project_id, uuid.UUID(lookup)) is None:
        raise Unprocessable(
            f"parameters.lookupDatasetId {lookup} is not a dataset of this project.",
            field="parameters.lookupDatasetId",
        )
    return {
        "id": dataset_id,
        "name": meta.get("name"),
        "events": meta.get("events"),
        "cases": meta.get("cases"),
    }


def _scheduled_time(request: SubmitJobRequest) -> datetime | None:
    scheduling = request.scheduling
    if scheduling.execute_immediately:
        if scheduling.scheduled_time is not None:
            raise Unprocessable(
                "scheduling.scheduledTime is set but executeImmediately is true; set "
                "executeImmediately to false to start the job later.",
                field="scheduling.scheduledTime",
            )
        return None
    when = scheduling.scheduled_time
    assert when is not None  # validated by Scheduling
    if when < datetime.now(UTC) - _CLOCK_SKEW:
        raise Unprocessable(
            f"scheduling.scheduledTime {when.isoformat()} is in the past.",
            field="scheduling.scheduledTime",
        )
    return when


class JobService:
    def __init__(
        self, gateway: PrefectGateway, datasets: DatasetStore, estimator: Estimator
    ) -> None:
        self.gateway = gateway
        self.datasets = datasets
        self.estimator = estimator
        # alive while some request holds it: no bookkeeping for jobs nobody is cancelling
        self._cancelling: weakref.WeakValueDictionary[uuid.UUID, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # -- submit ------------------------------------------------------------------------------
    async def submit(
        self,
        principal: Principal,
        tenant_id: str,
        project_id: str,
        request: SubmitJobRequest,
        idempotency_key: str | None,
        *,
        retry_of: JobRecord | None = None,
        retry_fields: dict[str, Any] | None = None,
    ) -> JobRecord:
        resource_id = request.resource.resource_id if request.resource else None
        pipeline = await resolve_pipeline(self.gateway, request.job_type, resource_id)
        given = request.parameters.model_dump(mode="json", by_alias=True, exclude_unset=True)
        parameters = _resolved_parameters(pipeline, request.job_type, given)
        dataset = _dataset_info(self.datasets, tenant_id, project_id, parameters, request.job_type)
        scheduled = _scheduled_time(request)
        job: dict[str, Any] = {
            "tenantId": tenant_id,
            "projectId": project_id,
            "jobDescription": request.job_description,
            "submittedBy": principal.user,
            "resource": {
                "resourceType": "Pipeline",
                "resourceId": str(pipeline.id),
                "resourceName": (request.resource.resource_name if request.resource else None)
                or f"{pipeline.job_type}/{pipeline.name}",
            },
            "scheduling": request.scheduling.model_dump(mode="json", by_alias=True),
            "notifications": request.notifications.model_dump(mode="json", by_alias=True),
            "dataset": dataset,
            **(retry_fields or {}),
        }
        tags = [
            PIPELINE_TAG,
            tag("tenant", tenant_id),
            tag("project", project_id),
            tag("user", principal.user),
        ]
        if retry_of is not None:
            tags.append(tag("retry-of", str(retry_of.id)))
        if wants(job["notifications"]):
            tags.append(NOTIFY_TAG)
        key = f"{tenant_id}/{project_id}/{idempotency_key}" if idempotency_key else None
        return await self.gateway.submit(
            pipeline.id,
            name=request.job_name,
            parameters={"parameters": parameters, "job": job},
            tags=tags,
            priority=request.priority,
            scheduled_time=scheduled,
            idempotency_key=key,
        )

    async def submitted_view(self, record: JobRecord) -> SubmittedJob:
        status = job_status(record.state_type)
        events = (record.job.get("dataset") or {}).get("events")
        duration = await self.estimator.duration(record.job_type, events)
        position = start = None
        if status is JobStatus.QUEUED:
            ahead = await self.gateway.queued_ahead(record)
            position = ahead + 1
            start = await self.estimator.start_time(ahead, record.job_type, record.expected_start)
        resource = record.job.get("resource") or {}
        return SubmittedJob(
            job_id=record.id,
            status=status,
            state=record.state_name,
            queue_position=position,
            estimated_start_time=start,
            estimated_duration=formatting.duration_range(duration.low, duration.high),
            estimated_duration_seconds=round(duration.seconds, 1),
            job_name=record.name,
            job_type=record.job_type,
            priority=record.priority,
            date_submitted=record.created,
            submitted_by=record.job.get("submittedBy"),
            resource=Resource(
                resource_type="Pipeline",
                resource_id=resource.get("resourceId"),
                resource_name=resource.get("resourceName"),
            ),
            scheduled_time=record.expected_start
            if not (record.job.get("scheduling") or {}).get("executeImmediately", True)
            else None,
        )

    # -- cancel ------------------------------------------------------------------------------
    async def cancel(self, record: JobRecord, request: CancelRequest) -> JobRecord:
        """One cancel of a job at a time per API process, each deciding on a fresh read, so a
        storm of concurrent cancels records one terminal state (the second one sees it)."""
        lock = self._cancelling.setdefault(record.id, asyncio.Lock())
        async with lock:
            record, stopping = await self._cancel(await self._reload(record.id), request)
        return await self._settle(record.id, seconds=3.0) if stopping else record

    async def _cancel(self, record: JobRecord, request: CancelRequest) -> tuple[JobRecord, bool]:
        """The state change; True when the job is stopping and its outcome is worth awaiting."""
        status = job_status(record.state_type)
        if status in TERMINAL:
            raise Conflict(
                f"Job is already {status.value}; only queued or running jobs can be cancelled.",
                jobStatus=status.value,
            )
        reason = request.reason or "Cancelled by user"
        if status is JobStatus.QUEUED:
            # Never a forced Cancelled: a node may have taken the run (Pending) and be starting
            # its process, which would then report Running after it. Prefect cancels a run
            # that is still Scheduled at once; a taken one goes through Cancelling.
            await self.gateway.add_tags(record.id, [tag("cancel-reason", reason[:200])])
            state = await self.gateway.terminate(record.id, reason)
            return await self._reload(record.id), state != "CANCELLED"
        tags = [tag("cancel-reason", reason[:200])]
        if request.preserve_partial_results:
            tags.append(tag("cancel-preserve", "true"))
        if request.force_termination:
            await self.gateway.add_tags(record.id, [*tags, tag("cancel", "forced")])
            await self.gateway.terminate(record.id, reason)
        else:
            await self.gateway.add_tags(record.id, [*tags, tag("cancel", "requested")])
        return record, True

    async def _reload(self, job_id: uuid.UUID) -> JobRecord:
        record = await self.gateway.job(job_id)
        if record is None:  # pragma: no cover - deleted in Prefect meanwhile
            raise NotFound("Job")
        return record

    async def _settle(self, job_id: uuid.UUID, seconds: float) -> JobRecord:
        """Give a stopping job a moment to reach its final state so the answer is the outcome."""
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            record = await self._reload(job_id)
            if job_status(record.state_type) in TERMINAL:
                return record
            if asyncio.get_running_loop().time() >= deadline:
                return record
            await asyncio.sleep(0.2)

    # -- retry -------------------------------------------------------------------------------
    async def _replays_retry(self, record: JobRecord, idempotency_key: str | None) -> bool:
        """True when a client repeats the retry that made ``retried-by`` with the same
        Idempotency-Key (it then gets that job back); any other key may not retry again."""
        if not idempotency_key:
            return False
        try:
            earlier = await self.gateway.job(uuid.UUID(record.tag("retried-by") or ""))
        except ValueError:
            return False
        key = f"{record.tag('tenant')}/{record.tag('project')}/{idempotency_key}"
        return earlier is not None and earlier.idempotency_key == key

    async def retry(
        self,
        principal: Principal,
        record: JobRecord,
        request: RetryRequest,
        idempotency_key: str | None,
    ) -> JobRecord:
        status = job_status(record.state_type)
        if status is not JobStatus.FAILED:
            raise Conflict(
                f"Only failed jobs can be retried; this job is {status.value}.",
                jobStatus=status.value,
            )
        if record.tag("retried-by") and not await self._replays_retry(record, idempotency_key):
            raise Conflict(
                f"Job was already retried as {record.tag('retried-by')}; retry that job instead.",
                retriedBy=record.tag("retried-by"),
            )
        job = record.job
        parameters = dict(record.job_parameters)
        scheduling = dict(job.get("scheduling") or {})
        retry_options: dict[str, Any] = {}
        if request.modify_parameters or request.updated_parameters:
            model = parameters_model(JobType(record.job_type))
            known = {f.alias or name for name, f in model.model_fields.items()}
            for key, value in request.updated_parameters.items():
                if key == "timeoutMinutes":
                    scheduling["timeoutMinutes"] = value
                elif key in known:
                    parameters[key] = value
                elif key in _RETRY_OPTIONS:
                    retry_options[key] = value
                else:
                    raise Unprocessable(
                        f"updatedParameters.{key} is not a parameter of a {record.job_type} job.",
                        field=f"updatedParameters.{key}",
                    )
        scheduled = scheduling.get("scheduledTime")
        keep_schedule = (
            not request.immediate_execution
            and scheduled
            and datetime.fromisoformat(scheduled) > datetime.now(UTC)
        )
        if not keep_schedule:
            scheduling["executeImmediately"] = True
            scheduling["scheduledTime"] = None
        try:
            submit = SubmitJobRequest.model_validate(
                {
                    "jobName": record.name,
                    "jobDescription": job.get("jobDescription"),
                    "jobType": record.job_type,
                    "priority": (request.priority or record.priority).value,
                    "resource": {
                        "resourceType": "Pipeline",
                        "resourceId": (job.get("resource") or {}).get("resourceId"),
                        "resourceName": (job.get("resource") or {}).get("resourceName"),
                    },
                    "parameters": {k: v for k, v in parameters.items() if v is not None},
                    "scheduling": scheduling,
                    "notifications": job.get("notifications") or {},
                }
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first.get("loc", ()))
            raise Unprocessable(f"{loc}: {first.get('msg')}", field=loc) from exc
        tenant_id, project_id = job.get("tenantId", ""), job.get("projectId", "")
        new = await self.submit(
            principal,
            tenant_id,
            project_id,
            submit,
            idempotency_key or f"retry-of-{record.id}",
            retry_of=record,
            retry_fields={
                "retryOf": str(record.id),
                "retryReason": request.retry_reason,
                "retryOptions": retry_options,
            },
        )
        await self.gateway.add_tags(record.id, [tag("retried-by", str(new.id))])
        return new

    # -- priority ----------------------------------------------------------------------------
    async def change_priority(self, record: JobRecord, priority: Priority) -> JobRecord:
        if record.state_type != "SCHEDULED":
            status = job_status(record.state_type)
            raise Conflict(
                f"Priority can only change while a job waits in the queue; this job is "
                f"{status.value} ({record.state_name}).",
                jobStatus=status.value,
            )
        if priority is not record.priority and not await self.gateway.move(record.id, priority):
            raise Conflict("The job left the queue while its priority was being changed.")
        return await self._reload(record.id)
