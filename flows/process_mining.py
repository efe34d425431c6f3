"""ProcessMining job: discovery, conformance and performance analysis with pm4py.

Stages: Loading → Validating → Discovering → Conformance → Performance → Anomalies → Reporting.
What each ``analysisType`` includes:

- ``quick``: DFG (frequency and mean times), start/end activities, variants, case durations,
  duration histogram and throughput; process maps; no model.
- ``standard`` (default): quick + inductive-miner model (PNML, BPMN), token-based replay
  fitness and precision, bottlenecks, rework.
- ``comprehensive``: standard + resources (workload, handover of work), anomalies, alignments
  (up to ``alignmentsMaxCases`` cases), the enriched events (CSV), a remaining-time model and
  insights.

``includeAnomalyDetection`` and ``generateInsights`` add those parts to any type;
``qualityChecks`` cleans the log first (default: no check, so numbers equal pm4py's own).
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow
from prefect.states import State

from flows.steps import analytics, conformance_extra, mining, process_map, report
from flows.steps.datasets import load_dataset, write_enriched_csv
from flows.steps.eventlog import XES_ACTIVITY, XES_CASE
from flows.steps.job_run import JobInputError, JobRun, Output, run_job

STAGES = [
    "Loading",
    "Validating",
    "Discovering",
    "Conformance",
    "Performance",
    "Anomalies",
    "Reporting",
]


def _outputs_data(run: JobRun, df: Any, comprehensive: bool) -> None:
    """The comprehensive extras: enriched events and a remaining-time model."""
    if not comprehensive:
        return
    from flows.steps import enrichment, prediction

    enriched, _ = enrichment.enrich(df, {})
    write_enriched_csv(run, enriched)
    if df[XES_CASE].nunique() < 20:
        run.warn("Model", "Too few cases (< 20) to train a remaining-time model", 1)
        return
    model, meta = prediction.train_remaining_time_model(df)
    files = prediction.model_to_bytes(model)
    extra = {"mae": meta.get("mae"), "metadata": meta}
    run.write_output(
        Output(
            "remaining-time-model.skops",
            "AnalyticsModel",
            "Remaining-time model (skops, safe to load)",
            "skops",
            "models",
            "application/octet-stream",
            extra=extra,
        ),
        files["skops"],
    )
    run.write_output(
        Output(
            "remaining-time-model.pkl",
            "AnalyticsModel",
            "Remaining-time model (pickle: load only files you trust)",
            "pkl",
            "models",
            "application/octet-stream",
            extra=extra,
        ),
        files["pkl"],
    )


def _work(run: JobRun) -> None:
    p = run.parameters
    kind = p.get("analysisType", "standard")
    standard = kind in ("standard", "comprehensive")
    comprehensive = kind == "comprehensive"
    noise = float(p.get("noiseThreshold", 0.2))
    result: dict[str, Any] = {
        "parameters": {"analysisType": kind, "noiseThreshold": noise},
    }
    with run.stage("Loading"):
        df = load_dataset(run)
        total = len(df)
    with run.stage("Validating"):
        df, quality = analytics.data_quality(df, p.get("qualityChecks") or {})
        for w in quality.get("warnings", []):
            run.warn(w["type"], w["message"], int(w.get("count", 1)))
        if df.empty:
            raise JobInputError("No valid events are left after the quality checks.")
        if len(df) < 2:
            raise JobInputError("The log has fewer than 2 events; there is no process to mine.")
        run.quality = quality["dataValidation"]
        result["quality"] = quality
        result["log"] = {
            "events": len(df),
            "cases": int(df[XES_CASE].nunique()),
            "activities": int(df[XES_ACTIVITY].nunique()),
        }
        run.progress(records=len(df), total=total)
    model = None
    with run.stage("Discovering"):
        result.update(mining.discover_frequencies(df))
        result["variants"] = mining.discover_variants(df)
        cases = result["log"]["cases"]
        for variant in result["variants"]:
            variant["share"] = variant["count"] / cases
        result["caseDurations"] = mining.case_durations(df)
        if standard:
            model = mining.discover_model(df, noise_threshold=noise)
    with run.stage("Conformance"):
        if model is not None:
            result.update(mining.conformance(df, model))
            if comprehensive:
                result["alignments"] = conformance_extra.alignments(
                    df, model, int(p.get("alignmentsMaxCases", 1000))
                )
        else:
            result["fitness"], result["precision"] = None, None
    with run.stage("Performance"):
        metrics = list(p.get("performanceMetrics") or [])
        result["performance"] = analytics.performance(df, metrics)
        if standard:
            result["rework"] = analytics.rework(df)
        if comprehensive or "resource_utilization" in metrics:
            result["resources"] = analytics.resources(df)
    with run.stage("Anomalies"):
        if comprehensive or p.get("includeAnomalyDetection"):
            result["anomalies"] = analytics.anomalies(df, result["variants"])
            count = int(result["anomalies"].get("count", 0))
            if count:
                run.warn("Anomaly", "Cases flagged as anomalous (see the report)", count)
    with run.stage("Reporting"):
        if comprehensive or p.get("generateInsights"):
            result["insights"] = analytics.insights(result)
        _write_outputs(run, df, result, model, comprehensive)
        fitness = result.get("fitness") or {}
        run.summary = {
            "recordsProcessed": len(df),
            "dataQualityScore": round(100.0 * len(df) / total, 1) if total else None,
            "processingEfficiency": round(100.0 * float(fitness["logFitness"]), 1)
            if fitness
            else None,
        }
        run.details = {
            "fitness": result.get("fitness"),
            "precision": result.get("precision"),
            "log": result["log"],
        }
        run.progress(records=len(df))


def _write_outputs(
    run: JobRun, df: Any, result: dict[str, Any], model: Any, comprehensive: bool
) -> None:
    frequency_svg = process_map.render_svg(result)
    performance_svg = process_map.render_svg(result, "performance")
    report_result = result
    if not run.parameters.get("includeProcessVariants", True):
        report_result = {**result, "variants": []}
    run.write_output(
        Output(
            "report.html",
            "ProcessMiningReport",
            f"{run.job_name} — report",
            "html",
            "reports",
            "text/html",
            primary=True,
        ),
        report.render_html(
            run.job_name, report_result, frequency_svg, performance_svg=performance_svg
        ),
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
        frequency_svg,
    )
    run.write_output(
        Output(
            "process-map-performance.svg",
            "ProcessMap",
            "Process map (mean time between activities)",
            "svg",
            "visualizations",
            "image/svg+xml",
        ),
        performance_svg,
    )
    if model is not None:
        noise = {"noiseThreshold": model.noise_threshold}
        run.write_output(
            Output(
                "model.pnml",
                "ProcessModel",
                "Petri net (inductive miner)",
                "pnml",
                "models",
                "application/xml",
                extra=noise,
            ),
            model.to_pnml_bytes(),
        )
        run.write_output(
            Output(
                "model.bpmn",
                "ProcessModel",
                "BPMN model (inductive miner)",
                "bpmn",
                "models",
                "application/xml",
                extra=noise,
            ),
            conformance_extra.to_bpmn_bytes(model),
        )
    _outputs_data(run, df, comprehensive)


@flow(name="ProcessMining", persist_result=False, log_prints=True)
def process_mining(parameters: dict[str, Any], job: dict[str, Any]) -> State:
    """Discover the process of an event log, check conformance, analyse performance (pm4py)."""
    return run_job(parameters, job, STAGES, _work)
