"""Results of a job: the manifest its flow wrote into the artifact store, shown as documented.

Downloads are resolved only through the manifest's list of names and re-checked to stay inside
the job's folder, so no request can read anything else on disk.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

from anyio import to_thread

from api import formatting
from api.jobs.status import JobStatus, job_status
from api.prefect_gateway import JobRecord
from api.problems import Conflict, NotFound, Unprocessable
from flows.steps import storage

# the original lists the filter in Turkish; both spellings are accepted
_CATEGORIES = {
    "reports": "reports",
    "raporlar": "reports",
    "data": "data",
    "veri": "data",
    "models": "models",
    "modeller": "models",
    "visualizations": "visualizations",
    "görselleştirmeler": "visualizations",
    "gorsellestirmeler": "visualizations",
}


def output_category(value: str | None) -> str | None:
    if value is None:
        return None
    category = _CATEGORIES.get(value.strip().lower())
    if category is None:
        raise Unprocessable(
            f"outputType {value!r} is not one of: reports, data, models, visualizations.",
            field="outputType",
        )
    return category


def available_manifest(record: JobRecord) -> dict[str, Any]:
    """The manifest of a completed job, or of a cancelled one that kept partial results."""
    status = job_status(record.state_type)
    manifest = storage.read_json(storage.job_dir(record.id) / storage.MANIFEST)
    if status is JobStatus.COMPLETED and manifest is not None:
        return manifest
    if status is JobStatus.CANCELLED and manifest is not None and manifest.get("partial"):
        return manifest
    if status is JobStatus.COMPLETED:
        raise Conflict("The job completed but wrote no results.", jobStatus=status.value)
    hint = {
        JobStatus.QUEUED: "it is still queued",
        JobStatus.RUNNING: "it is still running",
        JobStatus.FAILED: "it failed; see 'error' on the job",
        JobStatus.CANCELLED: "it was cancelled without preserving partial results",
    }[status]
    raise Conflict(
        f"No results: {hint}. Results exist once a job is Completed.", jobStatus=status.value
    )


def _outputs(manifest: dict[str, Any], category: str | None) -> list[dict[str, Any]]:
    return [
        o for o in manifest.get("outputs", []) if category is None or o.get("category") == category
    ]


def _output_view(output: dict[str, Any], download_base: str, detailed: bool) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": output.get("type"),
        "title": output.get("title"),
        "format": output.get("format"),
        "size": formatting.size(output.get("sizeBytes")),
        "sizeBytes": output.get("sizeBytes"),
        "downloadUrl": f"{download_base}/{output['name']}",
        "name": output["name"],
        "outputType": output.get("category"),
    }
    for key in ("recordCount", "accuracy", "mae"):
        if key in output:
            view[key] = output[key]
    if detailed and output.get("metadata"):
        view["metadata"] = output["metadata"]
    return view


def results_view(
    record: JobRecord,
    manifest: dict[str, Any],
    *,
    detailed: bool,
    include_artifacts: bool,
    category: str | None,
    download_base: str,
    locale: str,
) -> dict[str, Any]:
    status = job_status(record.state_type)
    outputs = _outputs(manifest, category) if include_artifacts else []
    primary = next((o for o in outputs if o.get("primary")), outputs[0] if outputs else None)
    additional = [o for o in outputs if o is not primary]
    duration = (
        (record.end_time - record.start_time).total_seconds()
        if record.end_time and record.start_time
        else None
    )
    execution = dict(manifest.get("executionMetrics") or {})
    body: dict[str, Any] = {
        "jobId": str(record.id),
        "status": status.value,
        "completionTime": record.end_time.isoformat() if record.end_time else None,
        "totalDuration": formatting.duration(duration, locale),
        "totalDurationSeconds": round(duration, 3) if duration is not None else None,
        "success": status is JobStatus.COMPLETED,
        "partial": bool(manifest.get("partial")),
        "summary": manifest.get("summary") or {},
        "results": {
            "primaryOutput": _output_view(primary, download_base, detailed) if primary else None,
            "additionalOutputs": [_output_view(o, download_base, detailed) for o in additional],
        },
        "executionMetrics": {
            "totalCpuTime": formatting.duration(execution.get("totalCpuSeconds"), locale),
            "totalCpuSeconds": execution.get("totalCpuSeconds"),
            "peakMemoryUsage": formatting.size(execution.get("peakMemoryBytes")),
            "peakMemoryBytes": execution.get("peakMemoryBytes"),
            "diskIoOperations": execution.get("diskIoOperations"),
            "networkDataTransfer": formatting.size(execution.get("networkBytes", 0)),
            "networkBytes": execution.get("networkBytes", 0),
        },
        "qualityMetrics": manifest.get("qualityMetrics")
        or {"dataValidation": None, "processingErrors": [], "warnings": []},
    }
    if detailed:
        body["executionMetrics"]["stageSeconds"] = execution.get("stageSeconds", {})
        body["details"] = manifest.get("details") or {}
    return body


def artifact_file(record: JobRecord, name: str) -> tuple[Path, dict[str, Any]]:
    """Only a name listed in the manifest, resolved inside the job's folder, is ever served."""
    status = job_status(record.state_type)
    manifest = storage.read_json(storage.job_dir(record.id) / storage.MANIFEST)
    if manifest is None or status not in (JobStatus.COMPLETED, JobStatus.CANCELLED):
        raise NotFound("Artifact")
    entry = next((o for o in manifest.get("outputs", []) if o.get("name") == name), None)
    if entry is None:
        raise NotFound("Artifact")
    # A symlink (the job folder or the file) is never followed, wherever it points.
    folder = storage.job_dir(record.id)
    candidate = folder / name
    if folder.is_symlink() or candidate.is_symlink():
        raise NotFound("Artifact")
    root, path = folder.resolve(), candidate.resolve()
    if root.parent != storage.artifacts_root().resolve() or path.parent != root:
        raise NotFound("Artifact")
    if not path.is_file():
        raise NotFound("Artifact")
    return path, entry


async def bundle(record: JobRecord, manifest: dict[str, Any], category: str | None) -> Path:
    """format=download: a zip of the outputs (built off the event loop)."""
    outputs = _outputs(manifest, category)
    if not outputs:
        raise NotFound("Output")
    files = [artifact_file(record, o["name"])[0] for o in outputs]

    def build() -> Path:
        fd, name = tempfile.mkstemp(prefix=f"pmjobs-{record.id}-", suffix=".zip")
        with open(fd, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, arcname=f.name)
        return Path(name)

    return await to_thread.run_sync(build)
