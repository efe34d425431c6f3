"""Load a job's dataset: the canonical Parquet written at upload, filtered by ``timeWindow``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from flows.steps import storage
from flows.steps.csv_safety import to_csv_bytes
from flows.steps.eventlog import (
    XES_CASE,
    XES_TIMESTAMP,
    load_events,
    store_events,
)
from flows.steps.job_run import JobInputError, JobRun, Output


def dataset_path(run: JobRun, dataset_id: str) -> Path:
    path = (
        storage.dataset_dir(run.job["tenantId"], run.job["projectId"], dataset_id)
        / storage.EVENTS_FILE
    )
    if not path.is_file():
        raise JobInputError(f"Dataset {dataset_id} no longer exists.")
    return path


def load_dataset(
    run: JobRun,
    dataset_id: str | None = None,
    *,
    apply_window: bool = True,
    report: bool = True,
) -> pd.DataFrame:
    """The job's dataset (or another of its project), filtered by ``timeWindow``."""
    dataset_id = dataset_id or run.parameters.get("datasetId")
    if not dataset_id:
        raise JobInputError("parameters.datasetId is required for this job type.")
    path = dataset_path(run, dataset_id)
    try:
        df = load_events(path)
    except Exception as exc:  # EventLogError, or a damaged Parquet file
        raise JobInputError(f"Dataset {dataset_id} cannot be read: {exc}") from exc
    window = run.parameters.get("timeWindow")
    if apply_window and window:
        df = filter_time_window(df, window)
        if df.empty:
            raise JobInputError("No case starts inside timeWindow; nothing to analyse.")
    if report:
        run.progress(records=len(df), total=len(df))
    return df


def register_dataset(run: JobRun, df: pd.DataFrame, name: str) -> dict[str, Any]:
    """Store a job-made event log as a new dataset of the job's project (Parquet for jobs, CSV
    for people) and return its description, as an upload would."""
    tenant, project = run.job["tenantId"], run.job["projectId"]
    dataset_id = uuid.uuid4()
    folder = storage.dataset_dir(tenant, project, dataset_id)
    stats = store_events(df, folder / storage.EVENTS_FILE, fmt="parquet")
    storage.write_bytes_atomic(folder / "events.csv", to_csv_bytes(df))
    meta = storage.dataset_meta(
        dataset_id=dataset_id,
        tenant_id=tenant,
        project_id=project,
        name=name,
        stats=stats,
        size_bytes=(folder / storage.EVENTS_FILE).stat().st_size,
        created_by=str(run.job.get("submittedBy") or "job"),
        createdByJob=str(run.flow_run_id),
    )
    storage.write_json_atomic(folder / storage.DATASET_META, meta)
    return meta


def _utc(value: Any) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def filter_time_window(df: pd.DataFrame, window: dict[str, Any]) -> pd.DataFrame:
    """Keep whole cases whose first event lies in [startDate, endDate] (dates are inclusive days,
    UTC): cutting cases in the middle would invent false start and end activities."""
    start, end = window.get("startDate"), window.get("endDate")
    first = df.groupby(XES_CASE, sort=False)[XES_TIMESTAMP].transform("min")
    keep = pd.Series(True, index=df.index)
    if start:
        keep &= first >= _utc(start)
    if end:
        if len(str(end)) <= 10:  # a plain date: the whole day counts
            keep &= first < _utc(end) + pd.Timedelta(days=1)
        else:
            keep &= first <= _utc(end)
    return df[keep]


def write_enriched_csv(
    run: JobRun, enriched: pd.DataFrame, primary: bool = False, **extra: Any
) -> None:
    """The EnrichedDataset output (CSV, cells escaped against spreadsheet formula injection)."""
    run.write_output(
        Output(
            "enriched.csv",
            "EnrichedDataset",
            "Events with derived columns",
            "csv",
            "data",
            "text/csv",
            primary=primary,
            extra={"recordCount": len(enriched), **extra},
        ),
        to_csv_bytes(enriched),
    )
