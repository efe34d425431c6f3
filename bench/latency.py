"""Latency of the job lifecycle and of the API against the raw Prefect calls it wraps.

1. Dispatch and cancel, one job at a time (``--jobs`` each, default 20): an ``Analysis`` job
   that only waits is submitted to an idle node; submit → Running is the time between its
   Scheduled and Running states in Prefect's state history. Once it runs it is cancelled
   through the API, gracefully (stops at the next stage boundary) and forced (the node kills
   the process); cancel → Cancelled runs from the DELETE request (this machine's clock) to the
   Cancelled state. The next job is submitted once the cancelled job's process has exited
   (its ``infrastructure_pid`` is gone) and ``SETTLE_SECONDS`` later: a node of capacity 1
   cannot start a job while the previous one's process still holds its slot, and that wait
   is not pick-up latency.
2. ``--history`` jobs (default 20,000) are created directly as finished flow runs of the
   tenant (Prefect client, same tags and parameters the API gives a job), so listing and
   counting work on a realistic history.
3. Under ``--clients`` concurrent clients (default 32): GET job, GET a list page and POST a
   job through the API, against the Prefect client calls they wrap — read_flow_run;
   read_flow_runs with the same filter + count_flow_runs; create_flow_run_from_deployment.
   Submitted jobs are scheduled 30 days ahead, so nothing runs. Prints p50/p95, API/raw and
   submit throughput (jobs/s vs runs/s); run with ``--database-url`` for PostgreSQL.

    python -m bench.latency                     # SQLite
    python -m bench.latency --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench import common

WAIT_JOB = {"jobName": "latency", "jobType": "Analysis", "priority": "High"}
HISTORY_STATES = (("COMPLETED", 0.7), ("FAILED", 0.15), ("CANCELLED", 0.15))
PAGE_SIZE = 20
SETTLE_SECONDS = 0.3  # after the process exits: the worker frees the slot


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    @property
    def p50(self) -> float:
        return common.percentile(self.latencies, 50)

    @property
    def p95(self) -> float:
        return common.percentile(self.latencies, 95)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else float("nan")


# --------------------------------------------------------------------------------------------
# 1. dispatch and cancel


def _wait_status(client: Any, job_id: str, wanted: set[str], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.job(job_id)
        if job["status"] in wanted:
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
        time.sleep(0.05)


def dispatch_and_cancel(
    stack: common.Stack, tenant: common.Tenant, jobs: int, modes: list[str]
) -> dict[str, Any]:
    client = tenant.client(timeout=60)
    cancels: list[tuple[str, str, datetime]] = []
    for mode in modes:
        for i in range(jobs):
            body = {
                **WAIT_JOB,
                "jobName": f"latency {mode} {i}",
                "parameters": {"delaySeconds": 300},
            }
            job_id = client.submit(body)["jobId"]
            job = _wait_status(client, job_id, {"Running", "Completed", "Failed"}, 300)
            if job["status"] != "Running":
                raise RuntimeError(f"job {job_id} ended {job['status']} before it was cancelled")
            asked = datetime.now(UTC)
            client.cancel(job_id, reason="latency benchmark", forceTermination=mode == "forced")
            job = _wait_status(client, job_id, {"Cancelled", "Completed", "Failed"}, 120)
            if job["status"] != "Cancelled":
                raise RuntimeError(f"job {job_id} ended {job['status']}, not Cancelled")
            cancels.append((mode, job_id, asked))
            _wait_process_exit(stack, job_id)
            print(f"  {mode} cancel {i + 1}/{jobs}", file=sys.stderr, flush=True)
    histories = asyncio.run(
        common.state_history_async(stack.prefect_url, [job_id for _, job_id, _ in cancels])
    )
    submit_to_running: list[float] = []
    cancel_to_cancelled: dict[str, list[float]] = {m: [] for m in modes}
    for mode, job_id, asked in cancels:
        history = histories[job_id]
        seconds = common.seconds_between(history, "SCHEDULED", "RUNNING")
        if seconds is not None:
            submit_to_running.append(seconds)
        done = common.first_time(history, "CANCELLED")
        if done is not None:
            cancel_to_cancelled[mode].append((done - asked).total_seconds())
    return {
        "template": cancels[0][1] if cancels else None,
        "submitToRunning": submit_to_running,
        "cancelToCancelled": cancel_to_cancelled,
    }


def _wait_process_exit(stack: common.Stack, job_id: str, timeout: float = 30) -> None:
    """Until the run's process (``infrastructure_pid`` "host:pid", on this machine) is gone."""
    import psutil

    run = asyncio.run(common.read_flow_run(stack.prefect_url, job_id))
    pid = (run.infrastructure_pid or "").rpartition(":")[2]
    deadline = time.monotonic() + timeout
    while pid.isdigit() and psutil.pid_exists(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(SETTLE_SECONDS)


# --------------------------------------------------------------------------------------------
# 2. history


async def _template(prefect_url: str, tenant: common.Tenant) -> tuple[Any, uuid.UUID]:
    """Parameters and tags of a real API job (one is submitted for later if none exists)."""
    from prefect.client.orchestration import PrefectClient

    async with httpx.AsyncClient(headers=tenant.headers, timeout=60) as http:
        r = await http.post(f"{tenant.base}/execution/job", json=_future_job("template"))
        r.raise_for_status()
        job_id = uuid.UUID(r.json()["jobId"])
    async with PrefectClient(prefect_url) as client:
        run = await client.read_flow_run(job_id)
    return run, run.deployment_id


def _future_job(name: str) -> dict[str, Any]:
    """A job that stays Queued: scheduled 30 days ahead (submit cost without execution)."""
    return {
        **WAIT_JOB,
        "jobName": name,
        "priority": "Low",
        "parameters": {"delaySeconds": 0},
        "scheduling": {
            "executeImmediately": False,
            "scheduledTime": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        },
    }


async def create_history(prefect_url: str, template: Any, count: int) -> list[uuid.UUID]:
    """Finished runs of the tenant, created in their final state with ``POST /flow_runs/``
    (about twice the rate of create_flow_run_from_deployment, which validates parameters
    against the deployment's schema first); Prefect sets their expected start to now."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import FlowRunCreate
    from prefect.states import Cancelled, Completed, Failed, to_state_create

    makers = {"COMPLETED": Completed, "FAILED": Failed, "CANCELLED": Cancelled}
    rng = random.Random(7)
    kinds = rng.choices(
        [k for k, _ in HISTORY_STATES], weights=[w for _, w in HISTORY_STATES], k=count
    )
    tags = [t for t in template.tags if not t.startswith("cancel")]
    ids: list[uuid.UUID] = []
    t0 = time.perf_counter()
    async with PrefectClient(prefect_url, httpx_settings={"timeout": 120}) as client:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            body = FlowRunCreate(
                flow_id=template.flow_id,
                deployment_id=template.deployment_id,
                name=f"history {i}",
                parameters=template.parameters,
                tags=tags,
                state=to_state_create(makers[kinds[i]](message="benchmark history")),
                work_pool_name=template.work_pool_name,
                work_queue_name="normal",
            )
            async with sem:
                r = await client._client.post("/flow_runs/", json=body.model_dump(mode="json"))
            r.raise_for_status()
            ids.append(uuid.UUID(r.json()["id"]))

        step = 500
        for start in range(0, count, step):
            await asyncio.gather(*(one(i) for i in range(start, min(count, start + step))))
            done = min(count, start + step)
            rate = done / (time.perf_counter() - t0)
            print(f"  history {done:,}/{count:,} ({rate:,.0f} runs/s)", file=sys.stderr)
    return ids


# --------------------------------------------------------------------------------------------
# 3. API vs raw Prefect under concurrency


async def _drive(
    requests: int, clients: int, call: Callable[[int], Awaitable[str | None]]
) -> Sample:
    """``clients`` workers share ``requests`` calls; a call returns an error label or None."""
    sample = Sample()
    counter = iter(range(requests))

    async def worker() -> None:
        for i in counter:
            t0 = time.perf_counter()
            try:
                problem = await call(i)
            except Exception as exc:  # noqa: BLE001 - a benchmark counts failures, goes on
                problem = type(exc).__name__
            if problem:
                sample.error(problem)
            else:
                sample.latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    sample.wall = time.perf_counter() - t0
    return sample


async def api_vs_raw(
    prefect_url: str,
    tenant: common.Tenant,
    template: Any,
    job_ids: list[uuid.UUID],
    total: int,
    requests: int,
    clients: int,
) -> dict[str, dict[str, Sample]]:
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Scheduled

    rng = random.Random(11)
    pages = max(1, min(50, total // PAGE_SIZE))
    tags = [t for t in template.tags if not t.startswith("cancel")]
    tenant_filter = FlowRunFilter(
        tags=FlowRunFilterTags(all_=[t for t in tags if t.split(":")[0] != "user"])
    )
    limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
    results: dict[str, dict[str, Sample]] = {}
    async with (
        httpx.AsyncClient(headers=tenant.headers, timeout=120, limits=limits) as http,
        PrefectClient(prefect_url, httpx_settings={"timeout": httpx.Timeout(120.0)}) as raw,
    ):

        async def api_get(i: int) -> str | None:
            r = await http.get(f"{tenant.base}/execution/job/{rng.choice(job_ids)}")
            return None if r.status_code == 200 else f"HTTP {r.status_code}"

        async def raw_get(i: int) -> str | None:
            await raw.read_flow_run(rng.choice(job_ids))
            return None

        async def api_list(i: int) -> str | None:
            page = rng.randint(1, pages)
            r = await http.get(
                f"{tenant.base}/execution/jobs", params={"page": page, "pageSize": PAGE_SIZE}
            )
            return None if r.status_code == 200 else f"HTTP {r.status_code}"

        async def raw_list(i: int) -> str | None:
            page = rng.randint(1, pages)
            await asyncio.gather(
                raw.read_flow_runs(
                    flow_run_filter=tenant_filter,
                    sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                    limit=PAGE_SIZE + 1,
                    offset=(page - 1) * PAGE_SIZE,
                ),
                raw.count_flow_runs(flow_run_filter=tenant_filter),
            )
            return None

        async def api_submit(i: int) -> str | None:
            r = await http.post(f"{tenant.base}/execution/job", json=_future_job(f"submit {i}"))
            return None if r.status_code == 201 else f"HTTP {r.status_code}"

        async def raw_submit(i: int) -> str | None:
            await raw.create_flow_run_from_deployment(
                template.deployment_id,
                parameters=template.parameters,
                name=f"raw submit {i}",
                tags=tags,
                state=Scheduled(scheduled_time=datetime.now(UTC) + timedelta(days=30)),
                work_queue_name="low",
            )
            return None

        for op, api_call, raw_call in (
            ("GET job", api_get, raw_get),
            ("GET list page", api_list, raw_list),
            ("POST job (submit)", api_submit, raw_submit),
        ):
            warm = min(clients, requests)
            await _drive(warm, clients, api_call)
            await _drive(warm, clients, raw_call)
            # alternate API and raw halves so load drift hits both
            halves = {"api": Sample(), "raw": Sample()}
            for _ in range(2):
                for side, call in (("api", api_call), ("raw", raw_call)):
                    s = await _drive(requests // 2, clients, call)
                    h = halves[side]
                    h.latencies += s.latencies
                    h.wall += s.wall
                    for k, v in s.errors.items():
                        h.errors[k] = h.errors.get(k, 0) + v
            results[op] = halves
            a, r = halves["api"], halves["raw"]
            print(
                f"  {op}: API p50 {common.ms(a.p50)} ms, raw p50 {common.ms(r.p50)} ms",
                file=sys.stderr,
                flush=True,
            )
    return results


# --------------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> str:
    return "n/a" if not b or a != a or b != b else f"{a / b:.2f}"


def report(
    stack: common.Stack, args: argparse.Namespace, lifecycle: dict[str, Any], concurrent: dict
) -> str:
    lines = [f"Database: {stack.database_kind}; {common.machine_line()}", ""]
    if lifecycle:
        lines += [
            "| lifecycle | n | p50 s | p95 s | max s |",
            "|---|---:|---:|---:|---:|",
        ]
        rows = [("submit → Running", lifecycle["submitToRunning"])]
        rows += [
            (f"cancel → Cancelled ({mode})", values)
            for mode, values in lifecycle["cancelToCancelled"].items()
        ]
        for label, values in rows:
            lines.append(
                f"| {label} | {len(values)} | {common.percentile(values, 50):.2f} | "
                f"{common.percentile(values, 95):.2f} | {max(values, default=float('nan')):.2f} |"
            )
        lines.append("")
    if concurrent:
        lines += [
            f"{args.clients} concurrent clients, {args.history:,} jobs of history:",
            "",
            "| operation | API p50 ms | API p95 ms | raw Prefect p50 ms | raw p95 ms | "
            "API/raw p50 | API/raw p95 | API req/s | raw req/s | errors (API / raw) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for op, sides in concurrent.items():
            a, r = sides["api"], sides["raw"]
            lines.append(
                f"| {op} | {common.ms(a.p50)} | {common.ms(a.p95)} | {common.ms(r.p50)} | "
                f"{common.ms(r.p95)} | {_ratio(a.p50, r.p50)} | {_ratio(a.p95, r.p95)} | "
                f"{a.rate:,.1f} | {r.rate:,.1f} | {a.errors or 0} / {r.errors or 0} |"
            )
        submit = concurrent.get("POST job (submit)")
        if submit:
            lines += [
                "",
                f"Submit throughput on {stack.database_kind}: {submit['api'].rate:,.1f} jobs/s "
                f"through the API vs {submit['raw'].rate:,.1f} runs/s with the raw Prefect "
                f"client ({args.clients} concurrent clients).",
            ]
        lines += [
            "",
            "Raw calls: GET job = read_flow_run; list page = read_flow_runs (same tag filter, "
            "page + 1) and count_flow_runs, concurrently; submit = "
            "create_flow_run_from_deployment. The API's list also counts each status (5 more "
            "counts) and reads the progress artifacts of the page's unfinished jobs; its GET "
            "job reads the progress artifact unless the job is finished and its report known, "
            "and, while queued, the queue position; its submit validates, resolves the "
            "pipeline and answers with an estimate and queue position.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Lifecycle latency (submit → Running, cancel → Cancelled) and API vs raw "
        "Prefect latency under concurrent clients with a large job history.",
    )
    parser.add_argument("--jobs", type=int, default=20, help="jobs per cancel mode (20)")
    parser.add_argument(
        "--cancel-modes",
        default="graceful,forced",
        help="comma-separated: graceful, forced (default both)",
    )
    parser.add_argument("--history", type=int, default=20_000, help="history jobs (20000)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument(
        "--requests", type=int, default=1280, help="requests per operation and side (1280)"
    )
    parser.add_argument("--skip-lifecycle", action="store_true", help="skip part 1")
    parser.add_argument("--skip-concurrency", action="store_true", help="skip parts 2 and 3")
    parser.add_argument(
        "--json",
        type=str,
        help="write the raw numbers here (default bench/out/latency-<time>.json, which "
        "bench.scorecard reads)",
    )
    common.add_stack_arguments(parser, nodes=1, capacity=2)
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.cancel_modes.split(",") if m.strip()]
    if set(modes) - {"graceful", "forced"}:
        parser.error("--cancel-modes takes graceful and/or forced")

    with common.running_stack(args) as stack:
        database = stack.database_kind
        tenant = stack.new_tenant("latency")
        lifecycle: dict[str, Any] = {}
        concurrent: dict[str, dict[str, Sample]] = {}
        if not args.skip_lifecycle and args.jobs > 0:
            print("# part 1: dispatch and cancel", file=sys.stderr, flush=True)
            lifecycle = dispatch_and_cancel(stack, tenant, args.jobs, modes)
        if not args.skip_concurrency:
            print("# part 2: history", file=sys.stderr, flush=True)
            template, _ = asyncio.run(_template(stack.prefect_url, tenant))
            t0 = time.perf_counter()
            ids = asyncio.run(create_history(stack.prefect_url, template, args.history))
            print(
                f"  {len(ids):,} history runs in {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
            )
            print("# part 3: API vs raw Prefect", file=sys.stderr, flush=True)
            concurrent = asyncio.run(
                api_vs_raw(
                    stack.prefect_url,
                    tenant,
                    template,
                    ids or [template.id],
                    len(ids),
                    args.requests,
                    args.clients,
                )
            )
        text = report(stack, args, lifecycle, concurrent)
    print(text)
    raw = args.json or common.OUT / f"latency-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    Path(raw).parent.mkdir(parents=True, exist_ok=True)
    with open(raw, "w") as fh:
        json.dump(
            {
                "machine": common.machine_info(),
                "database": database,
                "history": args.history,
                "clients": args.clients,
                "lifecycle": lifecycle,
                "concurrent": {
                    op: {side: vars(s) for side, s in sides.items()}
                    for op, sides in concurrent.items()
                },
            },
            fh,
            default=str,
        )
    print(f"\n(raw measurements: {raw})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
