"""System status and queue view."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from api.deps import ProjectId, ProjectScope, TenantId, TenantScope
from api.jobs.status import JobType, Priority
from api.system.service import SystemService

router = APIRouter(tags=["system"])


def _service(request: Request) -> SystemService:
    return request.app.state.system


ServiceDep = Annotated[SystemService, Depends(_service)]


@router.get("/api/{tenant_id}/execution/system/status", summary="System execution status")
async def system_status(
    tenant_id: TenantId, principal: TenantScope, service: ServiceDep
) -> dict[str, Any]:
    return await service.status(tenant_id)


@router.get("/api/{tenant_id}/{project_id}/execution/queue", summary="The job queue, in run order")
async def queue(
    tenant_id: TenantId,
    project_id: ProjectId,
    principal: ProjectScope,
    service: ServiceDep,
    priority: Annotated[Priority | None, Query()] = None,
    job_type: Annotated[JobType | None, Query(alias="jobType")] = None,
    include_estimates: Annotated[bool, Query(alias="includeEstimates")] = True,
) -> dict[str, Any]:
    return await service.queue(tenant_id, project_id, priority, job_type, include_estimates)
