"""flows.steps.analytics / conformance_extra against pm4py and independent recomputation.

Where pm4py has an equivalent, the expected value comes from pm4py on a copy of the same log
(``==`` for floats: same functions, same row order). Otherwise it is recomputed here with
plain Python loops over the events, independent of the pandas code under test.
"""

from __future__ import annotations

import json
import math
import statistics
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pm4py
import pytest
from pm4py.statistics.rework.cases.pandas import get as rework_cases
from pm4py.statistics.traces.generic.pandas import case_statistics

from flows.steps import analytics, conformance_extra, mining

DATA = Path(__file__).resolve().parents[1] / "data"
CASE, ACT, TS, RES = "case:concept:name", "concept:name", "time:timestamp", "org:resource"
LOGS = ["roadtraffic", "receipt", "sepsis"]


@pytest.fixture(scope="module")
def roadtraffic() -> pd.DataFrame:
    return pm4py.read_xes(
        str(DATA / "roadtraffic100traces.xes"), variant="iterparse", show_progress_bar=False
    )


@pytest.fixture(scope="module")
def receipt() -> pd.DataFrame:
    return pm4py.format_dataframe(
        pd.read_csv(DATA / "receipt.csv"), case_id=CASE, activity_key=ACT, timestamp_key=TS
    )


@pytest.fixture(scope="module")
def sepsis() -> pd.DataFrame:
    return pm4py.read_xes(
        str(DATA / "Sepsis Cases - Event Log.xes.gz"), variant="iterparse", show_progress_bar=False
    )


@pytest.fixture(scope="module")
def roadtraffic_model(roadtraffic: pd.DataFrame) -> mining.PetriModel:
    return mining.discover_model(roadtraffic)


def log(request: pytest.FixtureRequest, name: str) -> pd.DataFrame:
    return request.getfixturevalue(name)


def ordered_events(df: pd.DataFrame, *cols: str) -> dict[str, list[tuple[Any, ...]]]:
    """Events per case as (timestamp, *cols), sorted by timestamp then file position."""
    cases: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    rows = zip(df[CASE], df[TS], range(len(df)), *(df[c] for c in cols), strict=True)
    for case, ts, pos, *rest in rows:
        cases[case].append((ts, pos, *rest))
    return {
        c: [(e[0], *e[2:]) for e in sorted(evs, key=lambda e: e[:2])] for c, evs in cases.items()
    }


def seconds(delta: pd.Timedelta) -> float:
    return delta / pd.Timedelta(seconds=1)


def assert_plain_json(value: Any) -> None:
    if isinstance(value, dict):
        assert all(type(k) is str for k in value)
        for item in value.values():
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), (value, type(value))
        assert not (type(value) is float and not math.isfinite(value)), value


# --- performance ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOGS)
def test_bottlenecks_equal_pm4py(name: str, request: pytest.FixtureRequest) -> None:
    df = log(request, name)
    result = analytics.performance(df, ["waiting_time"])
    frequency, _, _ = pm4py.discover_dfg(df.copy())
    agg = {
        key: pm4py.discover_performance_dfg(df.copy(), perf_aggregation_key=key)[0]
        for key in ("mean", "median", "max")
    }
    got = result["bottlenecks"]
    assert len(got) == min(10, len(frequency))
    for edge in got:
        key = (edge["source"], edge["target"])
        assert edge["frequency"] == frequency[key]
        assert edge["meanSeconds"] == agg["mean"][key]
        assert edge["medianSeconds"] == agg["median"][key]
        assert edge["maxSeconds"] == agg["max"][key]
    slowest = sorted(agg["mean"].values(), reverse=True)[: len(got)]
    assert [e["meanSeconds"] for e in got] == slowest
    assert "cycleTime" not in result and "resourceUtilization" not in result
    assert_plain_json(result)


@pytest.mark.parametrize("name", LOGS)
def test_duration_histogram_bins_pm4py_durations(name: str, request: pytest.FixtureRequest) -> None:
    df = log(request, name)
    bins = analytics.performance(df, ["waiting_time"])["durationHistogram"]
    durations = pm4py.get_all_case_durations(df.copy())
    assert sum(b["cases"] for b in bins) == len(durations)
    assert bins[0]["fromSeconds"] == min(durations) and bins[-1]["toSeconds"] == max(durations)
    assert 1 < len(bins) <= 21
    for i, b in enumerate(bins):
        last = i == len(bins) - 1
        inside = [d for d in durations if b["fromSeconds"] <= d and (d < b["toSeconds"] or last)]
        assert b["cases"] == len(inside)
        assert last or b["toSeconds"] == bins[i + 1]["fromSeconds"]
    # Documented rule: geometric bins when max > 1000 x the smallest positive duration.
    widths = [b["toSeconds"] - b["fromSeconds"] for b in bins]
    if max(durations) > 1000 * min(d for d in durations if d > 0):
        ratios = [b["toSeconds"] / b["fromSeconds"] for b in bins if b["fromSeconds"] > 0]
        assert max(ratios) == pytest.approx(min(ratios), rel=1e-6)
        assert widths[-1] > 100 * widths[-len(ratios)]
    else:
        assert max(widths) == pytest.approx(min(widths), rel=1e-6)


@pytest.mark.parametrize("name", LOGS)
def test_throughput_per_month(name: str, request: pytest.FixtureRequest) -> None:
    df = log(request, name)
    months = analytics.performance(df, ["waiting_time"])["throughput"]
    described = case_statistics.get_cases_description(df.copy())
    started: Counter[str] = Counter()
    completed: dict[str, list[float]] = defaultdict(list)
    for case, events in ordered_events(df).items():
        started[events[0][0].strftime("%Y-%m")] += 1
        completed[events[-1][0].strftime("%Y-%m")].append(described[case]["caseDuration"])
    per_month = Counter(ts.strftime("%Y-%m") for ts in df[TS].dt.tz_convert("UTC"))
    periods = [m["period"] for m in months]
    assert periods[0] == min(per_month) and periods[-1] == max(per_month)
    as_index = [int(p[:4]) * 12 + int(p[5:]) for p in periods]
    assert as_index == list(range(as_index[0], as_index[0] + len(as_index)))  # no gaps
    for m in months:
        p = m["period"]
        assert m["casesStarted"] == started[p]
        assert m["casesCompleted"] == len(completed[p])
        assert m["events"] == per_month[p]
        if completed[p]:
            want = statistics.median(completed[p])
            assert m["medianCaseDurationSeconds"] == pytest.approx(want, rel=1e-12)
        else:
            assert m["medianCaseDurationSeconds"] is None
    assert sum(m["casesStarted"] for m in months) == df[CASE].nunique()


@pytest.mark.parametrize("name", ["roadtraffic", "receipt"])
def test_cycle_time_matches_performance_dfg(name: str, request: pytest.FixtureRequest) -> None:
    df = log(request, name)
    rows = analytics.performance(df, ["cycle_time"])["cycleTime"]
    frequency, _, _ = pm4py.discover_dfg(df.copy())
    mean, _, _ = pm4py.discover_performance_dfg(df.copy(), perf_aggregation_key="mean")
    gaps: dict[str, list[float]] = defaultdict(list)
    for events in ordered_events(df, ACT).values():
        for (t0, _), (t1, act) in zip(events, events[1:], strict=False):
            gaps[act].append(seconds(t1 - t0))
    assert {r["activity"] for r in rows} == set(gaps)
    for r in rows:
        incoming = [(n, mean[e]) for e, n in frequency.items() if e[1] == r["activity"]]
        assert r["events"] == sum(n for n, _ in incoming) == len(gaps[r["activity"]])
        weighted = sum(n * m for n, m in incoming) / r["events"]
        assert r["meanSeconds"] == pytest.approx(weighted, rel=1e-9)
        assert r["medianSeconds"] == pytest.approx(statistics.median(gaps[r["activity"]]))
    assert [r["meanSeconds"] for r in rows] == sorted(
        (r["meanSeconds"] for r in rows), reverse=True
    )


@pytest.mark.parametrize("name", LOGS)
def test_resource_utilization(name: str, request: pytest.FixtureRequest) -> None:
    df = log(request, name)
    result = analytics.performance(df, [])
    if RES not in df.columns or df[RES].isna().all():
        assert "resourceUtilization" not in result
        return
    events: Counter[str] = Counter()
    cases: dict[str, set[str]] = defaultdict(set)
    days: dict[str, set[Any]] = defaultdict(set)
    for case, ts, res in zip(df[CASE], df[TS], df[RES], strict=True):
        if isinstance(res, str):
            events[res] += 1
            cases[res].add(case)
            days[res].add(ts.tz_convert("UTC").date())
    got = result["resourceUtilization"]
    assert {r["resource"] for r in got} == set(events)
    for r in got:
        res = r["resource"]
        assert (r["events"], r["cases"], r["activeDays"]) == (
            events[res],
            len(cases[res]),
            len(days[res]),
        )
        assert r["eventsPerActiveDay"] == events[res] / len(days[res])


def test_unknown_metric_is_rejected(roadtraffic: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown performance metric"):
        analytics.performance(roadtraffic, ["throughput_time"])


# --- rework, resources ------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOGS)
def test_rework_equals_pm4py(name: str, request: pytest.FixtureRequest) -> None:
    df = log(request, name)
    result = analytics.rework(df)
    want = pm4py.get_rework_cases_per_activity(df.copy())
    assert {r["activity"]: r["cases"] for r in result["byActivity"]} == want
    per_case = rework_cases.apply(df.copy())
    with_rework = sum(1 for c in per_case.values() if c["rework"] > 0)
    assert result["cases"] == with_rework
    assert result["share"] == with_rework / len(per_case)
    extra: Counter[str] = Counter()
    for (_, act), n in Counter(zip(df[CASE], df[ACT], strict=True)).items():
        extra[act] += n - 1
    assert {r["activity"]: r["repetitions"] for r in result["byActivity"]} == {
        a: n for a, n in extra.items() if n
    }
    assert [r["cases"] for r in result["byActivity"]] == sorted(want.values(), reverse=True)


def test_resources_consistent_with_pm4py_handover(receipt: pd.DataFrame) -> None:
    """pm4py (beta=0) reports count / all consecutive resource pairs, self-pairs included."""
    result = analytics.resources(receipt)
    assert result is not None
    known = receipt[receipt[RES].notna()]
    ordered = known.sort_values([CASE, TS], kind="stable")
    net = pm4py.discover_handover_of_work_network(ordered.copy(), beta=0)
    pairs = len(known) - known[CASE].nunique()
    want = {k: round(v * pairs) for k, v in net.connections.items() if k[0] != k[1]}
    for (source, target), share in net.connections.items():
        assert share * pairs == pytest.approx(round(share * pairs), abs=1e-6)
        assert source == target or want[(source, target)] >= 1
    got = {(h["source"], h["target"]): h["count"] for h in result["handover"]}
    assert got == want
    counts = [h["count"] for h in result["handover"]]
    assert counts == sorted(counts, reverse=True)
    workload = pm4py.get_event_attribute_values(receipt.copy(), RES)
    assert {w["resource"]: w["events"] for w in result["workload"]} == workload
    per_resource = known.groupby(RES)[CASE].nunique().to_dict()
    assert {w["resource"]: w["cases"] for w in result["workload"]} == per_resource


def test_resources_missing_or_sparse(roadtraffic: pd.DataFrame, sepsis: pd.DataFrame) -> None:
    assert analytics.resources(sepsis) is None  # no org:resource column
    assert analytics.resources(roadtraffic.assign(**{RES: None})) is None
    # Road traffic: one resourced event per case, so there is work but no handover.
    result = analytics.resources(roadtraffic)
    assert result is not None and result["handover"] == []
    assert sum(w["events"] for w in result["workload"]) == roadtraffic[RES].notna().sum()


# --- anomalies --------------------------------------------------------------------------------


def synthetic_log(n_cases: int = 300) -> pd.DataFrame:
    """Regular cases (A,B,C or A,C,B; 1-3 h) plus one planted case: 60 days, 30 events."""
    rng = np.random.default_rng(42)
    start = pd.Timestamp("2024-01-01", tz="UTC")
    rows = []
    for i in range(n_cases - 1):
        t0 = start + pd.Timedelta(hours=i)
        path = "ABC" if i % 2 else "ACB"
        steps = np.sort(rng.uniform(1, 3, size=2))
        for act, h in zip(path, [0.0, *steps], strict=True):
            rows.append((f"c{i:03d}", act, t0 + pd.Timedelta(hours=float(h))))
    for k in range(30):
        rows.append(("planted", "ABCD"[k % 4], start + pd.Timedelta(days=2 * k)))
    return pd.DataFrame(rows, columns=[CASE, ACT, TS])


def test_anomalies_find_the_planted_case() -> None:
    df = synthetic_log()
    result = analytics.anomalies(df)
    assert result["count"] == 1
    (case,) = result["cases"]
    assert case["caseId"] == "planted" and case["events"] == 30
    assert case["durationSeconds"] == 58 * 86400
    assert len(case["reasons"]) == 3
    duration, events, unique = case["reasons"]
    assert "58.0 days" in duration and "Q3 + 3·IQR" in duration
    assert "30 events" in events and "unique variant" in unique
    durations = pm4py.get_all_case_durations(df.copy())
    q1, q3 = np.percentile(durations, [25, 75])
    assert result["thresholds"]["durationSeconds"]["threshold"] == q3 + 3 * (q3 - q1)
    assert result["thresholds"]["uniqueVariant"]["applied"] is True
    # Regular cases all have 3 events: IQR 0, so the documented minimum spread of 1 applies.
    assert result["thresholds"]["events"] == {"q1": 3, "q3": 3, "iqr": 0, "threshold": 6}
    variants = mining.discover_variants(df)
    assert analytics.anomalies(df, variants) == result
    assert_plain_json(result)


def test_anomalies_rules_on_real_logs(receipt: pd.DataFrame, sepsis: pd.DataFrame) -> None:
    for df in (receipt, sepsis):
        result = analytics.anomalies(df)
        durations = pm4py.get_all_case_durations(df.copy())
        q1, q3 = np.percentile(durations, [25, 75])
        limit = q3 + 3 * (q3 - q1)
        assert result["thresholds"]["durationSeconds"]["threshold"] == limit
        long_cases = sum(1 for d in durations if d > limit)
        flagged = [c for c in result["cases"] if any("duration" in r for r in c["reasons"])]
        assert len(flagged) == min(long_cases, 200) or result["count"] > 200
        assert long_cases <= result["count"]
        keys = [(-len(c["reasons"]), -c["durationSeconds"]) for c in result["cases"]]
        assert keys == sorted(keys)
    # Sepsis: most cases follow a unique path, so uniqueness is not an anomaly there.
    assert result["thresholds"]["uniqueVariant"]["applied"] is False


# --- insights ---------------------------------------------------------------------------------


def full_result(df: pd.DataFrame) -> dict[str, Any]:
    return {
        **mining.analyse(df),
        "performance": analytics.performance(df, []),
        "rework": analytics.rework(df),
        "resources": analytics.resources(df),
        "anomalies": analytics.anomalies(df),
    }


def test_insights_state_the_numbers(roadtraffic: pd.DataFrame) -> None:
    result = full_result(roadtraffic)
    found = analytics.insights(result)
    assert 3 <= len(found) <= 8
    assert all(set(f) == {"title", "detail", "metric", "value"} for f in found)
    assert_plain_json(found)
    by_metric = {f["metric"]: f for f in found}

    counts = [v["count"] for v in result["variants"]]
    top3 = sum(counts[:3]) / sum(counts)
    assert by_metric["top3VariantShare"]["value"] == top3
    assert f"{top3 * 100:.0f}%" in by_metric["top3VariantShare"]["title"]

    fit = by_metric["logFitness"]
    assert f"{result['fitness']['logFitness'] * 100:.1f}%" in fit["title"]
    assert f"{result['precision']:.2f}" in fit["title"]

    rw = by_metric["reworkShare"]
    assert rw["value"] == result["rework"]["share"]
    assert f"{result['rework']['share'] * 100:.0f}%" in rw["title"]
    assert result["rework"]["byActivity"][0]["activity"] in rw["title"]

    slow = by_metric["bottleneckMeanSeconds"]
    days = slow["value"] / 86400
    assert f"{days:.1f} days" in slow["title"]
    assert slow["value"] in {e["meanSeconds"] for e in result["dfg"]}


def test_insights_skip_missing_parts() -> None:
    assert analytics.insights({}) == []
    only = analytics.insights({"variants": [{"activities": ["a"], "count": 3}]})
    assert len(only) == 1 and "100%" in only[0]["title"]


# --- data quality -----------------------------------------------------------------------------


def messy_log() -> pd.DataFrame:
    t = pd.Timestamp("2024-03-01 08:00", tz="UTC")
    h = pd.Timedelta(hours=1)
    rows = [
        ("1", "A", t, "ann"),
        ("1", "B", t + h, "bob"),
        ("1", "B", t + h, "bob"),  # duplicate of the previous event
        ("1", "C", t + 2 * h, "ann"),
        ("2", "A", t + 3 * h, "ann"),
        ("2", "C", t + 5 * h, "bob"),
        ("2", "B", t + 4 * h, "bob"),  # out of order: earlier than the previous event
        ("2", "   ", t + 6 * h, "ann"),  # empty activity
        ("3", "A", t, "ann"),
        ("3", "B", t + h, "ann"),  # same as case 1's B but another resource: not a duplicate
        ("3", "Z", t + 2 * h, "bob"),  # occurs once in the log
    ]
    return pd.DataFrame(rows, columns=[CASE, ACT, TS, RES])


def test_data_quality_counts_on_synthetic_log() -> None:
    df = messy_log()
    checks = {"validateTimestamps": True, "checkDuplicates": True, "validateActivities": True}
    cleaned, report = analytics.data_quality(df, checks)
    assert report["dataValidation"] == {
        "totalRecords": 11,
        "validRecords": 9,
        "duplicatesRemoved": 1,
        "invalidRecords": 1,
    }
    warnings = {w["type"]: w for w in report["warnings"]}
    assert set(warnings) == {"invalidActivity", "duplicateEvents", "outOfOrder", "rareActivity"}
    assert warnings["outOfOrder"]["count"] == 1
    assert warnings["rareActivity"]["count"] == 1 and "'Z'" in warnings["rareActivity"]["message"]
    assert len(cleaned) == 9 and cleaned[ACT].str.strip().ne("").all()
    assert not cleaned.duplicated([CASE, ACT, TS, RES]).any()
    assert len(df) == 11  # input untouched
    assert_plain_json(report)

    only_dups, report = analytics.data_quality(df, {"checkDuplicates": True})
    assert len(only_dups) == 10 and report["dataValidation"]["invalidRecords"] == 0
    assert [w["type"] for w in report["warnings"]] == ["duplicateEvents"]


def test_data_quality_timestamp_bounds() -> None:
    df = messy_log()
    df.loc[0, TS] = pd.Timestamp("1970-01-01", tz="UTC")
    df.loc[10, TS] = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=400)
    _, report = analytics.data_quality(df, {"validateTimestamps": True})
    counts = {w["type"]: w["count"] for w in report["warnings"]}
    assert counts == {"outOfOrder": 1, "futureTimestamp": 1, "implausibleTimestamp": 1}


def test_data_quality_all_off_leaves_log_unchanged(receipt: pd.DataFrame) -> None:
    for checks in ({}, dict.fromkeys(("validateTimestamps", "checkDuplicates"), False)):
        frame, report = analytics.data_quality(receipt, checks)
        assert frame is receipt
        assert report["warnings"] == []
        assert report["dataValidation"]["validRecords"] == len(receipt)
    duplicates = len(receipt) - len(
        set(zip(receipt[CASE], receipt[ACT], receipt[TS], receipt[RES], strict=True))
    )
    frame, report = analytics.data_quality(receipt, {"checkDuplicates": True})
    assert report["dataValidation"]["duplicatesRemoved"] == duplicates == len(receipt) - len(frame)


# --- BPMN, alignments -------------------------------------------------------------------------


def test_bpmn_export(roadtraffic_model: mining.PetriModel, tmp_path: Path) -> None:
    data = conformance_extra.to_bpmn_bytes(roadtraffic_model)
    root = ET.fromstring(data)
    ns = {"bpmn": "http://www.omg.org/spec/BPMN/20100524/MODEL"}
    tasks = {t.get("name") for t in root.iter(f"{{{ns['bpmn']}}}task")}
    labels = {t.label for t in roadtraffic_model.net.transitions if t.label is not None}
    assert tasks == labels
    path = tmp_path / "model.bpmn"
    path.write_bytes(data)
    bpmn = pm4py.read_bpmn(str(path))
    net, im, fm = pm4py.convert_to_petri_net(bpmn)
    assert {t.label for t in net.transitions if t.label} == labels


def test_alignments_equal_pm4py(
    roadtraffic: pd.DataFrame, roadtraffic_model: mining.PetriModel
) -> None:
    m = roadtraffic_model
    result = conformance_extra.alignments(roadtraffic, m, max_cases=100)
    want = pm4py.fitness_alignments(roadtraffic.copy(), m.net, m.initial_marking, m.final_marking)
    assert result == {
        "computed": True,
        "averageTraceFitness": want["average_trace_fitness"],
        "logFitness": want["log_fitness"],
        "percentageFitTraces": want["percentage_of_fitting_traces"],
    }
    skipped = conformance_extra.alignments(roadtraffic, m, max_cases=99)
    assert skipped["computed"] is False
    assert skipped["reason"] == "log has 100 cases, more than alignmentsMaxCases=99"


# --- purity -----------------------------------------------------------------------------------


def test_inputs_are_not_mutated_and_outputs_are_json(receipt: pd.DataFrame) -> None:
    before, attrs = receipt.copy(), dict(receipt.attrs)
    outputs = [
        analytics.performance(receipt, []),
        analytics.rework(receipt),
        analytics.resources(receipt),
        analytics.anomalies(receipt),
        analytics.data_quality(receipt, dict.fromkeys(("validateActivities",), True))[1],
    ]
    pd.testing.assert_frame_equal(receipt, before)
    assert receipt.attrs == attrs
    for out in outputs:
        assert_plain_json(out)
        assert json.loads(json.dumps(out, allow_nan=False)) == out
