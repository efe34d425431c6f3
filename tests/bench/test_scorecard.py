"""bench.scorecard: targets judged from the JSON files compare.py and latency.py write (pure
code on hand-made files)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import scorecard


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data))


def _b(total: float, rss_gib: float) -> dict:
    return {"totalSeconds": total, "peakRssBytes": int(rss_gib * 2**30)}


def _verdicts(out: Path) -> dict[str, bool | None]:
    return {row.measure: row.met for row in scorecard.compare_rows(out)} | {
        row.measure: row.met for row in scorecard.latency_rows(out)
    }


def test_targets_are_judged_from_the_newest_files(tmp_path: Path) -> None:
    _write(
        tmp_path / "compare-20260101T000000.json",
        {"logs": [{"name": "BPIC 2012", "a": [{"wallSeconds": 100}], "b": [_b(9, 0.4)]}]},
    )
    _write(  # newer: BPIC again (now within target) and 1M with a difference in the numbers
        tmp_path / "compare-20260102T000000.json",
        {
            "logs": [
                {"name": "BPIC 2012", "a": [{"wallSeconds": 100}], "b": [_b(4, 0.4)]},
                {
                    "name": "synthetic 1M (csv)",
                    "a": [{"wallSeconds": 100}],
                    "b": [_b(5, 1.2)],
                    "differences": [["fitness"]],
                },
                {"name": "synthetic 5M (csv)", "a": [], "b": [_b(50, 2.0)]},
            ]
        },
    )
    _write(
        tmp_path / "latency-20260102T000000.json",
        {
            "database": "PostgreSQL",
            "history": 20000,
            "lifecycle": {
                "submitToRunning": [0.2] * 16 + [0.9] * 4,
                "cancelToCancelled": {"forced": [0.2, 0.3], "graceful": [1.2, 1.3]},
            },
            "concurrent": {
                "GET job": {"api": {"latencies": [0.3]}, "raw": {"latencies": [0.2]}},
                "GET list page": {"api": {"latencies": [0.9]}, "raw": {"latencies": [0.3]}},
                "POST job (submit)": {
                    "api": {"latencies": [0.1] * 30, "wall": 1.0},
                    "raw": {"latencies": [0.1] * 40, "wall": 1.0},
                },
            },
        },
    )
    verdicts = _verdicts(tmp_path)
    assert verdicts["BPIC 2012: (upload + job) / plain pm4py"] is True  # newest file wins
    assert verdicts["synthetic 1M: (upload + job) / plain pm4py"] is False  # numbers differ
    assert verdicts["synthetic 1M: job peak RSS"] is False
    assert verdicts["synthetic 5M: completes; job peak RSS"] is True
    assert verdicts["submit → Running (PostgreSQL)"] is False  # p95 0.9 s > 0.6 s
    assert verdicts["cancel → Cancelled, forced (PostgreSQL)"] is True
    assert verdicts["cancel → Cancelled, graceful (PostgreSQL)"] is False
    assert verdicts["GET job p50, API / raw Prefect (PostgreSQL, 20,000 jobs of history)"] is True
    assert (
        verdicts["GET list page p50, API / raw Prefect (PostgreSQL, 20,000 jobs of history)"]
        is False
    )
    assert verdicts["submit throughput (PostgreSQL)"] is True
    assert verdicts["submit → Running (embedded)"] is None  # nothing measured: said so


def test_an_empty_directory_measures_nothing(tmp_path: Path) -> None:
    assert set(_verdicts(tmp_path).values()) == {None}
    assert "not measured" in scorecard.render(tmp_path)
