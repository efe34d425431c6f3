"""Notebooks: uploaded ``.ipynb`` files that Notebook jobs run (``parameters.notebookId``)."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, File, UploadFile

from api.deps import ProjectId, ProjectScope, ProjectWriteScope, SettingsDep, TenantId
from api.problems import NotFound, Problem, Unprocessable
from api.settings import Settings
from api.upload_limits import StreamLimitedRoute
from flows.steps import storage

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024


class _NotebookUploadRoute(StreamLimitedRoute):
    @staticmethod
    def limit(settings: Settings) -> int:
        return min(MAX_NOTEBOOK_BYTES, settings.max_upload_bytes)


router = APIRouter(
    prefix="/api/{tenant_id}/{project_id}/notebooks",
    tags=["notebooks"],
    route_class=_NotebookUploadRoute,
)


def _validate(data: bytes) -> dict[str, Any]:
    from flows.steps.notebook_runner import validate_notebook  # nbformat: in the thread only

    return validate_notebook(data)


@router.post("", status_code=201, summary="Upload a Jupyter notebook")
async def upload_notebook(
    tenant_id: TenantId,
    project_id: ProjectId,
    principal: ProjectWriteScope,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The .ipynb file.")],
) -> dict[str, Any]:
    data = await file.read(MAX_NOTEBOOK_BYTES + 1)
    if len(data) > MAX_NOTEBOOK_BYTES:
        raise Problem(413, f"A notebook may be at most {MAX_NOTEBOOK_BYTES} bytes.")
    try:
        info = await to_thread.run_sync(_validate, data)
    except ValueError as exc:
        raise Unprocessable(f"{file.filename}: {exc}", field="file") from exc
    notebook_id = uuid.uuid4()
    folder = storage.notebook_dir(tenant_id, project_id, notebook_id, base=settings.resolved_home)
    meta = {
        "notebookId": str(notebook_id),
        "name": (file.filename or "notebook.ipynb")[:200],
        "cells": info.get("cells"),
        "hasParametersCell": info.get("hasParametersCell"),
        "kernel": info.get("kernel"),
        "sizeBytes": len(data),
        "createdBy": principal.user,
        "projectId": project_id,
        "dateCreated": datetime.now(UTC).isoformat(),
    }
    try:
        storage.write_bytes_atomic(folder / storage.NOTEBOOK_FILE, data)
        storage.write_json_atomic(folder / storage.NOTEBOOK_META, meta)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return meta


@router.get("", summary="List the project's notebooks")
async def list_notebooks(
    tenant_id: TenantId, project_id: ProjectId, principal: ProjectScope, settings: SettingsDep
) -> dict[str, Any]:
    root = settings.resolved_home / "notebooks" / tenant_id / project_id
    items = []
    if root.is_dir():
        for folder in root.iterdir():
            meta = storage.read_json(folder / storage.NOTEBOOK_META)
            if meta:
                items.append(meta)
    items.sort(key=lambda m: m["dateCreated"], reverse=True)
    return {"notebooks": items, "totalCount": len(items)}


@router.get("/{notebook_id}", summary="Read one notebook's description")
async def get_notebook(
    tenant_id: TenantId,
    project_id: ProjectId,
    notebook_id: uuid.UUID,
    principal: ProjectScope,
    settings: SettingsDep,
) -> dict[str, Any]:
    folder = storage.notebook_dir(tenant_id, project_id, notebook_id, base=settings.resolved_home)
    meta = storage.read_json(folder / storage.NOTEBOOK_META)
    if meta is None:
        raise NotFound("Notebook")
    return meta
