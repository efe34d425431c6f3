"""Notebook job: run a Jupyter notebook with parameters (papermill-style) on the project's
kernel. ``notebookId`` names an uploaded notebook (POST .../notebooks); without one the
built-in profiling notebook runs. The notebook gets ``dataset_path`` (the dataset's Parquet
file, when ``datasetId`` is set), ``output_dir`` and ``notebookParameters``. Outputs: the
executed notebook and its HTML export; files the notebook writes into ``output_dir`` are offered
too. A failing cell fails the job naming the cell and the error.

Trust model: the notebook runs as the node's user inside the job's process tree, like any job
code; the service itself never loads a notebook or its outputs.
"""

from __future__ import annotations

import mimetypes
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.states import State

from flows.steps import storage
from flows.steps.datasets import dataset_path
from flows.steps.job_run import JobInputError, JobRun, JobTimedOut, Output, run_job

STAGES = ["Waiting", "Preparing", "Running notebook", "Writing"]
DEFAULT_NOTEBOOK = Path(__file__).parent / "notebooks" / "profile.ipynb"


def _source(run: JobRun) -> Path:
    notebook_id = run.parameters.get("notebookId")
    if not notebook_id:
        return DEFAULT_NOTEBOOK
    path = (
        storage.notebook_dir(run.job["tenantId"], run.job["projectId"], notebook_id)
        / storage.NOTEBOOK_FILE
    )
    if not path.is_file():
        raise JobInputError(f"Notebook {notebook_id} no longer exists.")
    return path


def _work(run: JobRun) -> None:
    from flows.steps.notebook_runner import NotebookFailed, NotebookTimedOut, run_notebook

    p = run.parameters
    with run.stage("Waiting"):
        run.wait(float(p.get("delaySeconds") or 0))
    with run.stage("Preparing"):
        source = _source(run)
        workdir = Path(tempfile.mkdtemp(prefix="pmjobs-notebook-"))
        output_dir = workdir / "outputs"
        output_dir.mkdir()
        parameters: dict[str, Any] = {**(p.get("notebookParameters") or {})}
        parameters["output_dir"] = str(output_dir)
        if p.get("datasetId"):
            parameters["dataset_path"] = str(dataset_path(run, p["datasetId"]))
    with run.stage("Running notebook"):
        timeout = (run.job.get("scheduling") or {}).get("timeoutMinutes")

        def on_cell(done: int, total: int) -> None:
            run.progress(records=done, total=total, within_stage=done / total if total else 0)
            run.checkpoint()

        try:
            result = run_notebook(
                source, parameters, workdir, float(timeout) * 60 if timeout else None, on_cell
            )
        except NotebookFailed as exc:
            # The notebook's own deadline and the job's are the same timeoutMinutes: whichever
            # fires first (or a kernel killed by the job's timeout), the job timed out.
            if isinstance(exc, NotebookTimedOut) or run.timed_out:
                raise JobTimedOut() from exc
            raise JobInputError(f"Notebook {str(exc)}") from exc
        except ValueError as exc:
            raise JobInputError(f"Notebook cannot run: {exc}") from exc
    with run.stage("Writing"):
        run.write_output(
            Output(
                "executed.html",
                "NotebookReport",
                "Executed notebook (HTML)",
                "html",
                "reports",
                "text/html",
                primary=True,
            ),
            result.html,
        )
        run.write_output(
            Output(
                "executed.ipynb",
                "NotebookOutput",
                "Executed notebook",
                "ipynb",
                "data",
                "application/x-ipynb+json",
            ),
            result.notebook,
        )
        for produced in sorted(output_dir.iterdir()):
            if produced.is_file() and not produced.name.startswith("."):
                media = mimetypes.guess_type(produced.name)[0] or "application/octet-stream"
                run.write_output(
                    Output(
                        f"output-{produced.name}",
                        "NotebookArtifact",
                        produced.name,
                        produced.suffix.lstrip(".") or "bin",
                        "data",
                        media,
                    ),
                    produced.read_bytes(),
                )
        run.summary = {
            "recordsProcessed": result.cells_executed,
            "dataQualityScore": None,
            "processingEfficiency": None,
        }
        run.details = {
            "cellsExecuted": result.cells_executed,
            "cellsTotal": result.cells_total,
            "notebookSeconds": result.duration_seconds,
        }


@flow(name="Notebook", persist_result=False, log_prints=True)
def notebook(parameters: dict[str, Any], job: dict[str, Any]) -> State:
    """Run a Jupyter notebook with parameters."""
    return run_job(parameters, job, STAGES, _work)
