"""DFG, performance DFG, variants, case durations and activity counts without pm4py's sorts.

pm4py's pandas code sorts the whole frame by case id (string sorts of every row), shifts and
concatenates string columns and pivots. On a prepared frame (case blocks, time order within a
case) the same answers follow from integer codes. What keeps the results bit-identical:

* activity/case codes come from ``pd.factorize(sort=True)``, so code order is pandas' string
  order, the order pm4py's pivot/groupby/``np.unique`` put keys in;
* pm4py sorts by case id with a stable multi-key sort, so rows reach its ``groupby().mean()``
  in (case id, position in case) order: we hand pandas' own mean the same rows in that order;
* seconds use pm4py's formula ``86400*days + seconds + 1e-6*us + 1e-9*ns`` in the same order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

CASE = "case:concept:name"
ACTIVITY = "concept:name"
TIMESTAMP = "time:timestamp"

_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


class _Codes:
    """Integer view of a prepared frame: sorted-rank codes and case block boundaries."""

    def __init__(self, frame: pd.DataFrame) -> None:
        case_codes, case_names = pd.factorize(frame[CASE], sort=True)
        act_codes, act_names = pd.factorize(frame[ACTIVITY], sort=True)
        self.case = case_codes.astype(np.int64, copy=False)
        self.act = act_codes.astype(np.int64, copy=False)
        self.case_names: list[str] = case_names.tolist()
        self.act_names: list[str] = act_names.tolist()
        n = len(self.case)
        change = np.empty(n, dtype=bool)
        if n:
            change[0] = True
            np.not_equal(self.case[1:], self.case[:-1], out=change[1:])
        self.starts = np.flatnonzero(change)
        self.ends = np.append(self.starts[1:], n)  # exclusive
        if len(self.starts) != len(self.case_names):
            raise ValueError("frame is not case-contiguous; pass it through mining.prepare first")
        self.same_case = ~change[1:]  # pair (i, i+1) lies within one case


def _timestamps_ns(frame: pd.DataFrame) -> np.ndarray:
    """Timestamps as int64 nanoseconds (exact for the units pandas uses)."""
    series = frame[TIMESTAMP]
    values = series.array.asi8  # int64 in the column's own unit, tz-independent
    return values * _NS_PER_UNIT[series.dt.unit]


def _total_seconds(delta_ns: np.ndarray) -> np.ndarray:
    """pm4py's ``pandas_utils.get_total_seconds`` on timedelta components, same float order."""
    days, rest = np.divmod(delta_ns, 86_400 * 10**9)
    seconds, rest = np.divmod(rest, 10**9)
    micros, nanos = np.divmod(rest, 1_000)
    whole = 86400 * days + seconds  # int64, as pandas adds the int64 component series
    return whole + 10**-6 * micros + 10**-9 * nanos


def _first_last_counts(codes: _Codes, index: np.ndarray) -> dict[str, int]:
    """``Counter`` of activities at ``index`` (one row per case, in frame case order)."""
    names = codes.act_names
    return dict(Counter(names[c] for c in codes.act[index].tolist()))


def discover_dfg(
    frame: pd.DataFrame,
) -> tuple[dict[tuple[str, str], int], dict[str, int], dict[str, int]]:
    """``pm4py.discover_dfg(frame)``: (dfg, start activities, end activities).

    pm4py's dict comes from a pivot table: keys in (source, target) string order.
    """
    codes = _Codes(frame)
    n_act = len(codes.act_names)
    pairs = codes.act[:-1][codes.same_case] * n_act + codes.act[1:][codes.same_case]
    keys, counts = np.unique(pairs, return_counts=True)
    names = codes.act_names
    dfg = {
        (names[k // n_act], names[k % n_act]): c
        for k, c in zip(keys.tolist(), counts.tolist(), strict=True)
    }
    start = _first_last_counts(codes, codes.starts)
    end = _first_last_counts(codes, codes.ends - 1)
    return dfg, start, end


def _edge_seconds(frame: pd.DataFrame) -> tuple[list[str], int, np.ndarray, np.ndarray]:
    """Every directly-follows pair as (activity names, n, pair code, seconds), the pairs in the
    row order pm4py's stable sort by case id gives them: case id (string order), then position
    in the frame."""
    codes = _Codes(frame)
    n_act = len(codes.act_names)
    ts = _timestamps_ns(frame)
    within = codes.same_case
    pairs = codes.act[:-1][within] * n_act + codes.act[1:][within]
    seconds = _total_seconds(ts[1:][within] - ts[:-1][within])
    order = np.argsort(codes.case[:-1][within], kind="stable")
    return codes.act_names, n_act, pairs[order], seconds[order]


def discover_performance_dfg_mean(frame: pd.DataFrame) -> dict[tuple[str, str], float]:
    """``pm4py.discover_performance_dfg(frame, perf_aggregation_key="mean")[0]``.

    The mean is pandas' own groupby mean (compensated summation), fed the edge durations in
    the row order pm4py's stable sort by case id produces, so every bit matches.
    """
    names, n_act, pairs, seconds = _edge_seconds(frame)
    grouped = pd.Series(seconds).groupby(pairs, sort=True).mean()
    return {
        (names[k // n_act], names[k % n_act]): v
        for k, v in zip(grouped.index.tolist(), grouped.tolist(), strict=True)
    }


PERFORMANCE_STATS = ("mean", "median", "max")


def discover_performance_dfg_stats(
    frame: pd.DataFrame,
) -> dict[tuple[str, str], dict[str, float]]:
    """Mean, median and max of ``pm4py.discover_performance_dfg(frame,
    perf_aggregation_key="all")[0]`` (pandas' own groupby aggregations, same rows, same order)."""
    names, n_act, pairs, seconds = _edge_seconds(frame)
    stats = pd.Series(seconds).groupby(pairs, sort=True).agg(list(PERFORMANCE_STATS))
    columns = [list(stats[name].to_numpy()) for name in PERFORMANCE_STATS]  # np.float64, as pm4py
    return {
        (names[k // n_act], names[k % n_act]): dict(zip(PERFORMANCE_STATS, row, strict=True))
        for k, *row in zip(stats.index.tolist(), *columns, strict=True)
    }


def get_variants(frame: pd.DataFrame) -> dict[tuple[str, ...], int]:
    """``pm4py.get_variants(frame)``: variant tuple -> number of cases.

    pm4py walks cases in sorted case-id order (``np.unique``) and reads each case's rows as a
    contiguous slice, so keys appear in order of first occurrence in that walk.
    """
    codes = _Codes(frame)
    case_of_block = codes.case[codes.starts]
    order = np.argsort(case_of_block, kind="stable")
    acts = codes.act.tolist()
    counter: Counter[tuple[int, ...]] = Counter()
    for s, e in zip(codes.starts[order].tolist(), codes.ends[order].tolist(), strict=True):
        counter[tuple(acts[s:e])] += 1
    names = codes.act_names
    return {tuple(names[a] for a in variant): n for variant, n in counter.items()}


def get_all_case_durations(frame: pd.DataFrame) -> list[float]:
    """``pm4py.get_all_case_durations(frame)``: last minus first timestamp per case, sorted.

    pm4py takes each case's first and last row (``groupby.first/last``), not min/max.
    """
    codes = _Codes(frame)
    ts = _timestamps_ns(frame)
    seconds = _total_seconds(ts[codes.ends - 1] - ts[codes.starts])
    return np.sort(seconds, kind="stable").tolist()


def get_event_attribute_values(frame: pd.DataFrame) -> dict[str, int]:
    """``pm4py.get_event_attribute_values(frame, "concept:name")`` (pandas ``value_counts``).

    Most frequent first; ties keep order of first appearance, as ``value_counts`` does.
    Arrow's ``value_counts`` (first-appearance order) avoids pandas' hashing round trip.
    """
    column = frame[ACTIVITY].array
    if hasattr(column, "__arrow_array__"):
        counted = pc.value_counts(column.__arrow_array__())
        labels: list[Any] = counted.field("values").to_pylist()
        counts = counted.field("counts").to_numpy()
    else:
        codes, names = pd.factorize(frame[ACTIVITY])
        labels = names.tolist()
        counts = np.bincount(codes, minlength=len(labels))
    order = np.argsort(-counts, kind="stable")
    return {labels[i]: c for i, c in zip(order.tolist(), counts[order].tolist(), strict=True)}
