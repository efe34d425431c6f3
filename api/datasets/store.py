"""Uploaded event logs: one folder per dataset under ``$PMJOBS_HOME/datasets/<tenant>/<project>``.

A dataset is a file, not job state, so it lives on disk next to the artifacts: the original
upload, the canonical Parquet that jobs read, and ``dataset.json`` with its counts and mapping.
Ingestion (parsing with pandas/pm4py) runs in a worker thread, imported only when needed, so
the API's event loop never blocks on it. An upload is written and ingested in a staging folder
(``datasets/.staging/<id>``) and renamed into the project only once it is complete, so a
refused or interrupted upload leaves nothing in the project's folders.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from anyio import to_thread

from flows.steps import storage

STAGING = ".staging"  # not a valid tenant id (those start with a letter or digit)
_STALE_STAGING_SECONDS = 24 * 3600


class DatasetError(ValueError):
    """The upload is not a usable event log; the message says why."""


class DatasetTooLarge(DatasetError):
    """The upload expands beyond a configured limit (a gzip or Parquet bomb): HTTP 413."""


@dataclass(frozen=True)
class UploadLimits:
    """The ``PMJOBS_MAX_*`` settings ingestion enforces (see ``eventlog.IngestLimits``)."""

    max_decompressed_bytes: int
    max_csv_line_bytes: int
    max_columns: int


class DatasetStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.staging_root = storage.datasets_root(home) / STAGING
        _sweep_stale(self.staging_root)

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
        """A fresh dataset id and the staging folder its upload is written into; the caller
        removes it (:meth:`discard`) if the upload fails before :meth:`ingest`."""
        dataset_id = uuid.uuid4()
        folder = self.staging_root / str(dataset_id)
        folder.mkdir(parents=True, exist_ok=False)
        return dataset_id, folder

    def discard(self, folder: Path) -> None:
        """Remove a staging folder (only ever one under the staging root)."""
        if folder.parent == self.staging_root:
            shutil.rmtree(folder, ignore_errors=True)

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
        limits: UploadLimits | None = None,
    ) -> dict[str, Any]:
        """Parse and normalise the staged upload and move it into the project; on any failure
        the staging folder is removed and the project's folder is left as it was."""
        folder = upload.parent
        try:
            stats = await to_thread.run_sync(
                _ingest_blocking, upload, filename, mapping, folder, limits
            )
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
            final = self._dir(tenant_id, project_id, dataset_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            folder.rename(final)  # same file system: atomic, the dataset appears complete
        except BaseException:
            self.discard(folder)
            raise
        return meta


def _sweep_stale(staging_root: Path) -> None:
    """Remove staging folders a crashed API left behind (old enough to be no live upload)."""
    if not staging_root.is_dir():
        return
    cutoff = time.time() - _STALE_STAGING_SECONDS
    for folder in staging_root.iterdir():
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def warm_up() -> threading.Thread:
    """Import the ingest code (pandas, pyarrow) in a background thread at start-up, so the
    first upload after a restart does not wait ~0.5 s for it (an import under way is waited
    for, not repeated, by an upload that arrives meanwhile)."""

    def load() -> None:
        with contextlib.suppress(Exception):  # the upload's own import reports any error
            import flows.steps.eventlog  # noqa: F401

    thread = threading.Thread(target=load, name="pmjobs-warm-ingest", daemon=True)
    thread.start()
    return thread


def _ingest_blocking(
    upload: Path,
    filename: str,
    mapping: dict[str, str | None],
    folder: Path,
    limits: UploadLimits | None,
) -> Any:
    from flows.steps import eventlog  # pandas/pm4py: only in this worker thread

    column_mapping = eventlog.ColumnMapping(
        case=mapping.get("caseColumn") or eventlog.XES_CASE,
        activity=mapping.get("activityColumn") or eventlog.XES_ACTIVITY,
        timestamp=mapping.get("timestampColumn") or eventlog.XES_TIMESTAMP,
        resource=mapping.get("resourceColumn") or eventlog.XES_RESOURCE,
        timestamp_format=mapping.get("timestampFormat"),
    )
    bounds = eventlog.IngestLimits(**asdict(limits)) if limits else eventlog.IngestLimits()
    try:
        return eventlog.ingest(
            upload, filename, column_mapping, folder / storage.EVENTS_FILE, bounds
        )
    except eventlog.InputTooLarge as exc:
        raise DatasetTooLarge(str(exc)) from exc
    except eventlog.EventLogError as exc:
        raise DatasetError(str(exc)) from exc
