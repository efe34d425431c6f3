"""What every job flow shares: stages with progress, cooperative cancel, timeout, outputs.

A flow wraps its work in ``run_job``; each stage is entered with ``run.stage(...)``. Between
stages the run checks whether the user asked it to stop (a ``cancel:requested`` tag set by the
API) and whether its ``timeoutMinutes`` passed. A background thread samples resource use every
second and publishes the progress report (one Prefect progress artifact per run), checks for a
stop request, and escalates when the main thread does not reach a stage boundary in time.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil
from prefect import get_client, runtime
from prefect.client.schemas.actions import ArtifactCreate, ArtifactUpdate
from prefect.states import Cancelled, Completed, Failed, State

from executors.metrics import ProcessSampler
from flows.steps import storage
from flows.steps.progress_report import ProgressReport

log = logging.getLogger("pmjobs.flow")

SAMPLE_SECONDS = 1.0


class JobStopped(BaseException):
    """Raised at a stage boundary when the user asked to stop (BaseException: not swallowed)."""


class JobTimedOut(BaseException):
    """Raised in the job's thread when ``timeoutMinutes`` has passed."""


class JobInputError(Exception):
    """The job's input is unusable; the job ends Failed with this message."""


class JobStorageError(Exception):
    """An output could not be written (disk full, store unwritable); the job ends Failed."""


def _timeout_message(job: dict[str, Any]) -> str:
    minutes = (job.get("scheduling") or {}).get("timeoutMinutes")
    return f"Timed out after {minutes} minute(s) (timeoutMinutes)."


@dataclass
class Output:
    name: str
    type: str
    title: str
    format: str
    category: str  # reports | data | models | visualizations
    media_type: str
    primary: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class JobRun:
    def __init__(self, parameters: dict[str, Any], job: dict[str, Any], stages: list[str]) -> None:
        self.parameters = parameters
        self.job = job
        self.stages = stages
        self.flow_run_id = uuid.UUID(str(runtime.flow_run.id))
        self.job_name = str(runtime.flow_run.name or "Job")
        self.out_dir = storage.job_dir(self.flow_run_id)
        self.report = ProgressReport(
            stage="Starting",
            node=os.environ.get("PMJOBS_NODE_NAME"),
            pid=os.getpid(),
            total_records=(job.get("dataset") or {}).get("events"),
            started_at=time.time(),
        )
        self.outputs: list[Output] = []
        self.warnings: dict[tuple[str, str], int] = {}
        self.errors: list[dict[str, Any]] = []
        self.stage_seconds: dict[str, float] = {}
        self.summary: dict[str, Any] = {}
        self.quality: dict[str, Any] | None = None
        self.details: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.preserve_partial = False
        self._stop = threading.Event()
        self._stop_seen_at: float | None = None
        self._timed_out = threading.Event()
        self._done = threading.Event()
        self.in_body = False
        self._lock = threading.Lock()
        self._dirty = True
        self._artifact_id: uuid.UUID | None = None
        self._sampler = ProcessSampler()
        self._main_ident = threading.get_ident()
        timeout = (job.get("scheduling") or {}).get("timeoutMinutes")
        self.deadline = time.monotonic() + float(timeout) * 60 if timeout else None
        self.grace = float(os.environ.get("PMJOBS_CANCEL_GRACE_SECONDS", "30"))
        self._client = get_client(sync_client=True)
        self._thread = threading.Thread(target=self._watch, name="pmjobs-progress", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> JobRun:
        self._client.__enter__()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        artifact = self._client.create_artifact(
            ArtifactCreate(
                type="progress",
                data=0.0,
                flow_run_id=self.flow_run_id,
                description=self._description(),
                metadata_=self.report.to_metadata(),
            )
        )
        self._artifact_id = artifact.id
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self._sample()
        try:
            self._publish(force=True)
        finally:
            self._client.__exit__(None, None, None)

    # -- progress ----------------------------------------------------------------------------
    def _description(self) -> str:
        r = self.report
        records = ""
        if r.records_processed is not None:
            total = f"/{r.total_records:,}" if r.total_records else ""
            records = f" — {r.records_processed:,}{total} records"
        return f"**{r.stage}** — {r.percentage:.0f}%{records}"

    def _publish(self, force: bool = False) -> None:
        with self._lock:
            if not (self._dirty or force) or self._artifact_id is None:
                return
            update = ArtifactUpdate(
                data=round(self.report.percentage, 1),
                description=self._description(),
                metadata_=self.report.to_metadata(),
            )
            self._dirty = False
        try:
            self._client.update_artifact(self._artifact_id, update)
        except Exception as exc:  # noqa: BLE001 - progress must never kill the job
            log.warning("progress update failed: %s", exc)

    def progress(
        self,
        *,
        records: int | None = None,
        total: int | None = None,
        within_stage: float | None = None,
    ) -> None:
        """Report records processed (and optionally the fraction done of the current stage)."""
        with self._lock:
            if records is not None:
                self.report.records_processed = records
            if total is not None:
                self.report.total_records = total
            if within_stage is not None and self.report.stage in self.stages:
                i = self.stages.index(self.report.stage)
                share = 100.0 / len(self.stages)
                self.report.percentage = min(99.0, share * (i + max(0.0, min(1.0, within_stage))))
            self._dirty = True
        self._publish()

    def warn(self, kind: str, message: str, count: int = 1) -> None:
        with self._lock:
            self.warnings[(kind, message)] = self.warnings.get((kind, message), 0) + count
            self.report.warning_count = sum(self.warnings.values())
            self._dirty = True

    def error(self, kind: str, message: str) -> None:
        with self._lock:
            self.errors.append({"type": kind, "message": message})
            self.report.error_count = len(self.errors)
            self._dirty = True

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.checkpoint()
        with self._lock:
            self.report.stage = name
            if name in self.stages:
                self.report.percentage = 100.0 * self.stages.index(name) / len(self.stages)
            self._dirty = True
        self._publish()
        started = time.monotonic()
        yield
        self.stage_seconds[name] = round(time.monotonic() - started, 3)
        self.checkpoint()

    @property
    def timed_out(self) -> bool:
        """``timeoutMinutes`` has passed (the job is being or has been interrupted)."""
        return self._timed_out.is_set()

    def checkpoint(self) -> None:
        """A stage boundary: stop here if the user asked to, or if time is up."""
        if self._timed_out.is_set():
            raise JobTimedOut()
        if self._stop.is_set():
            raise JobStopped()

    def wait(self, seconds: float) -> None:
        """Sleep in small steps so a stop request is honoured promptly."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.checkpoint()
            self.progress(within_stage=1 - left / seconds)
            time.sleep(min(0.2, left))
        self.checkpoint()

    # -- the watcher thread --------------------------------------------------------------------
    def _sample(self) -> None:
        sample = self._sampler.sample()
        with self._lock:
            self.report.rss_bytes = sample.rss_bytes
            self.report.peak_rss_bytes = self._sampler.peak_rss
            self.report.cpu_ratio = sample.cpu_ratio
            self.report.disk_written_bytes = sample.disk_written_bytes
            self._dirty = True

    def _watch(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self._sample()
            self._check_stop_request()
            self._check_deadline()
            self._publish()

    def _check_stop_request(self) -> None:
        try:
            run = self._client.read_flow_run(self.flow_run_id)
        except Exception:  # noqa: BLE001 - the server may be restarting; try next tick
            return
        tags = set(run.tags or [])
        if "cancel:requested" in tags and not self._stop.is_set():
            self.stop_reason = next(
                (t.split(":", 1)[1] for t in tags if t.startswith("cancel-reason:")),
                "Cancelled by user",
            )
            self.preserve_partial = "cancel-preserve:true" in tags
            self.report.cancel_requested = True
            self._stop_seen_at = time.monotonic()
            self._stop.set()
        with self._lock:
            in_body = self.in_body
        if self._stop_seen_at and in_body and time.monotonic() - self._stop_seen_at > self.grace:
            # The job did not reach a stage boundary in time: stop it from here. (Handing it
            # to the worker as Cancelling let the killed flow report Failed after Cancelled.)
            self._stop_seen_at = None
            self._hard_stop(Cancelled(message=self.stop_reason or "Cancelled by user"))

    def _check_deadline(self) -> None:
        if self.deadline is None or time.monotonic() < self.deadline:
            return
        if self._timed_out.is_set():
            with self._lock:
                stuck = self.in_body and time.monotonic() > self.deadline + self.grace
            if stuck:
                self._hard_stop(Failed(name="TimedOut", message=_timeout_message(self.job)))
            return
        self._timed_out.set()
        with self._lock:
            if self.in_body:
                # Interrupt the job's thread now, not at the next boundary: a timeout is a
                # hard limit. Only while the job's own code runs, never inside the wrap-up.
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(self._main_ident), ctypes.py_object(JobTimedOut)
                )

    def _hard_stop(self, final: State) -> None:
        """The job's thread ignored a stop request or its timeout for a grace period (stuck in
        C code, say): end the run from here — ``final`` state, outputs discarded, the processes
        it started and then this process killed — so the node's slot is freed and nothing
        reports a second final state."""
        log.error("job ignored %s for %.0f s; killing it", final.name, self.grace)
        self.discard_outputs()
        try:
            current = self._client.read_flow_run(self.flow_run_id).state
            if current is None or not current.is_final():
                self._client.set_flow_run_state(self.flow_run_id, final, force=True)
        except Exception as exc:  # noqa: BLE001 - the reaper marks it crashed if this fails
            log.error("could not report the stop: %s", exc)
        try:
            children = psutil.Process().children(recursive=True)
        except psutil.Error:
            children = []
        for child in children:
            with contextlib.suppress(psutil.Error):
                child.kill()
        os._exit(1)

    # -- outputs -------------------------------------------------------------------------------
    def _write(self, name: str, write: Callable[[], None]) -> None:
        try:
            write()
        except OSError as exc:
            raise JobStorageError(
                f"Could not write the job's output {name}: {exc.strerror or exc}"
            ) from exc

    def write_output(self, output: Output, data: bytes) -> None:
        self._write(
            output.name, lambda: storage.write_bytes_atomic(self.out_dir / output.name, data)
        )
        self.outputs = [o for o in self.outputs if o.name != output.name] + [output]

    def write_manifest(self, partial: bool = False) -> None:
        outputs = []
        for o in self.outputs:
            path = self.out_dir / o.name
            if not path.is_file():
                continue
            outputs.append(
                {
                    "name": o.name,
                    "type": o.type,
                    "title": o.title,
                    "format": o.format,
                    "category": o.category,
                    "mediaType": o.media_type,
                    "primary": o.primary,
                    "sizeBytes": path.stat().st_size,
                    **o.extra,
                }
            )
        sample = self._sampler.sample()
        manifest = {
            "jobId": str(self.flow_run_id),
            "partial": partial,
            "writtenAt": datetime.now(UTC).isoformat(),
            "summary": {
                "recordsProcessed": self.report.records_processed,
                "outputsGenerated": len(outputs),
                "dataQualityScore": None,
                "processingEfficiency": None,
                **self.summary,
            },
            "outputs": outputs,
            "executionMetrics": {
                "totalCpuSeconds": sample.cpu_seconds,
                "peakMemoryBytes": self._sampler.peak_rss,
                "diskIoOperations": sample.io_operations,
                "networkBytes": 0,
                "stageSeconds": self.stage_seconds,
            },
            "qualityMetrics": {
                "dataValidation": self.quality,
                "processingErrors": self.errors,
                "warnings": [
                    {"type": k, "message": m, "count": c} for (k, m), c in self.warnings.items()
                ],
            },
            "details": self.details,
        }
        self._write(
            storage.MANIFEST,
            lambda: storage.write_json_atomic(self.out_dir / storage.MANIFEST, manifest),
        )
        self._publish_outputs(outputs, partial)

    def _publish_outputs(self, outputs: list[dict[str, Any]], partial: bool) -> None:
        """List the outputs as a markdown artifact, so the Prefect UI shows what the run made
        and where the API serves it (downloads need a token, hence paths, not links)."""
        base = (
            f"/api/{self.job.get('tenantId')}/{self.job.get('projectId')}"
            f"/execution/job/{self.flow_run_id}/artifacts"
        )
        rows = [
            f"| {o['type']} | {o['title']} | {o['format']} | {o['sizeBytes']:,} B | "
            f"`{base}/{o['name']}` |"
            for o in outputs
        ]
        title = "Partial results (cancelled)" if partial else "Results"
        markdown = "\n".join(
            [
                f"### {title}",
                "",
                "| type | title | format | size | download (API, with a token) |",
                "|---|---|---|---|---|",
                *rows,
            ]
        )
        try:
            self._client.create_artifact(
                ArtifactCreate(
                    type="markdown",
                    key=f"results-{self.flow_run_id}",
                    data=markdown,
                    flow_run_id=self.flow_run_id,
                    description=f"{len(outputs)} outputs",
                )
            )
        except Exception as exc:  # noqa: BLE001 - the UI listing must never fail the job
            log.warning("could not publish the results artifact: %s", exc)

    def discard_outputs(self) -> None:
        shutil.rmtree(self.out_dir, ignore_errors=True)


def run_job(
    parameters: dict[str, Any],
    job: dict[str, Any],
    stages: list[str],
    body: Callable[[JobRun], None],
) -> State:
    """Run ``body`` with progress, cancel and timeout handling; return the run's final state."""
    with JobRun(parameters, job, stages) as run:
        try:
            run.in_body = True
            try:
                body(run)
            finally:
                with run._lock:
                    run.in_body = False
            with run._lock:
                run.report.stage, run.report.percentage = "Completed", 100.0
                run._dirty = True
            run.write_manifest()
            return Completed(message=f"{len(run.outputs)} outputs written")
        except JobStopped:
            if run.preserve_partial and run.outputs:
                run.write_manifest(partial=True)
            else:
                run.discard_outputs()
            run.report.stage = "Cancelled"
            return Cancelled(message=run.stop_reason or "Cancelled by user")
        except JobTimedOut:
            run.discard_outputs()
            run.report.stage = "TimedOut"
            return Failed(name="TimedOut", message=_timeout_message(job))
        except JobStorageError as exc:
            run.discard_outputs()
            run.error("StorageError", str(exc))
            run.report.stage = "Failed"
            return Failed(message=str(exc))
        except JobInputError as exc:
            run.discard_outputs()
            run.error("InputError", str(exc))
            run.report.stage = "Failed"
            return Failed(message=str(exc))
