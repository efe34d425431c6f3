"""A small Python client for the pmjobs API (used by the CLI, usable by anyone)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

TERMINAL = {"Completed", "Failed", "Cancelled"}


class PmJobsError(Exception):
    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem}")
        self.status = status
        self.problem = problem


class PmJobsClient:
    def __init__(
        self, url: str, tenant: str, project: str, token: str, timeout: float = 60
    ) -> None:
        self.base = f"{url.rstrip('/')}/api/{tenant}/{project}"
        self.system = f"{url.rstrip('/')}/api/{tenant}/execution/system/status"
        self.http = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=timeout)

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text}
            raise PmJobsError(response.status_code, problem)
        return response.json()

    def upload(self, path: Path, **mapping: str) -> dict[str, Any]:
        with path.open("rb") as fh:
            return self._json(
                self.http.post(
                    f"{self.base}/datasets", files={"file": (path.name, fh)}, data=mapping
                )
            )

    def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self._json(self.http.post(f"{self.base}/execution/job", json=body, headers=headers))

    def job(self, job_id: str) -> dict[str, Any]:
        return self._json(self.http.get(f"{self.base}/execution/job/{job_id}"))

    def jobs(self, **filters: Any) -> dict[str, Any]:
        return self._json(self.http.get(f"{self.base}/execution/jobs", params=filters))

    def cancel(self, job_id: str, **body: Any) -> dict[str, Any]:
        return self._json(
            self.http.request("DELETE", f"{self.base}/execution/job/{job_id}", json=body)
        )

    def retry(self, job_id: str, **body: Any) -> dict[str, Any]:
        return self._json(self.http.post(f"{self.base}/execution/job/{job_id}/retry", json=body))

    def results(self, job_id: str, **params: Any) -> dict[str, Any]:
        return self._json(
            self.http.get(f"{self.base}/execution/job/{job_id}/results", params=params)
        )

    def download(self, url: str) -> bytes:
        response = self.http.get(url)
        if response.status_code >= 400:
            self._json(response)
        return response.content

    def system_status(self) -> dict[str, Any]:
        return self._json(self.http.get(self.system))

    def wait(self, job_id: str, timeout: float = 600, poll: float = 0.5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in TERMINAL:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll)


def watch_with_progress(client: PmJobsClient, job_id: str, poll: float = 0.5) -> dict[str, Any]:
    """Follow a job with a rich progress bar: stage, percentage and records processed."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[records]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns) as bar:
        task = bar.add_task("Queued", total=100, records="")
        while True:
            job = client.job(job_id)
            metrics = job["metrics"]
            records = ""
            if metrics.get("recordsProcessed") is not None:
                records = (
                    f"{metrics['recordsProcessed']:,}/{metrics.get('totalRecords') or '?'} records"
                )
            bar.update(
                task,
                completed=job["progress"]["percentage"],
                description=f"{job['status']}: {job['progress']['currentStage']}",
                records=records,
            )
            if job["status"] in TERMINAL:
                return job
            time.sleep(poll)
