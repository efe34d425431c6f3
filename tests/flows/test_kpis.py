"""flows.steps.kpis on real logs: case table, KPIs by attribute / period, root cause.

Reference values are recomputed here per case with plain Python; the root cause is checked
for internal consistency on real logs and for finding a cause planted in a real log.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.steps.eventlog import (
    XES_ACTIVITY,
    XES_CASE,
    XES_TIMESTAMP,
)
from flows.steps.kpis import (
    CASE_COLUMNS,
    MAX_CATEGORIES,
    case_table,
    kpis_by_attribute,
    kpis_by_period,
    root_cause,
)
from tests.conftest import canonical_events

DATA = Path(__file__).resolve().parents[1] / "data"
WEEK = 7 * 86400.0


@pytest.fixture(scope="module")
def receipt(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return canonical_events(tmp_path_factory.mktemp("kpis"), "receipt.csv")


@pytest.fixture(scope="module")
def sepsis(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return canonical_events(tmp_path_factory.mktemp("kpis"), "Sepsis Cases - Event Log.xes.gz")


@pytest.fixture(scope="module")
def receipt_cases(receipt: pd.DataFrame) -> pd.DataFrame:
    return case_table(receipt, WEEK)


def _json(value: object) -> object:
    """Round-trip through strict JSON: fails on NaN, numpy scalars, timestamps."""
    return json.loads(json.dumps(value, allow_nan=False))


# --------------------------------------------------------------------------------------------
# Case table


def test_case_table_matches_a_per_case_loop(receipt: pd.DataFrame) -> None:
    cases = case_table(receipt, WEEK)
    assert list(cases.columns[: len(CASE_COLUMNS)]) == list(CASE_COLUMNS)
    assert len(cases) == receipt[XES_CASE].nunique()
    assert list(cases["case_id"]) == list(pd.unique(receipt[XES_CASE]))  # first-appearance order

    row = cases.set_index("case_id")
    for case, events in receipt.groupby(XES_CASE):
        times = list(events[XES_TIMESTAMP])
        activities = list(events[XES_ACTIVITY])
        r = row.loc[case]
        assert r["start"] == min(times) and r["end"] == max(times)
        assert r["throughput_seconds"] == pytest.approx((max(times) - min(times)).total_seconds())
        assert r["events"] == len(events)
        assert bool(r["rework"]) == (len(set(activities)) < len(activities))
        assert bool(r["sla_breached"]) == (r["throughput_seconds"] > WEEK)
        assert r["case:channel"] == events["case:channel"].iloc[0]
    assert 0 < cases["sla_breached"].sum() < len(cases)
    assert 0 < cases["rework"].sum() < len(cases)


def test_case_attributes_are_the_columns_constant_within_cases(
    receipt_cases: pd.DataFrame, sepsis: pd.DataFrame
) -> None:
    attrs = set(receipt_cases.columns) - set(CASE_COLUMNS)
    assert {"case:channel", "case:department", "case:group", "case:responsible"} <= attrs
    # vary inside cases: event attributes, not case attributes
    assert not {"org:resource", "org:group", "concept:instance", XES_ACTIVITY} & attrs

    cases = case_table(sepsis)
    assert cases["sla_breached"].isna().all()  # no SLA given
    # Sepsis records Age etc. on the first event only: still one value per case.
    assert "Age" in cases.columns and "Diagnose" in cases.columns
    first_age = sepsis.dropna(subset=["Age"]).groupby(XES_CASE)["Age"].first()
    got = cases.set_index("case_id")["Age"].dropna()
    pd.testing.assert_series_equal(
        got.sort_index(), first_age.sort_index(), check_names=False, check_index_type=False
    )
    assert "CRP" not in cases.columns  # measured many times per case


# --------------------------------------------------------------------------------------------
# KPIs by attribute and by period


def test_kpis_by_attribute_recomputed_per_group(receipt_cases: pd.DataFrame) -> None:
    rows = _json(kpis_by_attribute(receipt_cases, "case:channel"))
    assert sum(r["cases"] for r in rows) == len(receipt_cases)
    assert [r["cases"] for r in rows] == sorted((r["cases"] for r in rows), reverse=True)
    for r in rows:
        group = receipt_cases[receipt_cases["case:channel"] == r["value"]]
        secs = group["throughput_seconds"].tolist()
        assert r["cases"] == len(group)
        assert r["meanThroughputSeconds"] == pytest.approx(statistics.fmean(secs))
        assert r["medianThroughputSeconds"] == pytest.approx(statistics.median(secs))
        assert r["reworkRate"] == pytest.approx(group["rework"].mean())
        assert r["slaBreachRate"] == pytest.approx((group["throughput_seconds"] > WEEK).mean())

    with pytest.raises(ValueError, match="'nope' is not a column of the case table"):
        kpis_by_attribute(receipt_cases, "nope")


def test_numeric_attributes_are_binned_and_missing_is_a_group(sepsis: pd.DataFrame) -> None:
    cases = case_table(sepsis, WEEK)
    cases.loc[cases.index[:7], "Age"] = np.nan
    rows = _json(kpis_by_attribute(cases, "Age"))
    bins = [r for r in rows if r["value"] is not None]
    assert 2 <= len(bins) <= 4
    assert bins[0]["value"].startswith("[")  # the first bin includes its lower edge
    assert all(r["value"].startswith("(") and r["value"].endswith("]") for r in bins[1:])
    assert sum(r["cases"] for r in rows) == len(cases)
    assert [r["cases"] for r in rows if r["value"] is None] == [7]
    low, high = (float(x) for x in bins[0]["value"].strip("[]").split(", "))
    inside = cases["Age"].between(low, high)
    assert bins[0]["cases"] == int(inside.sum())
    assert bins[0]["meanThroughputSeconds"] == pytest.approx(
        cases.loc[inside, "throughput_seconds"].mean()
    )


@pytest.mark.parametrize("freq", ["M", "W", "D"])
def test_kpis_by_period(receipt_cases: pd.DataFrame, freq: str) -> None:
    rows = _json(kpis_by_period(receipt_cases, freq))
    assert sum(r["cases"] for r in rows) == len(receipt_cases)
    starts = pd.to_datetime([r["periodStart"] for r in rows])
    step = {"M": None, "W": pd.Timedelta(days=7), "D": pd.Timedelta(days=1)}[freq]
    if step is not None:
        assert (starts[1:] - starts[:-1] == step).all()  # no gaps: empty periods included
    else:
        assert all(s.day == 1 for s in starts) and len(set(starts)) == len(starts)
    empty = [r for r in rows if r["cases"] == 0]
    assert all(r["meanThroughputSeconds"] is None for r in empty)

    start_utc = receipt_cases["start"].dt.tz_convert("UTC").dt.tz_localize(None)
    busiest = max(rows, key=lambda r: r["cases"])
    first = pd.Timestamp(busiest["periodStart"])
    end = {
        "M": first + pd.offsets.MonthBegin(1),
        "W": first + pd.Timedelta(days=7),
        "D": first + pd.Timedelta(days=1),
    }[freq]
    inside = receipt_cases[(start_utc >= first) & (start_utc < end)]
    assert busiest["cases"] == len(inside)
    assert busiest["medianThroughputSeconds"] == pytest.approx(
        inside["throughput_seconds"].median()
    )
    if freq == "W":
        assert busiest["period"] == f"{first.isocalendar()[0]}-W{first.isocalendar()[1]:02d}"


def test_kpis_by_period_rejects_unknown_freq(receipt_cases: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="freq must be one of"):
        kpis_by_period(receipt_cases, "Q")


# --------------------------------------------------------------------------------------------
# Root cause


@pytest.mark.parametrize("target", ["long", "sla"])
def test_root_cause_on_receipt_is_consistent_and_deterministic(
    receipt_cases: pd.DataFrame, target: str
) -> None:
    result = root_cause(receipt_cases, target)
    assert _json(result) == result
    assert result == root_cause(receipt_cases, target)  # deterministic

    secs = receipt_cases["throughput_seconds"]
    expected = (secs > secs.quantile(0.75)) if target == "long" else (secs > WEEK)
    assert result["target"] == target
    assert result["positives"] == int(expected.sum()) > 0
    assert result["cases"] == len(receipt_cases)
    assert 0.0 <= result["heldOutAccuracy"] <= 1.0

    imp = result["featureImportance"]
    assert imp and sum(f["importance"] for f in imp) == pytest.approx(1.0, abs=1e-5)
    assert [f["importance"] for f in imp] == sorted((f["importance"] for f in imp), reverse=True)
    # categorical attributes are capped: at most MAX_CATEGORIES values + "(other)" each
    responsible = [f for f in imp if f["feature"].startswith("case:responsible = ")]
    assert len(responsible) <= MAX_CATEGORIES + 1

    rules = result["rules"]
    # leaves partition the cases
    assert sum(r["cases"] for r in rules) == len(receipt_cases)
    assert sum(r["positives"] for r in rules) == result["positives"]
    assert sum(r["support"] for r in rules) == pytest.approx(1.0, abs=1e-5)
    assert [r["positiveRate"] for r in rules] == sorted(
        (r["positiveRate"] for r in rules), reverse=True
    )
    for r in rules:
        assert r["rule"].startswith("If ") and f"of {r['cases']} cases" in r["rule"]
        assert 1 <= len(r["conditions"]) <= 3  # max_depth=3


def test_root_cause_finds_a_cause_planted_in_a_real_log(receipt_cases: pd.DataFrame) -> None:
    """Make every 'Desk' case of receipt slow: the tree must point at the channel."""
    cases = receipt_cases.copy()
    desk = cases["case:channel"] == "Desk"
    assert 50 < desk.sum() < len(cases) * 0.25
    cases["throughput_seconds"] = np.where(desk, 1e9, 100.0)  # only Desk cases are long

    result = root_cause(cases, "long", max_depth=2)
    assert result["positives"] == int(desk.sum())
    assert result["featureImportance"][0]["feature"] == "case:channel = Desk"
    assert result["featureImportance"][0]["importance"] > 0.9
    top = result["rules"][0]
    assert "case:channel is Desk" in top["conditions"]
    assert top["positiveRate"] == 1.0 and top["positives"] == int(desk.sum())
    assert result["heldOutAccuracy"] == 1.0 > result["baselineAccuracy"]


def test_root_cause_uses_numeric_text_and_skips_outcomes(sepsis: pd.DataFrame) -> None:
    cases = case_table(sepsis, WEEK)
    cases["case_duration_seconds"] = cases["throughput_seconds"]  # an enrichment outcome
    result = root_cause(cases, "sla")
    features = [f["feature"] for f in result["featureImportance"]]
    assert all("case_duration_seconds" not in f for f in features)
    assert "Age" in features  # a number: used as a number, not one-hot
    assert not any(f.startswith("Age = ") for f in features)

    with pytest.raises(ValueError, match="needs a case table built with an SLA"):
        root_cause(case_table(sepsis), "sla")
    with pytest.raises(ValueError, match="target must be"):
        root_cause(cases, "slow")


def test_root_cause_without_attributes_explains_why(receipt: pd.DataFrame) -> None:
    keys_only = receipt[[XES_CASE, XES_ACTIVITY, XES_TIMESTAMP]]
    result = root_cause(case_table(keys_only), "long")
    assert result["note"] == "no usable case attributes"
    assert result["rules"] == [] and result["heldOutAccuracy"] is None
