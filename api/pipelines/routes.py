"""Pipelines: the Prefect deployments a job can name as its ``resource``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import GatewayDep, ProjectId, ProjectScope, TenantId
from api.jobs.service import DEFAULT_PIPELINE

router = APIRouter(prefix="/api/{tenant_id}/{project_id}/pipelines", tags=["pipelines"])


@router.get("", summary="List pipelines")
async def list_pipelines(
    tenant_id: TenantId, project_id: ProjectId, principal: ProjectScope, gateway: GatewayDep
) -> dict[str, Any]:
    pipelines = sorted(
        await gateway.pipelines(), key=lambda p: (p.job_type, p.name != DEFAULT_PIPELINE, p.name)
    )
    return {
        "pipelines": [
            {
                "resourceType": "Pipeline",
                "resourceId": str(p.id),
                "resourceName": f"{p.job_type}/{p.name}",
                "jobType": p.job_type,
                "name": p.name,
                "isDefault": p.name == DEFAULT_PIPELINE,
                "description": p.description,
                "defaultParameters": (p.parameters.get("parameters") or {}),
                "defaultPriority": (p.work_queue or "normal").capitalize(),
            }
            for p in pipelines
        ]
    }
