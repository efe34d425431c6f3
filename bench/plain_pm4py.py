"""Baseline (A): the core process-mining pipeline in plain pm4py, as a user's script runs it.

Run in a fresh interpreter (bench/compare.py starts it as a subprocess) so its peak RSS is its
own. It imports nothing from pmjobs: the point is to measure default pm4py. With r4pm
installed ``pm4py.read_xes`` silently switches to the Rust reader, so the XES reader is forced
to ``iterparse`` — pm4py's default without r4pm. CSV and Parquet are read with pandas and
``pm4py.format_dataframe`` (pm4py's documented way to prepare a table).

Prints one JSON object: per-stage seconds, total, peak RSS and the numbers in the shape of
pmjobs' ProcessMiningResult (dfg with meanSeconds, start/end activities, variants most
frequent first, case-duration summary, fitness, precision) so compare.py can check equality.

    python bench/plain_pm4py.py bench/data/bpic2012.xes.gz [--noise 0.2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

CASE, ACTIVITY, TIMESTAMP = "case:concept:name", "concept:name", "time:timestamp"


class Stages:
    """Times each stage with a monotonic clock; the order of calls is the pipeline's order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        value = fn()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        return value


def read_log(path: Path) -> Any:
    """The log as pm4py's default readers give it."""
    import pandas as pd
    import pm4py

    name = path.name.lower()
    if name.endswith((".xes", ".xes.gz")):
        return pm4py.read_xes(str(path), variant="iterparse", show_progress_bar=False)
    frame = pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)
    return pm4py.format_dataframe(
        frame, case_id=CASE, activity_key=ACTIVITY, timestamp_key=TIMESTAMP
    )


def _counts(mapping: dict[Any, Any]) -> dict[str, int]:
    items = sorted(((str(k), int(v)) for k, v in mapping.items()), key=lambda kv: (-kv[1], kv[0]))
    return dict(items)


def pipeline(path: Path, noise: float) -> dict[str, Any]:
    import pm4py

    st = Stages()
    t0 = time.perf_counter()
    log = st.run("read", lambda: read_log(path))
    frequency, _, _ = st.run("dfg", lambda: pm4py.discover_dfg(log))
    performance, _, _ = st.run(
        "performance_dfg",
        lambda: pm4py.discover_performance_dfg(log, perf_aggregation_key="mean"),
    )
    variants = st.run("variants", lambda: pm4py.get_variants(log))
    durations = st.run("case_durations", lambda: pm4py.get_all_case_durations(log))
    start = st.run("start_end_activities", lambda: pm4py.get_start_activities(log))
    end = st.run("start_end_activities", lambda: pm4py.get_end_activities(log))
    net, im, fm = st.run(
        "inductive_miner",
        lambda: pm4py.discover_petri_net_inductive(log, noise_threshold=noise),
    )
    fitness = st.run("fitness_tbr", lambda: pm4py.fitness_token_based_replay(log, net, im, fm))
    precision = st.run(
        "precision_tbr", lambda: pm4py.precision_token_based_replay(log, net, im, fm)
    )
    total = time.perf_counter() - t0

    edges = [
        {
            "source": str(a),
            "target": str(b),
            "frequency": int(n),
            "meanSeconds": float(performance[(a, b)]),
        }
        for (a, b), n in frequency.items()
    ]
    edges.sort(key=lambda e: (-e["frequency"], e["source"], e["target"]))
    ordered = sorted(
        ((tuple(str(a) for a in acts), int(n)) for acts, n in variants.items()),
        key=lambda item: (item[1], item[0]),
        reverse=True,
    )
    values = [float(d) for d in durations]
    result = {
        "log": {
            "events": int(len(log)),
            "cases": int(log[CASE].nunique()),
            "activities": int(log[ACTIVITY].nunique()),
        },
        "dfg": edges,
        "startActivities": _counts(start),
        "endActivities": _counts(end),
        "variants": [{"activities": list(acts), "count": n} for acts, n in ordered],
        "caseDurations": {
            "count": len(values),
            "min": min(values),
            "max": max(values),
            "mean": statistics.fmean(values),
            "median": float(statistics.median(values)),
        },
        "fitness": {
            "averageTraceFitness": float(fitness["average_trace_fitness"]),
            "logFitness": float(fitness["log_fitness"]),
            "percentageFitTraces": float(fitness["percentage_of_fitting_traces"]),
        },
        "precision": float(precision),
    }
    return {
        "file": str(path),
        "pm4py": pm4py.__version__,
        "xesReader": "iterparse" if path.name.lower().endswith((".xes", ".xes.gz")) else None,
        "noiseThreshold": noise,
        "stageSeconds": {k: round(v, 4) for k, v in st.seconds.items()},
        "totalSeconds": round(total, 4),
        # Linux reports ru_maxrss in KiB
        "peakRssBytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "result": result,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Plain-pm4py baseline: read, DFG, performance DFG, variants, case "
        "durations, start/end activities, inductive miner, token-based replay fitness and "
        "precision. Prints JSON (stage seconds, peak RSS, results) on stdout.",
    )
    parser.add_argument("log", type=Path, help="event log: .xes, .xes.gz, .csv or .parquet")
    parser.add_argument(
        "--noise", type=float, default=0.2, help="inductive miner noise threshold (0.2)"
    )
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    if not args.log.is_file():
        parser.error(f"no such file: {args.log}")
    report = pipeline(args.log, args.noise)
    text = json.dumps(report)
    if args.out:
        args.out.write_text(text)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    main()
