"""Analysis job: case KPIs by attribute and by time bucket, and a root-cause view.

KPIs per case attribute (``groupBy``) and per day/week/month (``timeBucket``): case counts,
throughput time, rework rate and SLA breaches (``slaHours``). The root-cause view fits a
shallow decision tree to tell which case attributes separate long (or SLA-breaching) cases
from the rest. Outputs: CSV tables, a JSON with everything and an HTML page.
``delaySeconds`` holds the job in a "Waiting" stage first (demos and tests).
"""

from __future__ import annotations

import html
import json
from typing import Any

import pandas as pd
from prefect import flow
from prefect.states import State

from flows.steps import kpis
from flows.steps.csv_safety import to_csv_bytes
from flows.steps.datasets import load_dataset
from flows.steps.job_run import JobInputError, JobRun, Output, run_job
from flows.steps.report import human_duration

STAGES = ["Waiting", "Loading", "Computing KPIs", "Root cause", "Writing"]


_BUCKETS = {"D": "day", "W": "week", "M": "month"}


def _cell(key: str, value: Any) -> str:
    """Readable cell: durations as d/h/min, rates as %, other floats rounded."""
    if value is None:
        return "—"
    if key.endswith("Seconds") and isinstance(value, int | float):
        return human_duration(float(value))
    if key.endswith("Rate") and isinstance(value, int | float):
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p>No data.</p>"
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(k, v))}</td>" for k, v in r.items()) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _rule_text(rule: Any) -> str:
    return str(rule.get("rule")) if isinstance(rule, dict) else str(rule)


def render_page(title: str, result: dict[str, Any]) -> bytes:
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>body{{font-family:system-ui,sans-serif;"
        "margin:2rem}table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:left}th{background:#f3f3f3}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<section id='periods'><h2>By {_BUCKETS[result['timeBucket']]}</h2>",
        _table(result["byPeriod"]),
        "</section>",
    ]
    for attribute, rows in result["byAttribute"].items():
        parts += [f"<section><h2>By {html.escape(attribute)}</h2>", _table(rows), "</section>"]
    cause = result.get("rootCause")
    if cause:
        parts += ["<section id='root-cause'><h2>Root cause</h2>"]
        parts.append(
            f"<p>{html.escape(str(cause.get('definition') or cause.get('target')))}. "
            f"Held-out accuracy {_cell('', cause.get('heldOutAccuracy'))} "
            f"(always guessing the majority: {_cell('', cause.get('baselineAccuracy'))}).</p>"
        )
        parts.append(_table(cause.get("featureImportance", [])[:15]))
        parts.append(
            "<ul>"
            + "".join(f"<li>{html.escape(_rule_text(r))}</li>" for r in cause.get("rules", []))
            + "</ul>"
        )
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts).encode()


def _work(run: JobRun) -> None:
    p = run.parameters
    with run.stage("Waiting"):
        run.wait(float(p.get("delaySeconds") or 0))
    if not p.get("datasetId"):
        with run.stage("Writing"):
            run.write_output(
                Output(
                    "kpis.json",
                    "AnalysisResult",
                    "KPIs",
                    "json",
                    "data",
                    "application/json",
                    primary=True,
                ),
                json.dumps({"note": "no datasetId: nothing to analyse"}).encode(),
            )
        return
    sla = float(p["slaHours"]) * 3600 if p.get("slaHours") else None
    with run.stage("Loading"):
        df = load_dataset(run)
    with run.stage("Computing KPIs"):
        try:
            cases = kpis.case_table(df, sla)
            by_period = kpis.kpis_by_period(cases, p.get("timeBucket", "M"))
            by_attribute = {a: kpis.kpis_by_attribute(cases, a) for a in p.get("groupBy") or []}
        except (ValueError, KeyError) as exc:
            raise JobInputError(str(exc)) from exc
        run.progress(records=len(df))
    with run.stage("Root cause"):
        target = p.get("rootCauseTarget", "long")
        cause: dict[str, Any] | None
        try:
            cause = kpis.root_cause(cases, target)
        except ValueError as exc:
            run.warn("RootCause", str(exc), 1)
            cause = None
    with run.stage("Writing"):
        result = {
            "cases": len(cases),
            "timeBucket": p.get("timeBucket", "M"),
            "slaHours": p.get("slaHours"),
            "byPeriod": by_period,
            "byAttribute": by_attribute,
            "rootCause": cause,
        }
        run.write_output(
            Output(
                "analysis.html",
                "AnalysisReport",
                f"{run.job_name} — KPIs",
                "html",
                "reports",
                "text/html",
                primary=True,
            ),
            render_page(run.job_name, result),
        )
        run.write_output(
            Output(
                "kpis.json",
                "AnalysisResult",
                "KPIs and root cause",
                "json",
                "data",
                "application/json",
            ),
            json.dumps(result, default=str).encode(),
        )
        run.write_output(
            Output(
                "cases.csv",
                "CaseTable",
                "One row per case",
                "csv",
                "data",
                "text/csv",
                extra={"recordCount": len(cases)},
            ),
            to_csv_bytes(cases),
        )
        run.write_output(
            Output(
                "kpis-by-period.csv",
                "KpiTable",
                "KPIs per time bucket",
                "csv",
                "data",
                "text/csv",
                extra={"recordCount": len(by_period)},
            ),
            to_csv_bytes(pd.DataFrame(by_period)),
        )
        run.summary = {
            "recordsProcessed": len(df),
            "dataQualityScore": None,
            "processingEfficiency": None,
        }


@flow(name="Analysis", persist_result=False, log_prints=True)
def analysis(parameters: dict[str, Any], job: dict[str, Any]) -> State:
    """KPIs of an event log by attribute and time, and what explains long cases."""
    return run_job(parameters, job, STAGES, _work)
