"""Notebook job. In this release it runs the built-in profiling step (event counts per activity
and per resource) on the dataset; running user notebooks arrives with the job-types issue."""

from __future__ import annotations

import json
from typing import Any

from prefect import flow
from prefect.states import State

from flows.steps.datasets import load_dataset
from flows.steps.eventlog import XES_ACTIVITY, XES_RESOURCE
from flows.steps.job_run import JobRun, Output, run_job

STAGES = ["Waiting", "Loading", "Profiling", "Writing"]


def _work(run: JobRun) -> None:
    with run.stage("Waiting"):
        run.wait(float(run.parameters.get("delaySeconds") or 0))
    profile: dict[str, Any] = {}
    if run.parameters.get("datasetId"):
        with run.stage("Loading"):
            df = load_dataset(run)
        with run.stage("Profiling"):
            profile["activities"] = {
                str(k): int(v) for k, v in df[XES_ACTIVITY].value_counts().items()
            }
            if XES_RESOURCE in df:
                profile["resources"] = {
                    str(k): int(v) for k, v in df[XES_RESOURCE].value_counts().items()
                }
            profile["events"] = len(df)
    with run.stage("Writing"):
        run.write_output(
            Output(
                "profile.json",
                "NotebookOutput",
                "Dataset profile",
                "json",
                "data",
                "application/json",
                primary=True,
            ),
            json.dumps(profile).encode(),
        )
        run.summary = {
            "recordsProcessed": profile.get("events", 0),
            "dataQualityScore": None,
            "processingEfficiency": None,
        }


@flow(name="Notebook", persist_result=False, log_prints=True)
def notebook(parameters: dict[str, Any], job: dict[str, Any]) -> State:
    """Run the profiling notebook on a dataset."""
    return run_job(parameters, job, STAGES, _work)
