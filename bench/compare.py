"""Side by side: plain pm4py (A) against pmjobs through its API (B), on the same logs.

For every log and repeat, in alternation A, B, A, B ... (so drift in machine load hits both):

A  ``bench/plain_pm4py.py`` in a fresh interpreter (a subprocess of this one): read the file
   (XES with pm4py's default iterparse reader, CSV/Parquet with pandas + format_dataframe),
   DFG, performance DFG, variants, case durations, start/end activities, inductive miner
   (noise 0.2), token-based replay fitness and precision.
B  pmjobs on a stack this script starts: upload the same file (``POST .../datasets``) and run
   a ``ProcessMining`` job with ``analysisType=standard`` — the smallest type that computes
   everything A does. It also does more than A (see bench/README.md): activity counts,
   performance and rework tables, the HTML report, two SVG process maps, PNML and BPMN.

The numbers must be identical (exact equality unless ``--tolerance`` is given); a difference is
printed field by field and the exit status is 1. Times: A is the subprocess's wall clock
(interpreter start and imports included) and the pipeline's own total; B is upload + submit →
Completed on this client's clock, and Scheduled → Running → Completed from Prefect's state
history; B's per-stage seconds and peak RSS come from the job's detailed results.

    python -m bench.compare                       # BPIC 2012, synthetic 1M and 5M
    python -m bench.compare --logs 20k --repeat 2 # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import common, synth

PLAIN = Path(__file__).resolve().parent / "plain_pm4py.py"
B_STAGES = [
    "Loading",
    "Validating",
    "Discovering",
    "Conformance",
    "Performance",
    "Anomalies",
    "Reporting",
]
A_STAGES = [
    "read",
    "dfg",
    "performance_dfg",
    "variants",
    "case_durations",
    "start_end_activities",
    "inductive_miner",
    "fitness_tbr",
    "precision_tbr",
]
COMPARED = (
    "log",
    "dfg",
    "startActivities",
    "endActivities",
    "variants",
    "caseDurations",
    "fitness",
    "precision",
)


@dataclass
class LogRuns:
    name: str
    path: Path
    events: int | None = None
    a: list[dict[str, Any]] = field(default_factory=list)
    b: list[dict[str, Any]] = field(default_factory=list)
    diffs: list[list[str]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Which logs


def resolve_log(spec: str, fmt: str, seed: int, out: Path) -> tuple[str, Path]:
    """'bpic' → BPIC 2012; '1M', '5M', '200k', '20000' → synthetic (made on demand); a path."""
    if spec.lower() in ("bpic", "bpic2012"):
        return "BPIC 2012", common.BPIC
    path = Path(spec)
    if path.is_file():
        return path.name, path
    try:
        events = synth.parse_size(spec)
    except (ValueError, argparse.ArgumentTypeError):
        raise SystemExit(f"--logs: {spec!r} is neither 'bpic', a size like 1M nor a file") from None
    t0 = time.perf_counter()
    made = not synth.output_path(out, events, seed, fmt).exists()
    path = synth.ensure(events, fmt, out, seed)
    if made:
        print(f"# generated {path} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return f"synthetic {synth.size_label(events)} ({fmt})", path


# --------------------------------------------------------------------------------------------
# A and B


def run_a(path: Path, noise: float, timeout: float, log_dir: Path) -> dict[str, Any]:
    """plain_pm4py.py in a fresh interpreter; its progress bars go to a log file."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = log_dir / f"plain-{path.name}-{stamp}.json"
    err = log_dir / f"plain-{path.name}-{stamp}.log"
    cmd = [sys.executable, str(PLAIN), str(path), "--noise", str(noise), "--out", str(out)]
    t0 = time.perf_counter()
    with err.open("wb") as stderr:
        proc = subprocess.run(
            cmd, stdout=subprocess.DEVNULL, stderr=stderr, timeout=timeout, check=False
        )
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out.exists():
        tail = err.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"plain pm4py failed on {path} (exit {proc.returncode}):\n{tail}")
    report = json.loads(out.read_text())
    report["wallSeconds"] = wall
    out.unlink()
    return report


def run_b(
    stack: common.Stack,
    tenant: common.Tenant,
    path: Path,
    noise: float,
    analysis_type: str,
    timeout: float,
) -> dict[str, Any]:
    """Upload + ProcessMining job through the API, timed by this client and by Prefect."""
    client = tenant.client(timeout=timeout)
    t0 = time.perf_counter()
    dataset = client.upload(path)
    upload = time.perf_counter() - t0
    t1 = time.perf_counter()
    submitted = client.submit(
        {
            "jobName": f"bench {path.name}",
            "jobType": "ProcessMining",
            "priority": "High",
            "parameters": {
                "datasetId": dataset["datasetId"],
                "analysisType": analysis_type,
                "noiseThreshold": noise,
            },
        }
    )
    job = client.wait(submitted["jobId"], timeout=timeout, poll=0.2)
    job_wall = time.perf_counter() - t1
    if job["status"] != "Completed":
        raise RuntimeError(f"pmjobs job {job['jobId']} ended {job['status']}: {job.get('error')}")
    results = client.results(job["jobId"], format="detailed")
    outputs = [results["results"]["primaryOutput"], *results["results"]["additionalOutputs"]]
    result_url = next(o["downloadUrl"] for o in outputs if o["type"] == "ProcessMiningResult")
    result = json.loads(client.download(result_url))
    history = common.state_history(stack.prefect_url, job["jobId"])
    metrics = results.get("executionMetrics") or {}
    return {
        "jobId": job["jobId"],
        "datasetEvents": dataset.get("events"),
        "uploadSeconds": upload,
        "jobWallSeconds": job_wall,
        "totalSeconds": upload + job_wall,
        "queuedSeconds": common.seconds_between(history, "SCHEDULED", "RUNNING"),
        "runningSeconds": common.seconds_between(history, "RUNNING", "COMPLETED"),
        "states": [(s.type, s.name, s.timestamp.isoformat()) for s in history],
        "stageSeconds": metrics.get("stageSeconds") or {},
        "peakRssBytes": metrics.get("peakMemoryBytes"),
        "cpuSeconds": metrics.get("totalCpuSeconds"),
        "result": result,
    }


# --------------------------------------------------------------------------------------------
# Equality


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if tol == 0:
            return a == b
        return abs(a - b) <= tol * max(1.0, abs(a), abs(b))
    return a == b


def _num_diff(where: str, a: Any, b: Any, tol: float) -> list[str]:
    if _close(a, b, tol):
        return []
    extra = ""
    if isinstance(a, int | float) and isinstance(b, int | float) and a != 0:
        extra = f"  (relative difference {abs(a - b) / abs(a):.3g})"
    return [f"{where}: A={a!r} B={b!r}{extra}"]


def differences(a: dict[str, Any], b: dict[str, Any], tol: float = 0.0, limit: int = 15) -> list:
    """Field-by-field differences between A's result and pmjobs' result.json (empty: equal)."""
    out: list[str] = []
    missing = [k for k in COMPARED if k not in b]
    if missing:
        return [f"pmjobs result lacks {missing}"]
    for key in ("events", "cases", "activities"):
        out += _num_diff(f"log.{key}", a["log"][key], b["log"].get(key), tol)
    edges_a = {(e["source"], e["target"]): e for e in a["dfg"]}
    edges_b = {(e["source"], e["target"]): e for e in b["dfg"]}
    for edge in sorted(edges_a.keys() - edges_b.keys())[:limit]:
        out.append(f"dfg: edge {edge} only in A ({edges_a[edge]['frequency']}x)")
    for edge in sorted(edges_b.keys() - edges_a.keys())[:limit]:
        out.append(f"dfg: edge {edge} only in B ({edges_b[edge]['frequency']}x)")
    for edge in sorted(edges_a.keys() & edges_b.keys()):
        ea, eb = edges_a[edge], edges_b[edge]
        out += _num_diff(f"dfg{edge}.frequency", ea["frequency"], eb["frequency"], 0)
        out += _num_diff(f"dfg{edge}.meanSeconds", ea["meanSeconds"], eb["meanSeconds"], tol)
    for key in ("startActivities", "endActivities"):
        if a[key] != b[key]:
            keys = sorted(set(a[key]) | set(b[key]))
            out += [
                f"{key}[{k!r}]: A={a[key].get(k)} B={b[key].get(k)}"
                for k in keys
                if a[key].get(k) != b[key].get(k)
            ][:limit]
    var_a = [(tuple(v["activities"]), v["count"]) for v in a["variants"]]
    var_b = [(tuple(v["activities"]), v["count"]) for v in b["variants"]]
    if var_a != var_b:
        da, db = dict(var_a), dict(var_b)
        if da == db:
            out.append("variants: same variants and counts, different order")
        else:
            out.append(f"variants: A has {len(da)}, B has {len(db)}")
            keys = sorted(set(da) | set(db), key=lambda k: -(da.get(k) or db.get(k) or 0))
            out += [
                f"variant {' > '.join(k)[:120]}: A={da.get(k)} B={db.get(k)}"
                for k in keys
                if da.get(k) != db.get(k)
            ][:limit]
    for key, value in a["caseDurations"].items():
        out += _num_diff(f"caseDurations.{key}", value, b["caseDurations"].get(key), tol)
    for key, value in a["fitness"].items():
        out += _num_diff(f"fitness.{key}", value, (b["fitness"] or {}).get(key), tol)
    out += _num_diff("precision", a["precision"], b["precision"], tol)
    if len(out) > 4 * limit:
        out = out[: 4 * limit] + [f"... {len(out) - 4 * limit} more"]
    return out


# --------------------------------------------------------------------------------------------
# Report


def _med(values: Sequence[float | None]) -> float | None:
    clean = [v for v in values if v is not None]
    return statistics.median(clean) if clean else None


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _gb(value: float | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:,.2f} GiB"


def summary_tables(runs: list[LogRuns], repeat: int) -> str:
    note = f"median of {repeat} runs" if repeat > 1 else "one run"
    lines = [
        f"| log | events | A: plain pm4py, s | B: pmjobs upload + job, s | B/A | "
        f"A peak RSS | B peak RSS (job) | identical |  ({note})",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        a_wall = _med([x["wallSeconds"] for x in r.a])
        b_total = _med([x["totalSeconds"] for x in r.b])
        ratio = f"{b_total / a_wall:.2f}" if a_wall and b_total else "n/a"
        same = "n/a" if not (r.a and r.b) else ("yes" if not any(r.diffs) else "**NO**")
        lines.append(
            f"| {r.name} | {r.events or 0:,} | {_s(a_wall)} | {_s(b_total)} | {ratio} | "
            f"{_gb(_med([x['peakRssBytes'] for x in r.a]))} | "
            f"{_gb(_med([x['peakRssBytes'] for x in r.b]))} | {same} |"
        )
    lines += ["", "B (pmjobs), seconds per step:", ""]
    head = ["upload", "queued", *B_STAGES, "running", "stages Σ"]
    lines.append("| log | " + " | ".join(head) + " |")
    lines.append("|---|" + "---:|" * len(head))
    for r in runs:
        if not r.b:
            continue
        stages = [_med([x["stageSeconds"].get(s) for x in r.b]) for s in B_STAGES]
        row = [
            _med([x["uploadSeconds"] for x in r.b]),
            _med([x["queuedSeconds"] for x in r.b]),
            *stages,
            _med([x["runningSeconds"] for x in r.b]),
            sum(s for s in stages if s is not None),
        ]
        lines.append(f"| {r.name} | " + " | ".join(_s(v) for v in row) + " |")
    lines += ["", "A (plain pm4py), seconds per step:", ""]
    head = [*A_STAGES, "pipeline", "process wall"]
    lines.append("| log | " + " | ".join(head) + " |")
    lines.append("|---|" + "---:|" * len(head))
    for r in runs:
        if not r.a:
            continue
        row = [_med([x["stageSeconds"].get(s) for x in r.a]) for s in A_STAGES]
        row += [_med([x["totalSeconds"] for x in r.a]), _med([x["wallSeconds"] for x in r.a])]
        lines.append(f"| {r.name} | " + " | ".join(_s(v) for v in row) + " |")
    lines += ["", common.machine_line()]
    return "\n".join(lines)


def _run_line(i: int, a: dict[str, Any] | None, b: dict[str, Any] | None, diff: list) -> str:
    parts = [f"  run {i}:"]
    if a:
        parts.append(
            f"A {a['wallSeconds']:.1f} s (pipeline {a['totalSeconds']:.1f} s, "
            f"peak RSS {_gb(a['peakRssBytes'])})"
        )
    if b:
        parts.append(
            f"| B {b['totalSeconds']:.1f} s (upload {b['uploadSeconds']:.1f} s + job "
            f"{b['jobWallSeconds']:.1f} s; Prefect queued {_s(b['queuedSeconds'])} s, "
            f"running {_s(b['runningSeconds'])} s; peak RSS {_gb(b['peakRssBytes'])})"
        )
    if a and b:
        parts.append("| numbers identical" if not diff else f"| {len(diff)} DIFFERENCES")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Plain pm4py (A) vs pmjobs through its API (B): time, memory and "
        "equality of the numbers, alternating A, B, A, B ...",
    )
    parser.add_argument(
        "--logs",
        default="bpic,1M,5M",
        help="comma-separated: 'bpic', a synthetic size (20k, 200k, 1M, 5M, 300000) or a "
        "file path (default bpic,1M,5M)",
    )
    parser.add_argument(
        "--synthetic-format",
        default="csv",
        choices=synth.FORMATS,
        help="file format of the synthetic logs (csv: plain pm4py reads it with pandas, "
        "much faster than its iterparse XES reader)",
    )
    parser.add_argument("--seed", type=int, default=synth.DEFAULT_SEED, help="synthetic seed")
    parser.add_argument("--repeat", type=int, default=1, help="A/B pairs per log (1)")
    parser.add_argument(
        "--mode", choices=("ab", "a", "b"), default="ab", help="run both (ab), or only one side"
    )
    parser.add_argument("--noise", type=float, default=0.2, help="inductive miner noise (0.2)")
    parser.add_argument(
        "--analysis-type",
        default="standard",
        choices=("quick", "standard", "comprehensive"),
        help="pmjobs analysisType (standard: the smallest that includes the model, fitness "
        "and precision)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="relative tolerance for floating-point results (0: exact equality)",
    )
    parser.add_argument(
        "--timeout", type=float, default=6 * 3600, help="per A run and per B job, seconds"
    )
    parser.add_argument("--out", type=Path, default=common.OUT, help="generated logs, reports")
    common.add_stack_arguments(parser)
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    logs = [
        resolve_log(s.strip(), args.synthetic_format, args.seed, args.out)
        for s in args.logs.split(",")
        if s.strip()
    ]
    runs = [LogRuns(name, path) for name, path in logs]
    print(common.machine_line(), file=sys.stderr)
    with contextlib.ExitStack() as resources:
        stack = resources.enter_context(common.running_stack(args)) if args.mode != "a" else None
        tenant = stack.new_tenant("bench") if stack else None
        for r in runs:
            print(f"\n## {r.name}: {r.path}", flush=True)
            for i in range(1, args.repeat + 1):
                a = b = None
                if args.mode in ("ab", "a"):
                    a = run_a(r.path, args.noise, args.timeout, args.out / "logs")
                    r.a.append(a)
                    r.events = a["result"]["log"]["events"]
                if stack and tenant:
                    b = run_b(stack, tenant, r.path, args.noise, args.analysis_type, args.timeout)
                    r.b.append(b)
                    r.events = r.events or b["result"]["log"]["events"]
                diff = differences(a["result"], b["result"], args.tolerance) if a and b else []
                r.diffs.append(diff)
                print(_run_line(i, a, b, diff), flush=True)
                for line in diff:
                    print(f"    DIFF {line}", flush=True)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    raw = args.out / f"compare-{stamp}.json"
    for r in runs:  # the full results are big (every variant); keep the measurements
        for x in (*r.a, *r.b):
            x.pop("result", None)
    raw.write_text(
        json.dumps(
            {
                "machine": common.machine_info(),
                "args": {k: str(v) for k, v in vars(args).items()},
                "logs": [
                    {
                        "name": r.name,
                        "path": str(r.path),
                        "events": r.events,
                        "a": r.a,
                        "b": r.b,
                        "differences": r.diffs,
                    }
                    for r in runs
                ],
            },
            indent=1,
            default=str,
        )
    )
    print("\n" + summary_tables(runs, args.repeat))
    print(f"\n(raw measurements: {raw})")
    if any(any(d) for r in runs for d in r.diffs):
        print("\nRESULTS DIFFER between plain pm4py and pmjobs (see DIFF lines above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
