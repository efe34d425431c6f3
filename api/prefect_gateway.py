"""The only module that talks to Prefect.

Everything the API knows about a job comes from here, read from Prefect on each request: the
flow run (status, queue = priority, tags = tenant/project/submitter, parameters = the job's
documented fields) and its progress artifact (stage, percentage, records, resource usage). The
gateway returns small records of its own so the rest of the API never sees Prefect's types.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    DeploymentFilter,
    DeploymentFilterId,
    DeploymentFilterTags,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterExpectedStartTime,
    FlowRunFilterIdempotencyKey,
    FlowRunFilterStartTime,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
    FlowRunFilterWorkQueueName,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import Scheduled, State

from api.jobs.status import JobStatus, Priority, is_finished, state_types

PIPELINE_TAG = "pmjobs"
PROGRESS_ARTIFACT_TYPE = "progress"
NODE_VARIABLE_PREFIX = "pmjobs_node_"
PAGE = 200  # Prefect's largest page (PREFECT_SERVER_API_DEFAULT_LIMIT)
PIPELINE_CACHE_SECONDS = 10.0


class PrefectUnavailable(Exception):
    """Prefect could not be reached; the API answers 503."""


def tag(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def tag_value(tags: Iterable[str], kind: str) -> str | None:
    prefix = f"{kind}:"
    for t in tags:
        if t.startswith(prefix):
            return t[len(prefix) :]
    return None


@dataclass(frozen=True)
class PipelineRecord:
    id: uuid.UUID
    name: str
    job_type: str
    description: str | None
    parameters: dict[str, Any]
    work_queue: str | None
    updated: datetime | None


@dataclass(frozen=True)
class JobRecord:
    id: uuid.UUID
    name: str
    job_type: str
    state_type: str
    state_name: str
    state_message: str | None
    queue: str | None
    tags: tuple[str, ...]
    parameters: dict[str, Any]
    deployment_id: uuid.UUID | None
    created: datetime | None
    updated: datetime | None
    expected_start: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    total_run_time: float
    idempotency_key: str | None

    @property
    def priority(self) -> Priority:
        return Priority.from_queue(self.queue)

    @property
    def job(self) -> dict[str, Any]:
        """The documented job fields stored with the run (name, description, scheduling...)."""
        return dict(self.parameters.get("job") or {})

    @property
    def job_parameters(self) -> dict[str, Any]:
        return dict(self.parameters.get("parameters") or {})

    def tag(self, kind: str) -> str | None:
        return tag_value(self.tags, kind)


@dataclass(frozen=True)
class ProgressRecord:
    percentage: float
    stage: str | None
    details: dict[str, str]
    updated: datetime | None


@dataclass
class JobQuery:
    """Server-side filters for listing and counting a tenant's jobs."""

    tenant: str
    project: str | None = None
    statuses: list[JobStatus] = field(default_factory=list)
    job_types: list[str] = field(default_factory=list)
    priorities: list[Priority] = field(default_factory=list)
    submitted_by: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    ended_after: datetime | None = None
    extra_tags: list[str] = field(default_factory=list)


FINISHED_PROGRESS_KEPT = 10_000


class FinishedProgress:
    """Progress reports of finished jobs, kept in memory (least recently used out first).

    A finished run's last report never changes, so polling a finished job costs one Prefect
    read instead of two, and a list page reads progress only for unfinished jobs. An entry is
    used only while the run is still finished: one re-run from Prefect's UI is read afresh."""

    def __init__(self, size: int = FINISHED_PROGRESS_KEPT) -> None:
        self._size = size
        self._items: OrderedDict[uuid.UUID, ProgressRecord | None] = OrderedDict()

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._items

    def get(self, job_id: uuid.UUID) -> ProgressRecord | None:
        self._items.move_to_end(job_id)
        return self._items[job_id]

    def keep(self, records: Iterable[JobRecord], progress: dict[uuid.UUID, ProgressRecord]) -> None:
        for record in records:
            if is_finished(record.state_type):
                self._items[record.id] = progress.get(record.id)
                self._items.move_to_end(record.id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


@dataclass(frozen=True)
class NodeRecord:
    name: str
    online: bool
    last_heartbeat: datetime | None
    metrics: dict[str, Any]


def take_order(now: datetime) -> Any:
    """Sort key for queued runs in the order workers take them (see ``queued_ahead``)."""
    far_future = datetime.max.replace(tzinfo=UTC)

    def key(r: JobRecord) -> tuple[int, float, int, datetime]:
        expected = r.expected_start or far_future
        if r.state_type == "PENDING":
            return (0, 0.0, 0, expected)
        if expected <= now:
            return (1, 0.0, r.priority.rank, expected)
        return (2, expected.timestamp(), r.priority.rank, expected)

    return key


class PrefectGateway:
    def __init__(self, api_url: str, work_pool: str) -> None:
        self.api_url = api_url
        self.work_pool = work_pool
        self._client: PrefectClient | None = None
        self._flow_names: dict[uuid.UUID, str] = {}
        self._flow_ids: dict[str, uuid.UUID] = {}
        self._pipelines: dict[str | None, tuple[float, list[PipelineRecord]]] = {}
        self.finished_progress = FinishedProgress()

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._client = PrefectClient(self.api_url, httpx_settings={"timeout": httpx.Timeout(30.0)})
        await self._client.__aenter__()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.__aexit__(None, None, None)
            self._client = None

    @property
    def client(self) -> PrefectClient:
        if self._client is None:
            raise PrefectUnavailable("Prefect client is not started")
        return self._client

    async def healthy(self) -> bool:
        try:
            return (await self.client.api_healthcheck()) is None
        except Exception:
            return False

    # -- flows and pipelines -----------------------------------------------------------------
    async def _flow_name(self, flow_id: uuid.UUID) -> str:
        name = self._flow_names.get(flow_id)
        if name is None:
            flow = await self.client.read_flow(flow_id)
            name = self._flow_names[flow_id] = flow.name
            self._flow_ids[flow.name] = flow_id
        return name

    async def _flow_names_for(self, flow_ids: Iterable[uuid.UUID]) -> None:
        missing = {f for f in flow_ids if f not in self._flow_names}
        if missing:
            for flow in await self.client.read_flows(limit=200):
                self._flow_names[flow.id] = flow.name
                self._flow_ids[flow.name] = flow.id

    async def pipelines(self, job_type: str | None = None) -> list[PipelineRecord]:
        """Deployments change only when ``prefect deploy`` runs, yet every submit resolves one:
        a few seconds of caching saves a Prefect round trip per submit."""
        cached = self._pipelines.get(job_type)
        if cached is not None and time.monotonic() - cached[0] < PIPELINE_CACHE_SECONDS:
            return cached[1]
        records = await self._read_pipelines(job_type)
        self._pipelines[job_type] = (time.monotonic(), records)
        return records

    async def _read_pipelines(self, job_type: str | None) -> list[PipelineRecord]:
        deployments = await self.client.read_deployments(
            deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=[PIPELINE_TAG])),
            flow_filter=FlowFilter(name=FlowFilterName(any_=[job_type])) if job_type else None,
            limit=200,
        )
        await self._flow_names_for(d.flow_id for d in deployments)
        return [self._pipeline(d) for d in deployments]

    async def pipeline(self, pipeline_id: uuid.UUID) -> PipelineRecord | None:
        deployments = await self.client.read_deployments(
            deployment_filter=DeploymentFilter(
                id=DeploymentFilterId(any_=[pipeline_id]),
                tags=DeploymentFilterTags(all_=[PIPELINE_TAG]),
            ),
            limit=1,
        )
        if not deployments:
            return None
        await self._flow_names_for([deployments[0].flow_id])
        return self._pipeline(deployments[0])

    def _pipeline(self, d: Any) -> PipelineRecord:
        return PipelineRecord(
            id=d.id,
            name=d.name,
            job_type=self._flow_names.get(d.flow_id, "Unknown"),
            description=d.description,
            parameters=dict(d.parameters or {}),
            work_queue=d.work_queue_name,
            updated=d.updated,
        )

    # -- jobs --------------------------------------------------------------------------------
    def _record(self, run: Any) -> JobRecord:
        state = run.state
        return JobRecord(
            id=run.id,
            name=run.name,
            job_type=self._flow_names.get(run.flow_id, "Unknown"),
            state_type=(state.type.value if state else "SCHEDULED"),
            state_name=(state.name if state else "Scheduled"),
            state_message=(state.message if state else None),
            queue=run.work_queue_name,
            tags=tuple(run.tags or ()),
            parameters=dict(run.parameters or {}),
            deployment_id=run.deployment_id,
            created=run.created,
            updated=run.updated,
            expected_start=run.expected_start_time,
            start_time=run.start_time,
            end_time=run.end_time,
            total_run_time=float(run.total_run_time.total_seconds()) if run.total_run_time else 0.0,
            idempotency_key=run.idempotency_key,
        )

    async def submit(
        self,
        pipeline_id: uuid.UUID,
        *,
        name: str,
        parameters: dict[str, Any],
        tags: list[str],
        priority: Priority,
        scheduled_time: datetime | None,
        idempotency_key: str | None,
    ) -> JobRecord:
        run = await self.client.create_flow_run_from_deployment(
            pipeline_id,
            parameters=parameters,
            name=name,
            tags=tags,
            state=Scheduled(scheduled_time=scheduled_time) if scheduled_time else Scheduled(),
            idempotency_key=idempotency_key,
            work_queue_name=priority.queue,
        )
        await self._flow_names_for([run.flow_id])
        return self._record(run)

    async def job(self, job_id: uuid.UUID) -> JobRecord | None:
        try:
            run = await self.client.read_flow_run(job_id)
        except ObjectNotFound:
            return None
        await self._flow_names_for([run.flow_id])
        return self._record(run)

    def _run_filter(self, q: JobQuery) -> FlowRunFilter:
        tags = [PIPELINE_TAG, tag("tenant", q.tenant), *q.extra_tags]
        if q.project:
            tags.append(tag("project", q.project))
        if q.submitted_by:
            tags.append(tag("user", q.submitted_by))
        flt = FlowRunFilter(tags=FlowRunFilterTags(all_=tags))
        if q.statuses:
            types = [StateType(t) for s in q.statuses for t in state_types(s)]
            flt.state = FlowRunFilterState(type=FlowRunFilterStateType(any_=types))
        if q.priorities:
            flt.work_queue_name = FlowRunFilterWorkQueueName(any_=[p.queue for p in q.priorities])
        if q.date_from or q.date_to:
            flt.expected_start_time = FlowRunFilterExpectedStartTime(
                after_=q.date_from, before_=q.date_to
            )
        if q.ended_after:
            flt.end_time = FlowRunFilterEndTime(after_=q.ended_after)
        return flt

    def _flow_filter(self, q: JobQuery) -> FlowFilter | None:
        if not q.job_types:
            return None
        return FlowFilter(name=FlowFilterName(any_=q.job_types))

    async def jobs(self, q: JobQuery, *, limit: int, offset: int) -> list[JobRecord]:
        runs = await self.client.read_flow_runs(
            flow_run_filter=self._run_filter(q),
            flow_filter=self._flow_filter(q),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=limit,
            offset=offset,
        )
        await self._flow_names_for(r.flow_id for r in runs)
        return [self._record(r) for r in runs]

    async def count(self, q: JobQuery) -> int:
        return await self.client.count_flow_runs(
            flow_run_filter=self._run_filter(q), flow_filter=self._flow_filter(q)
        )

    async def find_by_idempotency_key(self, key: str) -> JobRecord | None:
        runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[key])),
            limit=1,
        )
        if not runs:
            return None
        await self._flow_names_for([runs[0].flow_id])
        return self._record(runs[0])

    async def finished(self, job_type: str, limit: int = 50) -> list[JobRecord]:
        """Recently completed runs of a job type: the history estimates are made from."""
        runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[PIPELINE_TAG]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])),
            ),
            flow_filter=FlowFilter(name=FlowFilterName(any_=[job_type])),
            sort=FlowRunSort.END_TIME_DESC,
            limit=limit,
        )
        await self._flow_names_for(r.flow_id for r in runs)
        return [self._record(r) for r in runs]

    async def started_since(self, since: datetime, q: JobQuery, cap: int = 1000) -> list[JobRecord]:
        flt = self._run_filter(q)
        flt.start_time = FlowRunFilterStartTime(after_=since)
        runs = await self._read_pages(flt, FlowRunSort.START_TIME_DESC, cap)
        return [self._record(r) for r in runs]

    async def ended_since(self, q: JobQuery, cap: int = 1000) -> list[JobRecord]:
        runs = await self._read_pages(self._run_filter(q), FlowRunSort.END_TIME_DESC, cap)
        return [self._record(r) for r in runs]

    async def queued_ahead(self, record: JobRecord) -> int:
        """How many queued runs the workers take before this one, in ``take_order``: runs
        already handed to a worker (Pending), then runs that are due by queue priority and FIFO,
        then runs scheduled for later by time. Counted across tenants (workers are shared)
        without revealing anything else."""
        now = datetime.now(UTC)
        mine = record.expected_start or now
        pmjobs = FlowRunFilterTags(all_=[PIPELINE_TAG])
        scheduled = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
        counts = [
            FlowRunFilter(
                tags=pmjobs,
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING])),
            )
        ]
        if record.state_type == "PENDING":
            counts = []  # already taken; nothing is ahead of it any more
        elif mine <= now:
            higher = [p.queue for p in Priority if p.rank < record.priority.rank]
            due = FlowRunFilterExpectedStartTime(before_=now)
            if higher:
                counts.append(
                    FlowRunFilter(
                        tags=pmjobs,
                        state=scheduled,
                        work_queue_name=FlowRunFilterWorkQueueName(any_=higher),
                        expected_start_time=due,
                    )
                )
            counts.append(
                FlowRunFilter(
                    tags=pmjobs,
                    state=scheduled,
                    work_queue_name=FlowRunFilterWorkQueueName(any_=[record.priority.queue]),
                    expected_start_time=FlowRunFilterExpectedStartTime(before_=mine),
                )
            )
        else:
            counts.append(
                FlowRunFilter(
                    tags=pmjobs,
                    state=scheduled,
                    expected_start_time=FlowRunFilterExpectedStartTime(before_=mine),
                )
            )
        results = await asyncio.gather(
            *(self.client.count_flow_runs(flow_run_filter=f) for f in counts)
        )
        # the last count ("before or at my time") includes this run itself
        own = 1 if record.state_type == "SCHEDULED" else 0
        return max(0, sum(results) - own)

    async def _read_pages(self, flt: FlowRunFilter, sort: FlowRunSort, cap: int) -> list[Any]:
        """Prefect serves at most ``PAGE`` runs a call; read up to ``cap`` in pages."""
        runs: list[Any] = []
        while len(runs) < cap:
            page = await self.client.read_flow_runs(
                flow_run_filter=flt, sort=sort, limit=min(PAGE, cap - len(runs)), offset=len(runs)
            )
            runs.extend(page)
            if len(page) < PAGE:
                break
        await self._flow_names_for(r.flow_id for r in runs)
        return runs

    async def queue_order(self, cap: int = 2000) -> list[JobRecord]:
        """Every queued pmjobs run, in the order workers take them: queue priority, then FIFO."""
        flt = FlowRunFilter(
            tags=FlowRunFilterTags(all_=[PIPELINE_TAG]),
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.SCHEDULED, StateType.PENDING])
            ),
        )
        runs = await self._read_pages(flt, FlowRunSort.EXPECTED_START_TIME_ASC, cap)
        records = [self._record(r) for r in runs]
        return sorted(records, key=take_order(datetime.now(UTC)))

    # -- progress ----------------------------------------------------------------------------
    async def progress_of(self, records: list[JobRecord]) -> dict[uuid.UUID, ProgressRecord]:
        """The latest progress report of each job; finished jobs' from memory once read."""
        kept = self.finished_progress
        known = {r.id for r in records if r.id in kept and is_finished(r.state_type)}
        found = await self.progress([r.id for r in records if r.id not in known])
        kept.keep((r for r in records if r.id not in known), found)
        for job_id in known:
            if (report := kept.get(job_id)) is not None:
                found[job_id] = report
        return found

    async def progress(self, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, ProgressRecord]:
        """The latest progress report of each job: one query for a whole page."""
        if not job_ids:
            return {}
        artifacts = await self.client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=job_ids),
                type=ArtifactFilterType(any_=[PROGRESS_ARTIFACT_TYPE]),
            ),
            sort=ArtifactSort.UPDATED_DESC,
            limit=len(job_ids) * 2,
        )
        found: dict[uuid.UUID, ProgressRecord] = {}
        for a in artifacts:
            if a.flow_run_id is None or a.flow_run_id in found:
                continue
            data = a.data
            details = {str(k): str(v) for k, v in (a.metadata_ or {}).items()}
            found[a.flow_run_id] = ProgressRecord(
                percentage=float(data) if isinstance(data, int | float) else 0.0,
                stage=details.get("stage"),
                details=details,
                updated=a.updated,
            )
        return found

    # -- state changes -----------------------------------------------------------------------
    async def terminate(self, job_id: uuid.UUID, reason: str) -> str:
        """Run -> Cancelling; returns the resulting state type. Not forced, so Prefect decides:
        a run still Scheduled (no process yet) becomes Cancelled at once; a run a node has
        taken (Pending or Running) becomes Cancelling, its node stops the process and marks it
        Cancelled, and meanwhile Prefect refuses the process's own Running; a run that has
        ended keeps its state, so a late cancel cannot reopen it."""
        result = await self.client.set_flow_run_state(
            job_id, State(type=StateType.CANCELLING, name="Cancelling", message=reason)
        )
        return result.state.type.value if result.state else "CANCELLING"

    async def add_tags(
        self, job_id: uuid.UUID, new_tags: list[str], remove: Iterable[str] = ()
    ) -> None:
        run = await self.client.read_flow_run(job_id)
        dropped = set(remove)
        merged = [t for t in dict.fromkeys([*(run.tags or []), *new_tags]) if t not in dropped]
        await self.client.update_flow_run(job_id, tags=merged)

    async def finished_with_tag(self, wanted: str, limit: int = PAGE) -> list[JobRecord]:
        """Finished pmjobs runs carrying a tag (e.g. notifications still to send)."""
        runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[PIPELINE_TAG, wanted]),
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[
                            StateType.COMPLETED,
                            StateType.FAILED,
                            StateType.CRASHED,
                            StateType.CANCELLED,
                        ]
                    )
                ),
            ),
            sort=FlowRunSort.END_TIME_DESC,
            limit=limit,
        )
        await self._flow_names_for(r.flow_id for r in runs)
        return [self._record(r) for r in runs]

    async def move(self, job_id: uuid.UUID, priority: Priority) -> bool:
        """Move a still-scheduled run to another priority queue (route added by pmjobs)."""
        response = await self.client._client.post(  # noqa: SLF001 - pmjobs' own server route
            f"/pmjobs/flow_runs/{job_id}/work_queue",
            json={"work_pool_name": self.work_pool, "work_queue_name": priority.queue},
        )
        if response.status_code == 409:
            return False
        response.raise_for_status()
        return True

    # -- execution nodes ---------------------------------------------------------------------
    async def nodes(self) -> list[NodeRecord]:
        """Workers of the pool joined with the metrics each node publishes itself (OSS Prefect
        drops worker heartbeat metadata, so nodes write a Prefect variable instead)."""
        workers, variables = await asyncio.gather(
            self.client.read_workers_for_work_pool(self.work_pool),
            self.client.read_variables(limit=200),
        )
        metrics: dict[str, dict[str, Any]] = {}
        for var in variables:
            if var.name.startswith(NODE_VARIABLE_PREFIX) and isinstance(var.value, dict):
                metrics[str(var.value.get("nodeId"))] = var.value
        now = time.time()
        records: list[NodeRecord] = []
        for w in workers:
            m = metrics.get(w.name, {})
            fresh = now - float(m.get("publishedAt", 0)) < 30
            online = str(getattr(w.status, "value", w.status)).upper() == "ONLINE" and fresh
            records.append(NodeRecord(w.name, online, w.last_heartbeat_time, m))
        return records
