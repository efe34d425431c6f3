"""timeWindow keeps whole cases by their first event (pure pandas, real log)."""

from __future__ import annotations

import pm4py

from flows.steps.datasets import filter_time_window
from tests.conftest import DATA


def test_time_window_keeps_whole_cases_that_start_inside() -> None:
    log = pm4py.read_xes(
        str(DATA / "roadtraffic100traces.xes"), variant="iterparse", show_progress_bar=False
    )
    first = log.groupby("case:concept:name")["time:timestamp"].min()
    kept = filter_time_window(log, {"startDate": "2006-01-01", "endDate": "2006-12-31"})
    expected = set(first[(first >= "2006-01-01") & (first < "2007-01-01")].index)
    assert set(kept["case:concept:name"]) == expected
    assert expected, "the window must select some cases for the test to mean anything"
    # whole cases: every event of a kept case is kept
    assert len(kept) == int(log["case:concept:name"].isin(expected).sum())


def test_time_window_with_datetimes_is_exact() -> None:
    log = pm4py.read_xes(
        str(DATA / "roadtraffic100traces.xes"), variant="iterparse", show_progress_bar=False
    )
    first = log.groupby("case:concept:name")["time:timestamp"].min()
    cut = first.sort_values().iloc[10]
    kept = filter_time_window(log, {"startDate": cut.isoformat()})
    assert set(kept["case:concept:name"]) == set(first[first >= cut].index)
