"""The performance targets (issue 4) against the latest measurements in ``bench/out/``.

Reads the newest ``compare-*.json`` that holds each log (BPIC 2012, synthetic 1M and 5M) and the
newest ``latency-*.json`` per database, and prints one row per target: what was measured, the
target, and whether it is met. A target with no measurement says so; nothing is assumed.

    python -m bench.scorecard              # after make bench (or any compare/latency runs)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import common

GIB = 2**30
LOG_NAMES = {"bpic": "BPIC 2012", "1M": "synthetic 1M", "5M": "synthetic 5M"}


@dataclass(frozen=True)
class Row:
    measure: str
    measured: str
    target: str
    met: bool | None  # None: not measured

    def line(self) -> str:
        verdict = {True: "met", False: "**not met**", None: "not measured"}[self.met]
        return f"| {self.measure} | {self.measured} | {self.target} | {verdict} |"


def _newest(out: Path, pattern: str, keep: Callable[[dict[str, Any]], bool]) -> dict | None:
    for path in sorted(out.glob(pattern), reverse=True):  # names sort by their UTC stamp
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if keep(data):
            data["_file"] = path.name
            return data
    return None


def _log_runs(out: Path, label: str) -> tuple[dict[str, Any], str] | None:
    """The newest compare entry for a log whose name starts with ``label``."""
    for path in sorted(out.glob("compare-*.json"), reverse=True):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for log in data.get("logs", []):
            if log["name"].startswith(label) and log.get("b"):
                return log, path.name
    return None


def compare_rows(out: Path) -> list[Row]:
    rows: list[Row] = []
    for key, label in LOG_NAMES.items():
        found = _log_runs(out, label)
        if found is None:
            what = "completes; job peak RSS" if key == "5M" else "(upload + job) / plain pm4py"
            rows.append(Row(f"{label}: {what}", "—", "", None))
            continue
        log, source = found
        b = statistics.median(r["totalSeconds"] for r in log["b"])
        rss = max(r.get("peakRssBytes") or 0 for r in log["b"]) / GIB
        identical = all(not d for d in log.get("differences", []))
        if key != "5M":
            limit = 0.05 if key == "bpic" else 0.06
            if log.get("a"):
                a = statistics.median(r["wallSeconds"] for r in log["a"])
                ratio = b / a
                rows.append(
                    Row(
                        f"{label}: (upload + job) / plain pm4py",
                        f"{b:.1f} s / {a:.1f} s = {ratio:.3f}"
                        + ("" if identical else " (numbers differ!)"),
                        f"≤ {limit}",
                        ratio <= limit and identical,
                    )
                )
            else:
                rows.append(Row(f"{label}: (upload + job) / plain pm4py", "B only", "", None))
        if key == "1M":
            rows.append(Row(f"{label}: job peak RSS", f"{rss:.2f} GiB", "≤ 1 GB", rss * GIB <= 1e9))
        if key == "5M":
            rows.append(
                Row(
                    f"{label}: completes; job peak RSS",
                    f"completed in {b:.1f} s; {rss:.2f} GiB",
                    "≤ 3 GB",
                    rss * GIB <= 3e9,
                )
            )
    return rows


def latency_rows(out: Path) -> list[Row]:
    rows: list[Row] = []
    for database in ("PostgreSQL", "SQLite (embedded)"):
        data = _newest(out, "latency-*.json", lambda d, db=database: d.get("database") == db)
        short = "PostgreSQL" if database == "PostgreSQL" else "embedded"
        if data is None:
            rows.append(Row(f"submit → Running ({short})", "—", "", None))
            continue
        life = data.get("lifecycle") or {}
        runs = life.get("submitToRunning") or []
        if runs:
            p50, p95 = common.percentile(runs, 50), common.percentile(runs, 95)
            if database == "PostgreSQL":
                target, met = "≤ 0.3 s / ≤ 0.6 s", p50 <= 0.3 and p95 <= 0.6
            else:
                target, met = "p95 ≤ 1 s", p95 <= 1.0
            measured = f"p50 {p50:.2f} s, p95 {p95:.2f} s (n={len(runs)})"
            rows.append(Row(f"submit → Running ({short})", measured, target, met))
        for mode, values in (life.get("cancelToCancelled") or {}).items():
            if values:
                p50 = common.percentile(values, 50)
                rows.append(
                    Row(
                        f"cancel → Cancelled, {mode} ({short})",
                        f"p50 {p50:.2f} s",
                        "≤ 1 s",
                        p50 <= 1,
                    )
                )
        concurrent = data.get("concurrent") or {}
        history = f"{data.get('history', 0):,} jobs of history"
        for op in ("GET job", "GET list page"):
            sides = concurrent.get(op)
            if sides:
                api = common.percentile(sides["api"]["latencies"], 50)
                raw = common.percentile(sides["raw"]["latencies"], 50)
                rows.append(
                    Row(
                        f"{op} p50, API / raw Prefect ({short}, {history})",
                        f"{api * 1000:.0f} / {raw * 1000:.0f} ms = {api / raw:.2f}×",
                        "≤ 2×",
                        api / raw <= 2,
                    )
                )
        submit = concurrent.get("POST job (submit)")
        if submit and database == "PostgreSQL":
            api_rate = len(submit["api"]["latencies"]) / submit["api"]["wall"]
            raw_rate = len(submit["raw"]["latencies"]) / submit["raw"]["wall"]
            rows.append(
                Row(
                    "submit throughput (PostgreSQL)",
                    f"{api_rate:.1f} jobs/s via the API ({raw_rate:.1f} runs/s raw Prefect)",
                    "≥ 25 jobs/s",
                    api_rate >= 25,
                )
            )
    return rows


def render(out: Path) -> str:
    rows = compare_rows(out) + latency_rows(out)
    lines = [
        f"Targets against the newest measurements in {out} ({common.machine_line()})",
        "",
        "| measure | measured | target | |",
        "|---|---|---|---|",
        *(row.line() for row in rows),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=common.OUT, help="where the JSON files are")
    args = parser.parse_args(argv)
    print(render(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
