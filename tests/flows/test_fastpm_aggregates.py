"""flows.steps.fastpm.aggregates against the pm4py calls they replace, on real logs.

Equality is strict: same values, same Python types, same dict key order and bit-identical
floats (compared through ``float.hex``), because the callers publish these dicts as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pm4py
import pytest

from flows.steps import mining
from flows.steps.fastpm import PM4PY_VERSION, aggregates

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
LOGS = {
    "roadtraffic": DATA / "roadtraffic100traces.xes",
    "receipt": DATA / "receipt.csv",
    "sepsis": DATA / "Sepsis Cases - Event Log.xes.gz",
    "bpic2012": ROOT / "bench" / "data" / "bpic2012.xes.gz",
}
LOG_PARAMS = [
    "roadtraffic",
    "receipt",
    "sepsis",
    pytest.param("bpic2012", marks=pytest.mark.slow),
]


def load_frame(name: str) -> pd.DataFrame:
    """A prepared frame, read with pm4py's own readers (iterparse for XES)."""
    path = LOGS[name]
    if path.suffix == ".csv":
        df = pm4py.format_dataframe(
            pd.read_csv(path),
            case_id="case:concept:name",
            activity_key="concept:name",
            timestamp_key="time:timestamp",
        )
    else:
        df = pm4py.read_xes(str(path), variant="iterparse", show_progress_bar=False)
    return mining.prepare(df)


def assert_identical(got: Any, want: Any, where: str = "") -> None:
    """Same type, same key order, bit-identical floats, recursively."""
    assert type(got) is type(want), (where, type(got), type(want))
    if isinstance(want, dict):
        assert list(got) == list(want), f"{where}: keys or key order differ"
        for key in want:
            assert_identical(got[key], want[key], f"{where}[{key!r}]")
    elif isinstance(want, (list, tuple)):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_identical(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got.hex() == want.hex(), (where, got, want)
    else:
        assert got == want, (where, got, want)


CALLS = {
    "dfg": (lambda f: pm4py.discover_dfg(f), aggregates.discover_dfg),
    "performance_dfg": (
        lambda f: pm4py.discover_performance_dfg(f, perf_aggregation_key="mean")[0],
        aggregates.discover_performance_dfg_mean,
    ),
    "performance_dfg_stats": (
        lambda f: {
            edge: {k: stats[k] for k in aggregates.PERFORMANCE_STATS}
            for edge, stats in pm4py.discover_performance_dfg(f, perf_aggregation_key="all")[
                0
            ].items()
        },
        aggregates.discover_performance_dfg_stats,
    ),
    "variants": (pm4py.get_variants, aggregates.get_variants),
    "durations": (pm4py.get_all_case_durations, aggregates.get_all_case_durations),
    "activities": (
        lambda f: pm4py.get_event_attribute_values(f, "concept:name"),
        aggregates.get_event_attribute_values,
    ),
}


def test_pm4py_version_is_pinned() -> None:
    """fastpm mirrors pm4py internals: an upgrade must be re-validated, not slip through."""
    assert pm4py.__version__ == PM4PY_VERSION


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {}


@pytest.mark.parametrize("log", LOG_PARAMS)
def test_equal_to_pm4py_on_real_logs(log: str, frames: dict[str, pd.DataFrame]) -> None:
    if log not in frames:
        frames[log] = load_frame(log)
    frame = frames[log]
    before = frame.copy()
    for name, (reference, fast) in CALLS.items():
        want = reference(frame.copy())  # pm4py's DFG adds a column to its input
        got = fast(frame)
        # Bare comparison first (clear diff on failure), then the strict one.
        assert got == want, name
        assert_identical(got, want, name)
    pd.testing.assert_frame_equal(frame, before)  # the fast functions do not mutate


def _synthetic() -> pd.DataFrame:
    """Unsorted case ids, non-ASCII names, timestamp ties, repeated variants, equal counts."""
    t0 = pd.Timestamp("2024-03-01 08:00:00.123456", tz="UTC")
    traces = {
        "z9": ["Zürich", "a", "B", "a"],
        "10": ["a", "B"],
        "2": ["Zürich", "a", "B", "a"],
        "ä": ["é", "a"],
        "A": ["B"],
        "b": ["a", "B"],
    }
    rows = []
    for n, (case, acts) in enumerate(traces.items()):
        for i, act in enumerate(acts):
            ts = t0 + pd.Timedelta(seconds=37 * n + (i // 2) * 3601, microseconds=7 * i)
            rows.append({"case:concept:name": case, "concept:name": act, "time:timestamp": ts})
    return pd.DataFrame(rows)


def test_equal_to_pm4py_on_awkward_synthetic_log() -> None:
    frame = mining.prepare(_synthetic())
    for name, (reference, fast) in CALLS.items():
        want = reference(frame.copy())
        assert_identical(fast(frame), want, name)


def test_non_contiguous_cases_are_rejected() -> None:
    df = pd.DataFrame(
        {
            "case:concept:name": pd.Series(["a", "b", "a"], dtype="str"),
            "concept:name": pd.Series(["x", "y", "z"], dtype="str"),
            "time:timestamp": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True),
        }
    )
    with pytest.raises(ValueError, match="case-contiguous"):
        aggregates.discover_dfg(df)
