"""ProcessMining job: discovery and conformance with pm4py on an uploaded event log.

Stages: Loading → Validating → Discovering → Conformance → Performance → Reporting. Outputs: the
``ProcessMiningResult`` JSON (CONTRACT.md), an SVG process map, the model as PNML and an HTML
report that embeds them.
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow
from prefect.states import State

from flows.steps import mining, process_map, report
from flows.steps.datasets import load_dataset
from flows.steps.eventlog import XES_ACTIVITY, XES_CASE, XES_TIMESTAMP
from flows.steps.job_run import JobRun, Output, run_job

STAGES = ["Loading", "Validating", "Discovering", "Conformance", "Performance", "Reporting"]


def _work(run: JobRun) -> None:
    noise = float(run.parameters.get("noiseThreshold", 0.2))
    with run.stage("Loading"):
        df = load_dataset(run)
    with run.stage("Validating"):
        total = len(df)
        missing = int(df[[XES_CASE, XES_ACTIVITY, XES_TIMESTAMP]].isna().any(axis=1).sum())
        if missing:
            run.warn(
                "DataQuality", "Events without case, activity or timestamp were dropped", missing
            )
            df = df.dropna(subset=[XES_CASE, XES_ACTIVITY, XES_TIMESTAMP])
        run.quality = {
            "totalRecords": total,
            "validRecords": len(df),
            "duplicatesRemoved": 0,
            "invalidRecords": missing,
        }
        run.progress(records=len(df))
    with run.stage("Discovering"):
        result: dict[str, Any] = mining.discover_frequencies(df)
        result["variants"] = mining.discover_variants(df)
        model = mining.discover_model(df, noise_threshold=noise)
    with run.stage("Conformance"):
        result.update(mining.conformance(df, model))
    with run.stage("Performance"):
        result["caseDurations"] = mining.case_durations(df)
    with run.stage("Reporting"):
        result["parameters"] = {"noiseThreshold": noise}
        result["log"] = {
            "events": len(df),
            "cases": int(df[XES_CASE].nunique()),
            "activities": int(df[XES_ACTIVITY].nunique()),
        }
        svg = process_map.render_svg(result)
        title = run.job_name
        run.write_output(
            Output(
                "report.html",
                "ProcessMiningReport",
                f"{title} — report",
                "html",
                "reports",
                "text/html",
                primary=True,
            ),
            report.render_html(title, result, svg),
        )
        run.write_output(
            Output(
                "result.json",
                "ProcessMiningResult",
                "Process mining result",
                "json",
                "data",
                "application/json",
            ),
            json.dumps(result).encode(),
        )
        run.write_output(
            Output(
                "process-map.svg",
                "ProcessMap",
                "Process map (frequency)",
                "svg",
                "visualizations",
                "image/svg+xml",
            ),
            svg,
        )
        run.write_output(
            Output(
                "model.pnml",
                "ProcessModel",
                "Petri net (inductive miner)",
                "pnml",
                "models",
                "application/xml",
                extra={"noiseThreshold": noise},
            ),
            model.to_pnml_bytes(),
        )
        fitness = result.get("fitness") or {}
        run.summary = {
            "recordsProcessed": len(df),
            "dataQualityScore": round(100.0 * len(df) / total, 1) if total else None,
            "processingEfficiency": round(100.0 * float(fitness.get("logFitness", 0.0)), 1),
        }
        run.details = {"fitness": fitness, "precision": result.get("precision")}
        run.progress(records=len(df))


@flow(name="ProcessMining", persist_result=False, log_prints=True)
def process_mining(parameters: dict[str, Any], job: dict[str, Any]) -> State:
    """Discover the process of an event log and check its conformance (pm4py)."""
    return run_job(parameters, job, STAGES, _work)
