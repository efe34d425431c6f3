"""Dataset upload and listing: the event logs jobs refer to by ``parameters.datasetId``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from api.datasets.store import DatasetError, DatasetStore, DatasetTooLarge, UploadLimits
from api.deps import (
    ProjectId,
    ProjectScope,
    ProjectWriteScope,
    SettingsDep,
    TenantId,
)
from api.problems import NotFound, Problem, Unprocessable
from api.upload_limits import StreamLimitedRoute, UploadTooLarge

_CHUNK = 1024 * 1024


router = APIRouter(
    prefix="/api/{tenant_id}/{project_id}/datasets",
    tags=["datasets"],
    route_class=StreamLimitedRoute,
)


def _store(request: Request) -> DatasetStore:
    return request.app.state.datasets


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in ("tenantId",)}


@router.post("", status_code=201, summary="Upload an event log (CSV, XES, XES.gz or Parquet)")
async def upload_dataset(
    request: Request,
    tenant_id: TenantId,
    project_id: ProjectId,
    principal: ProjectWriteScope,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="The event log.")],
    case_column: Annotated[str | None, Form(alias="caseColumn", max_length=200)] = None,
    activity_column: Annotated[str | None, Form(alias="activityColumn", max_length=200)] = None,
    timestamp_column: Annotated[str | None, Form(alias="timestampColumn", max_length=200)] = None,
    resource_column: Annotated[str | None, Form(alias="resourceColumn", max_length=200)] = None,
    timestamp_format: Annotated[str | None, Form(alias="timestampFormat", max_length=100)] = None,
) -> dict[str, Any]:
    store = _store(request)
    filename = (file.filename or "upload").replace("/", "_").replace("\\", "_")[:200]
    dataset_id, folder = store.staging_path(tenant_id, project_id)
    upload = folder / f"original{''.join(_suffixes(filename))}"
    written = 0
    try:
        with upload.open("wb") as out:
            while chunk := await file.read(_CHUNK):
                written += len(chunk)
                if written > settings.max_upload_bytes:
                    raise UploadTooLarge(settings.max_upload_bytes)
                out.write(chunk)
        if written == 0:
            raise Unprocessable(f"The uploaded file '{filename}' is empty (0 bytes).", field="file")
        mapping = {
            "caseColumn": case_column,
            "activityColumn": activity_column,
            "timestampColumn": timestamp_column,
            "resourceColumn": resource_column,
            "timestampFormat": timestamp_format,
        }
        meta = await store.ingest(
            tenant_id=tenant_id,
            project_id=project_id,
            dataset_id=dataset_id,
            upload=upload,
            filename=filename,
            mapping=mapping,
            created_by=principal.user,
            limits=UploadLimits(
                max_decompressed_bytes=settings.max_decompressed_bytes,
                max_csv_line_bytes=settings.max_csv_line_bytes,
                max_columns=settings.max_columns,
            ),
        )
    except DatasetTooLarge as exc:
        store.discard(folder)
        raise Problem(413, str(exc), field="file") from exc
    except DatasetError as exc:
        store.discard(folder)
        detail = str(exc) if f"'{filename}'" in str(exc) else f"{filename}: {exc}"
        raise Unprocessable(detail, field="file") from exc
    except BaseException:
        store.discard(folder)
        raise
    return _public(meta)


def _suffixes(filename: str) -> list[str]:
    lower = filename.lower()
    for ext in (".xes.gz", ".csv.gz", ".xes", ".csv", ".parquet", ".gz"):
        if lower.endswith(ext):
            return [ext]
    return [""]


@router.get("", summary="List the project's datasets")
async def list_datasets(
    request: Request, tenant_id: TenantId, project_id: ProjectId, principal: ProjectScope
) -> dict[str, Any]:
    items = [_public(m) for m in _store(request).list(tenant_id, project_id)]
    return {"datasets": items, "totalCount": len(items)}


@router.get("/{dataset_id}", summary="Read one dataset")
async def get_dataset(
    request: Request,
    tenant_id: TenantId,
    project_id: ProjectId,
    dataset_id: uuid.UUID,
    principal: ProjectScope,
) -> dict[str, Any]:
    meta = _store(request).get(tenant_id, project_id, dataset_id)
    if meta is None:
        raise NotFound("Dataset")
    return _public(meta)
