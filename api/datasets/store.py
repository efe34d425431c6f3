"""Uploaded event logs: one folder per dataset under ``$PMJOBS_HOME/datasets/<tenant>/<project>``.

A dataset is a file, not job state, so it lives on disk next to the artifacts: the original
upload, the canonical Parquet that jobs read, and ``dataset.json`` with its counts and mapping.
Ingestion (parsing with pandas/pm4py) runs in a worker thread, imported only when needed, so
the API's event loop never blocks on it.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

from anyio import to_thread

from flows.steps import storage


class DatasetError(ValueError):
    """The upload is not a usable event log; the message says why."""


class DatasetStore:
    def __init__(self, home: Path) -> None:
        self.home = home

    def _dir(self, tenant_id: str, project_id: str, dataset_id: uuid.UUID) -> Path:
        return storage.dataset_dir(tenant_id, project_id, dataset_id, base=self.home)

    def get(self, tenant_id: str, project_id: str, dataset_id: uuid.UUID) -> dict[str, Any] | None:
        return storage.read_json(
            self._dir(tenant_id, project_id, dataset_id) / storage.DATASET_META
        )

    def list(self, tenant_id: str, project_id: str) -> list[dict[str, Any]]:
        root = storage.datasets_root(self.home) / tenant_id / project_id
        if not root.is_dir():
            return []
        found = [storage.read_json(d / storage.DATASET_META) for d in root.iterdir() if d.is_dir()]
        return sorted((m for m in found if m), key=lambda m: m["dateCreated"], reverse=True)

    def staging_path(self, tenant_id: str, project_id: str) -> tuple[uuid.UUID, Path]:
        """A fresh dataset id and the folder its upload is written into."""
        dataset_id = uuid.uuid4()
        folder = self._dir(tenant_id, project_id, dataset_id)
        folder.mkdir(parents=True, exist_ok=False)
        return dataset_id, folder

    async def ingest(
        self,
        *,
        tenant_id: str,
        project_id: str,
        dataset_id: uuid.UUID,
        upload: Path,
        filename: str,
        mapping: dict[str, str | None],
        created_by: str,
    ) -> dict[str, Any]:
        """Parse and normalise the upload; on any failure the dataset folder is removed."""
        folder = upload.parent
        try:
            stats = await to_thread.run_sync(_ingest_blocking, upload, filename, mapping, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        meta = storage.dataset_meta(
            dataset_id=dataset_id,
            tenant_id=tenant_id,
            project_id=project_id,
            name=filename,
            stats=stats,
            size_bytes=upload.stat().st_size,
            created_by=created_by,
            columnMapping=mapping,
        )
        storage.write_json_atomic(folder / storage.DATASET_META, meta)
        return meta


def _ingest_blocking(
    upload: Path, filename: str, mapping: dict[str, str | None], folder: Path
) -> Any:
    from flows.steps import eventlog  # pandas/pm4py: only in this worker thread

    column_mapping = eventlog.ColumnMapping(
        case=mapping.get("caseColumn") or eventlog.XES_CASE,
        activity=mapping.get("activityColumn") or eventlog.XES_ACTIVITY,
        timestamp=mapping.get("timestampColumn") or eventlog.XES_TIMESTAMP,
        resource=mapping.get("resourceColumn") or eventlog.XES_RESOURCE,
        timestamp_format=mapping.get("timestampFormat"),
    )
    try:
        return eventlog.ingest(upload, filename, column_mapping, folder / storage.EVENTS_FILE)
    except eventlog.EventLogError as exc:
        raise DatasetError(str(exc)) from exc
