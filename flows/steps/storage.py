"""Where files live: the one definition of the on-disk layout under ``PMJOBS_HOME``.

Job *state* lives in Prefect; only files (uploaded datasets, job outputs) live here. The API and
the workers share this folder. Every write goes to a temporary name first and is renamed into
place, so a reader never sees a half-written file.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def home() -> Path:
    return Path(os.environ.get("PMJOBS_HOME", ".pmjobs")).expanduser().resolve()


def datasets_root(base: Path | None = None) -> Path:
    return (base or home()) / "datasets"


def dataset_dir(
    tenant_id: str, project_id: str, dataset_id: uuid.UUID | str, base: Path | None = None
) -> Path:
    return datasets_root(base) / tenant_id / project_id / str(uuid.UUID(str(dataset_id)))


def notebook_dir(
    tenant_id: str, project_id: str, notebook_id: uuid.UUID | str, base: Path | None = None
) -> Path:
    return (
        (base or home()) / "notebooks" / tenant_id / project_id / str(uuid.UUID(str(notebook_id)))
    )


def artifacts_root(base: Path | None = None) -> Path:
    return (base or home()) / "artifacts"


def job_dir(job_id: uuid.UUID | str, base: Path | None = None) -> Path:
    """Outputs of one job. The id is re-parsed as a UUID so no caller can smuggle a path in."""
    return artifacts_root(base) / str(uuid.UUID(str(job_id)))


MANIFEST = "manifest.json"
DATASET_META = "dataset.json"
EVENTS_FILE = "events.parquet"
NOTEBOOK_FILE = "notebook.ipynb"
NOTEBOOK_META = "notebook.json"


def dataset_meta(
    *,
    dataset_id: uuid.UUID,
    tenant_id: str,
    project_id: str,
    name: str,
    stats: Any,
    size_bytes: int,
    created_by: str,
    **extra: Any,
) -> dict[str, Any]:
    """The description of a dataset (``dataset.json``), for uploads and job-made datasets alike.
    ``stats`` is an ``eventlog.DatasetStats``."""
    return {
        "datasetId": str(dataset_id),
        "name": name,
        "format": stats.format,
        "events": stats.events,
        "cases": stats.cases,
        "activities": stats.activities,
        "startTime": stats.start_time.isoformat() if stats.start_time else None,
        "endTime": stats.end_time.isoformat() if stats.end_time else None,
        "columns": stats.columns,
        "warnings": list(getattr(stats, "warnings", [])),
        "sizeBytes": size_bytes,
        "createdBy": created_by,
        "tenantId": tenant_id,
        "projectId": project_id,
        "dateCreated": datetime.now(UTC).isoformat(),
        **extra,
    }


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, payload: Any) -> None:
    write_bytes_atomic(path, json.dumps(payload, indent=2, default=str).encode())


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):  # a file where a folder should be: absent
        return None
