"""Load test: many clients polling the API for minutes while jobs are submitted and complete.

``--clients`` (32) asynchronous httpx clients loop over GET job status (a recent job), GET the
job list (a page, sometimes filtered by status) and, now and then, GET the queue, each with
``--think`` seconds between requests. Meanwhile one submitter posts a job every
``--submit-every`` seconds (mostly short ``Analysis`` jobs, every fifth a quick ProcessMining
job on tests/data/roadtraffic100traces.xes), so the nodes work throughout. The API process's
RSS is sampled every ``--sample-every`` seconds.

Reports requests and errors per endpoint (any status other than the expected 2xx; transport
errors and timeouts count too), p50/p95/p99 latency, the jobs' final states, and the API's RSS:
start, end, max and the least-squares slope. "Flat" means the fitted growth over the whole run
stays within 5 % of the starting RSS (a heuristic for "no growth trend", not a proof).

    python -m bench.load --minutes 10
    python -m bench.load --minutes 10 --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import common

ROAD = common.ROOT / "tests" / "data" / "roadtraffic100traces.xes"


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    job_ids: list[str] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    prefect_rss: list[tuple[float, int]] = field(default_factory=list)

    def record(self, endpoint: str, started: float, problem: str | None) -> None:
        if problem:
            self.errors[endpoint][problem] += 1
        else:
            self.latencies[endpoint].append(time.perf_counter() - started)


async def _call(
    stats: Stats,
    endpoint: str,
    http: httpx.AsyncClient,
    method: str,
    url: str,
    expected: set[int],
    **kw: Any,
) -> httpx.Response | None:
    t0 = time.perf_counter()
    try:
        r = await http.request(method, url, **kw)
    except httpx.HTTPError as exc:
        stats.record(endpoint, t0, type(exc).__name__)
        return None
    stats.record(endpoint, t0, None if r.status_code in expected else f"HTTP {r.status_code}")
    return r


async def poller(
    stats: Stats, tenant: common.Tenant, stop: float, think: float, seed: int, ok: set[int]
) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(headers=tenant.headers, timeout=60) as http:
        while time.monotonic() < stop:
            roll = rng.random()
            if roll < 0.55 and stats.job_ids:
                job = rng.choice(stats.job_ids[-50:])
                await _call(stats, "GET job", http, "GET", f"{tenant.base}/execution/job/{job}", ok)
            elif roll < 0.95:
                params: dict[str, Any] = {"page": rng.randint(1, 3), "pageSize": 20}
                if rng.random() < 0.3:
                    params["status"] = rng.choice(["Queued", "Running", "Completed"])
                await _call(
                    stats,
                    "GET jobs (list)",
                    http,
                    "GET",
                    f"{tenant.base}/execution/jobs",
                    ok,
                    params=params,
                )
            else:
                await _call(stats, "GET queue", http, "GET", f"{tenant.base}/execution/queue", ok)
            if think:
                await asyncio.sleep(think * rng.uniform(0.5, 1.5))


async def submitter(
    stats: Stats, tenant: common.Tenant, stop: float, every: float, dataset: str, ok: set[int]
) -> None:
    async with httpx.AsyncClient(headers=tenant.headers, timeout=60) as http:
        i = 0
        while time.monotonic() < stop:
            started = time.monotonic()
            if i % 5 == 4:
                body = {
                    "jobName": f"load pm {i}",
                    "jobType": "ProcessMining",
                    "parameters": {"datasetId": dataset, "analysisType": "quick"},
                }
            else:
                body = {
                    "jobName": f"load wait {i}",
                    "jobType": "Analysis",
                    "parameters": {"delaySeconds": 1},
                }
            r = await _call(
                stats, "POST job", http, "POST", f"{tenant.base}/execution/job", ok, json=body
            )
            if r is not None and r.status_code in ok:
                stats.job_ids.append(r.json()["jobId"])
            i += 1
            await asyncio.sleep(max(0.0, every - (time.monotonic() - started)))


async def sampler(
    stats: Stats, api: psutil.Process, prefect: psutil.Process | None, stop: float, every: float
) -> None:
    t0 = time.monotonic()
    while True:
        now = time.monotonic()
        try:
            stats.rss.append((now - t0, api.memory_info().rss))
            if prefect is not None:
                stats.prefect_rss.append((now - t0, prefect.memory_info().rss))
        except psutil.Error:
            pass
        if now >= stop:
            return
        await asyncio.sleep(min(every, max(0.0, stop - now)))


def slope_per_minute(points: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over time, bytes per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mx) * (v - my) for t, v in points)
    return cov / var * 60.0


def rss_line(label: str, points: list[tuple[float, int]], minutes: float) -> str:
    if not points:
        return f"{label}: no samples"
    start, end = points[0][1], points[-1][1]
    top = max(v for _, v in points)
    slope = slope_per_minute(points)
    growth = slope * minutes
    verdict = "flat" if abs(growth) <= 0.05 * start else "GROWING" if growth > 0 else "shrinking"
    return (
        f"{label}: start {common.mb(start)}, end {common.mb(end)}, max {common.mb(top)}, "
        f"slope {slope / 2**20:+.2f} MB/min (fitted change over the run "
        f"{growth / 2**20:+.1f} MB) → {verdict}  [{len(points)} samples]"
    )


async def final_states(tenant: common.Tenant, job_ids: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    sem = asyncio.Semaphore(8)
    async with httpx.AsyncClient(headers=tenant.headers, timeout=60) as http:

        async def one(job_id: str) -> None:
            async with sem:
                r = await http.get(f"{tenant.base}/execution/job/{job_id}")
            counts[r.json()["status"] if r.status_code == 200 else f"HTTP {r.status_code}"] += 1

        await asyncio.gather(*(one(j) for j in job_ids))
    return counts


async def run(args: argparse.Namespace, stack: common.Stack, tenant: common.Tenant) -> Stats:
    client = tenant.client()
    dataset = client.upload(ROAD)["datasetId"]
    procs = stack.processes()
    api = procs.get("api")
    if api is None:
        raise RuntimeError("could not find the API process of the stack")
    ok = {200, 201}
    if args.keep_rate_limit:
        ok.add(429)  # expected when the limiter is on
    stats = Stats()
    stop = time.monotonic() + args.minutes * 60
    tasks = [
        sampler(stats, api, procs.get("prefect-server"), stop, args.sample_every),
        submitter(stats, tenant, stop, args.submit_every, dataset, ok),
        *(poller(stats, tenant, stop, args.think, i, ok) for i in range(args.clients)),
    ]
    await asyncio.gather(*tasks)
    return stats


def report(stats: Stats, args: argparse.Namespace, stack: common.Stack, states: Counter) -> str:
    lines = [
        f"Load test: {args.clients} clients, {args.minutes:g} min, think {args.think:g} s, "
        f"a job every {args.submit_every:g} s; {stack.database_kind}; "
        f"{args.nodes} node(s) x {args.capacity}",
        common.machine_line(),
        "",
        "| endpoint | requests | errors | p50 ms | p95 ms | p99 ms | max ms | req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    seconds = args.minutes * 60
    total_req = total_err = 0
    for endpoint in sorted(set(stats.latencies) | set(stats.errors)):
        lat = stats.latencies.get(endpoint, [])
        errs = sum(stats.errors.get(endpoint, Counter()).values())
        total_req += len(lat) + errs
        total_err += errs
        lines.append(
            f"| {endpoint} | {len(lat) + errs:,} | {errs:,} | "
            f"{common.ms(common.percentile(lat, 50))} | {common.ms(common.percentile(lat, 95))} | "
            f"{common.ms(common.percentile(lat, 99))} | {common.ms(max(lat, default=float('nan')))}"
            f" | {(len(lat) + errs) / seconds:,.1f} |"
        )
    lines.append(f"| all | {total_req:,} | {total_err:,} | | | | | {total_req / seconds:,.1f} |")
    for endpoint, counter in stats.errors.items():
        lines.append(f"errors on {endpoint}: {dict(counter)}")
    lines += [
        "",
        f"jobs submitted: {len(stats.job_ids)}; states at the end: {dict(states)}",
        rss_line("API RSS", stats.rss, args.minutes),
        rss_line("Prefect server RSS", stats.prefect_rss, args.minutes),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Load test: concurrent clients poll job status and lists while jobs run; "
        "latency percentiles, errors and the API's RSS over time.",
    )
    parser.add_argument("--minutes", type=float, default=10, help="duration (10)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument(
        "--think", type=float, default=0.25, help="mean pause between a client's requests (0.25 s)"
    )
    parser.add_argument("--submit-every", type=float, default=2.0, help="seconds per job (2)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling (5 s)")
    parser.add_argument(
        "--keep-rate-limit",
        action="store_true",
        help="leave the API's rate limit on (429s then count as expected, not as errors)",
    )
    parser.add_argument("--json", type=Path, help="also write the samples to this file")
    common.add_stack_arguments(parser, nodes=1, capacity=2)
    args = parser.parse_args(argv)

    with common.running_stack(args, rate_limit=args.keep_rate_limit) as stack:
        tenant = stack.new_tenant("load")
        print(f"# running {args.minutes:g} min ...", file=sys.stderr, flush=True)
        stats = asyncio.run(run(args, stack, tenant))
        time.sleep(3)  # let the last jobs finish before counting their states
        states = asyncio.run(final_states(tenant, stats.job_ids))
        text = report(stats, args, stack, states)
    print(text)
    if args.json:
        import json

        args.json.write_text(
            json.dumps(
                {
                    "latencies": stats.latencies,
                    "errors": {k: dict(v) for k, v in stats.errors.items()},
                    "rss": stats.rss,
                    "prefectRss": stats.prefect_rss,
                    "states": dict(states),
                }
            )
        )
    errors = sum(sum(c.values()) for c in stats.errors.values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
