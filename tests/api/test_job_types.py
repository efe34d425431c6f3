"""Every job type end to end through the API on real logs: outputs listed and downloadable."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

import nbformat
import pandas as pd
import pm4py
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tests.conftest import DATA, Api


@pytest.fixture(scope="module")
def receipt(tenant_api: Api) -> dict[str, Any]:
    return tenant_api.upload("receipt.csv")


@pytest.fixture(scope="module")
def sepsis(tenant_api: Api) -> dict[str, Any]:
    return tenant_api.upload("Sepsis Cases - Event Log.xes.gz")


def _outputs(api: Api, job_id: str, **params: Any) -> dict[str, dict[str, Any]]:
    r = api.get(f"/execution/job/{job_id}/results", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    outputs = [body["results"]["primaryOutput"], *body["results"]["additionalOutputs"]]
    return {o["name"]: o for o in outputs if o}


def _run(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    job = api.wait(api.submit(body)["jobId"], timeout=300)
    assert job["status"] == "Completed", job
    return job


def test_comprehensive_process_mining_on_receipt(tenant_api: Api, receipt: dict[str, Any]) -> None:
    job = _run(
        tenant_api,
        {
            "jobName": "Receipt comprehensive",
            "jobType": "ProcessMining",
            "parameters": {
                "datasetId": receipt["datasetId"],
                "analysisType": "comprehensive",
                "performanceMetrics": ["cycle_time", "waiting_time", "resource_utilization"],
                "alignmentsMaxCases": 10,
            },
        },
    )
    outputs = _outputs(tenant_api, job["jobId"], format="detailed")
    types = {o["type"] for o in outputs.values()}
    assert {
        "ProcessMiningReport",
        "ProcessMiningResult",
        "ProcessMap",
        "ProcessModel",
        "EnrichedDataset",
        "AnalyticsModel",
    } <= types
    for name, output in outputs.items():
        r = tenant_api.get(output["downloadUrl"])
        assert r.status_code == 200, name
        assert len(r.content) == output["sizeBytes"], name
    model = outputs["remaining-time-model.skops"]
    assert model["mae"] > 0 and model["metadata"]["mae"] == model["mae"]
    result = json.loads(tenant_api.get(outputs["result.json"]["downloadUrl"]).content)
    for key in ("performance", "rework", "resources", "anomalies", "insights", "alignments"):
        assert result.get(key) is not None, key
    assert (
        result["alignments"]["computed"] is False
        and "alignmentsMaxCases" in (result["alignments"]["reason"])
    )
    assert result["insights"] and all(i["title"] and i["detail"] for i in result["insights"])
    # the core numbers are pm4py's
    log = pm4py.format_dataframe(
        pd.read_csv(DATA / "receipt.csv"),
        case_id="case:concept:name",
        activity_key="concept:name",
        timestamp_key="time:timestamp",
    )
    dfg, start, end = pm4py.discover_dfg(log)
    assert {(e["source"], e["target"]): e["frequency"] for e in result["dfg"]} == dict(dfg)
    assert result["startActivities"] == dict(start) and result["endActivities"] == dict(end)
    assert len(result["variants"]) == len(pm4py.get_variants(log))
    enriched = pd.read_csv(
        io.BytesIO(tenant_api.get(outputs["enriched.csv"]["downloadUrl"]).content)
    )
    assert len(enriched) == len(log) and "case_duration_seconds" in enriched
    report = tenant_api.get(outputs["report.html"]["downloadUrl"]).text
    for section in ("process-map", "variants", "durations", "conformance", "anomalies"):
        assert f'id="{section}"' in report, section


def test_quick_analysis_has_no_model(tenant_api: Api, receipt: dict[str, Any]) -> None:
    job = _run(
        tenant_api,
        {
            "jobName": "Receipt quick",
            "jobType": "ProcessMining",
            "parameters": {"datasetId": receipt["datasetId"], "analysisType": "quick"},
        },
    )
    outputs = _outputs(tenant_api, job["jobId"])
    assert "model.pnml" not in outputs and "process-map.svg" in outputs
    models = tenant_api.get(
        f"/execution/job/{job['jobId']}/results", params={"outputType": "models"}
    ).json()
    assert models["results"]["primaryOutput"] is None


def test_parameter_of_another_job_type_is_refused(tenant_api: Api, receipt: dict[str, Any]) -> None:
    r = tenant_api.post(
        "/execution/job",
        json={
            "jobName": "x",
            "jobType": "ProcessMining",
            "parameters": {"datasetId": receipt["datasetId"], "notebookId": str(uuid.uuid4())},
        },
    )
    assert r.status_code == 422 and "notebookId" in r.json()["detail"]


def test_enrichment_registers_a_new_dataset(tenant_api: Api, receipt: dict[str, Any]) -> None:
    job = _run(
        tenant_api,
        {
            "jobName": "Receipt enriched",
            "jobType": "DataEnrichment",
            "parameters": {
                "datasetId": receipt["datasetId"],
                "workingCalendar": {"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"},
                "removeDuplicates": True,
            },
        },
    )
    results = tenant_api.get(f"/execution/job/{job['jobId']}/results").json()
    new_id = results["summary"]["datasetId"]
    dataset = tenant_api.get(f"/datasets/{new_id}").json()
    assert (
        dataset["events"] + results["qualityMetrics"]["dataValidation"]["duplicatesRemoved"]
        == (receipt["events"])
    )
    assert "working_seconds_since_previous" in dataset["columns"]
    csv = tenant_api.get(results["results"]["primaryOutput"]["downloadUrl"]).content
    assert b"working_seconds_since_previous" in csv.splitlines()[0]
    # the new dataset feeds the next job
    _run(
        tenant_api,
        {
            "jobName": "Mining the enriched log",
            "jobType": "ProcessMining",
            "parameters": {"datasetId": new_id, "analysisType": "quick"},
        },
    )


def test_analysis_kpis_and_root_cause(tenant_api: Api, sepsis: dict[str, Any]) -> None:
    job = _run(
        tenant_api,
        {
            "jobName": "Sepsis KPIs",
            "jobType": "Analysis",
            "parameters": {
                "datasetId": sepsis["datasetId"],
                "groupBy": ["InfectionSuspected"],
                "slaHours": 24 * 14,
                "timeBucket": "M",
                "rootCauseTarget": "sla",
            },
        },
    )
    outputs = _outputs(tenant_api, job["jobId"])
    assert {"analysis.html", "kpis.json", "cases.csv", "kpis-by-period.csv"} <= set(outputs)
    result = json.loads(tenant_api.get(outputs["kpis.json"]["downloadUrl"]).content)
    assert result["cases"] == sepsis["cases"]
    assert sum(row["cases"] for row in result["byPeriod"]) == sepsis["cases"]
    assert result["byAttribute"]["InfectionSuspected"]
    assert result["rootCause"]["featureImportance"]


def _notebook(*cells: str, parameters: str | None = None) -> bytes:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    if parameters is not None:
        cell = new_code_cell(parameters)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells += [new_code_cell(c) for c in cells]
    return nbformat.writes(nb).encode()


def _upload_notebook(api: Api, data: bytes, name: str = "analysis.ipynb") -> str:
    r = api.post("/notebooks", files={"file": (name, data)})
    assert r.status_code == 201, r.text
    return r.json()["notebookId"]


def test_notebook_runs_with_parameters(tenant_api: Api, receipt: dict[str, Any]) -> None:
    notebook_id = _upload_notebook(
        tenant_api,
        _notebook(
            "import pandas as pd, pathlib\n"
            "events = pd.read_parquet(dataset_path)\n"
            "pathlib.Path(output_dir, 'summary.txt').write_text(f'{greeting} {len(events)}')",
            parameters="greeting = 'hello'\ndataset_path = None\noutput_dir = None",
        ),
    )
    job = _run(
        tenant_api,
        {
            "jobName": "My notebook",
            "jobType": "Notebook",
            "parameters": {
                "notebookId": notebook_id,
                "datasetId": receipt["datasetId"],
                "notebookParameters": {"greeting": "events:"},
            },
        },
    )
    outputs = _outputs(tenant_api, job["jobId"])
    produced = tenant_api.get(outputs["output-summary.txt"]["downloadUrl"]).text
    assert produced == f"events: {receipt['events']}"
    html = tenant_api.get(outputs["executed.html"]["downloadUrl"]).text
    assert "events:" in html
    bundle = tenant_api.get(f"/execution/job/{job['jobId']}/results", params={"format": "download"})
    assert "executed.ipynb" in zipfile.ZipFile(io.BytesIO(bundle.content)).namelist()


def test_default_notebook_profiles_the_dataset(tenant_api: Api, receipt: dict[str, Any]) -> None:
    job = _run(
        tenant_api,
        {
            "jobName": "Profile",
            "jobType": "Notebook",
            "parameters": {"datasetId": receipt["datasetId"]},
        },
    )
    html = tenant_api.get(_outputs(tenant_api, job["jobId"])["executed.html"]["downloadUrl"]).text
    assert f"{receipt['events']:,} events" in html


def test_failing_cell_fails_the_job_naming_it(tenant_api: Api) -> None:
    notebook_id = _upload_notebook(tenant_api, _notebook("x = 1", "y = 1 / 0"))
    job = tenant_api.wait(
        tenant_api.submit(
            {"jobName": "Broken", "jobType": "Notebook", "parameters": {"notebookId": notebook_id}}
        )["jobId"]
    )
    assert job["status"] == "Failed"
    assert "cell 1" in job["error"] and "ZeroDivisionError" in job["error"]


def test_not_a_notebook_is_refused(tenant_api: Api) -> None:
    r = tenant_api.post("/notebooks", files={"file": ("x.ipynb", b"{not json")})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"


def test_one_event_log_fails_with_a_reason(tenant_api: Api, tmp_path: Any) -> None:
    path = tmp_path / "one.csv"
    path.write_text("case:concept:name,concept:name,time:timestamp\nc1,a,2024-01-01T00:00:00Z\n")
    with path.open("rb") as fh:
        ds = tenant_api.post("/datasets", files={"file": ("one.csv", fh)}).json()
    job = tenant_api.wait(
        tenant_api.submit(
            {
                "jobName": "One event",
                "jobType": "ProcessMining",
                "parameters": {"datasetId": ds["datasetId"]},
            }
        )["jobId"]
    )
    assert job["status"] == "Failed" and "fewer than 2 events" in job["error"]


def test_mixed_timestamps_are_repaired_at_upload_and_reported(
    tenant_api: Api, tmp_path: Any
) -> None:
    path = tmp_path / "messy.csv"
    path.write_text(
        "case,act,ts\n"
        "1,a,2024-01-01T10:00:00Z\n1,b,02.01.2024 11:00\n1,c,\n1,d,1704276000\n"
        "2,a,01/05/2024\n2,b,2024-01-06\n"
    )
    form = {"caseColumn": "case", "activityColumn": "act", "timestampColumn": "ts"}
    with path.open("rb") as fh:
        strict = tenant_api.post("/datasets", files={"file": ("messy.csv", fh)}, data=form)
    assert strict.status_code == 422, strict.text
    with path.open("rb") as fh:
        r = tenant_api.post(
            "/datasets",
            files={"file": ("messy.csv", fh)},
            data={**form, "timestampFormat": "mixed"},
        )
    assert r.status_code == 201, r.text
    warnings = {w["type"]: w["count"] for w in r.json()["warnings"]}
    assert warnings == {"timestampRepaired": 3, "timestampInferred": 1}
    job = _run(
        tenant_api,
        {
            "jobName": "Enrich messy",
            "jobType": "DataEnrichment",
            "parameters": {"datasetId": r.json()["datasetId"]},
        },
    )
    assert job["metrics"]["recordsProcessed"] == 6
