"""Analysis job: KPIs of an event log per month (case count, throughput time).

``parameters.delaySeconds`` holds the job in a "Waiting" stage first; with no dataset the job
only waits. Useful for demos and for observing queueing, priorities and cancellation.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow
from prefect.states import State

from flows.steps.datasets import load_dataset
from flows.steps.eventlog import XES_CASE, XES_TIMESTAMP
from flows.steps.job_run import JobRun, Output, run_job

STAGES = ["Waiting", "Loading", "Computing KPIs", "Writing"]


def monthly_kpis(df: Any) -> list[dict[str, Any]]:
    cases = df.groupby(XES_CASE, sort=False)[XES_TIMESTAMP].agg(["min", "max"])
    cases["month"] = cases["min"].dt.strftime("%Y-%m")
    cases["seconds"] = (cases["max"] - cases["min"]).dt.total_seconds()
    table = cases.groupby("month")["seconds"].agg(["count", "mean", "median"]).reset_index()
    return [
        {
            "month": r.month,
            "cases": int(r.count),
            "meanThroughputSeconds": float(r.mean),
            "medianThroughputSeconds": float(r.median),
        }
        for r in table.itertuples()
    ]


def _work(run: JobRun) -> None:
    with run.stage("Waiting"):
        run.wait(float(run.parameters.get("delaySeconds") or 0))
    rows: list[dict[str, Any]] = []
    records = 0
    if run.parameters.get("datasetId"):
        with run.stage("Loading"):
            df = load_dataset(run)
            records = len(df)
        with run.stage("Computing KPIs"):
            rows = monthly_kpis(df)
    with run.stage("Writing"):
        run.write_output(
            Output(
                "kpis.json",
                "AnalysisResult",
                "KPIs per month",
                "json",
                "data",
                "application/json",
                primary=True,
                extra={"recordCount": len(rows)},
            ),
            json.dumps({"monthly": rows}).encode(),
        )
        run.summary = {
            "recordsProcessed": records,
            "dataQualityScore": None,
            "processingEfficiency": None,
        }


@flow(name="Analysis", persist_result=False, log_prints=True)
def analysis(parameters: dict[str, Any], job: dict[str, Any]) -> State:
    """Compute KPIs of an event log."""
    return run_job(parameters, job, STAGES, _work)
