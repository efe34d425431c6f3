"""flows.steps.enrichment on the real logs in tests/data, with independent reference answers.

References are computed the slow, obvious way (Python loops per case, a minute-by-minute
walk for working time) so that the vectorised code is checked against a different method.
"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from flows.steps.csv_safety import csv_safe
from flows.steps.enrichment import (
    CALENDAR_COLUMNS,
    DERIVED_COLUMNS,
    WorkingCalendar,
    enrich,
    repair_timestamps,
)
from flows.steps.eventlog import (
    XES_ACTIVITY,
    XES_CASE,
    XES_RESOURCE,
    XES_TIMESTAMP,
    ordered,
)
from tests.conftest import canonical_events

DATA = Path(__file__).resolve().parents[1] / "data"
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@pytest.fixture(scope="module")
def receipt(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return canonical_events(tmp_path_factory.mktemp("enrich"), "receipt.csv")


@pytest.fixture(scope="module")
def road(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return canonical_events(tmp_path_factory.mktemp("enrich"), "roadtraffic100traces.xes")


# --------------------------------------------------------------------------------------------
# Derived columns


def test_derived_columns_match_a_per_case_loop(receipt: pd.DataFrame) -> None:
    before = receipt.copy()
    out, report = enrich(receipt, {})

    pd.testing.assert_frame_equal(receipt, before)  # input untouched
    assert list(out.index) == list(ordered(receipt).index)  # pm4py order, file positions kept
    assert report == {
        "warnings": [],
        "duplicatesRemoved": 0,
        "timestampsRepaired": 0,
        "timestampsInferred": 0,
        "rowsIn": len(receipt),
        "rowsOut": len(receipt),
    }
    assert set(DERIVED_COLUMNS) <= set(out.columns)
    assert not set(CALENDAR_COLUMNS) & set(out.columns)

    expected: dict[str, list] = {c: [] for c in DERIVED_COLUMNS}
    for _, events in ordered(receipt).groupby(XES_CASE, sort=False):
        times = list(events[XES_TIMESTAMP])
        seen: set[str] = set()
        for i, (activity, ts) in enumerate(zip(events[XES_ACTIVITY], times, strict=True)):
            expected["event_index"].append(i)
            expected["case_duration_seconds"].append((max(times) - min(times)).total_seconds())
            expected["seconds_since_previous"].append(
                (ts - times[i - 1]).total_seconds() if i else np.nan
            )
            expected["seconds_until_next"].append(
                (times[i + 1] - ts).total_seconds() if i + 1 < len(times) else np.nan
            )
            expected["is_rework"].append(activity in seen)
            seen.add(activity)
            expected["weekday"].append(WEEKDAYS[ts.weekday()])
            expected["hour"].append(ts.hour)
    for col, values in expected.items():
        got = out[col].tolist()
        if col.startswith("seconds") or col.startswith("case_"):
            np.testing.assert_allclose(got, values, rtol=0, atol=1e-6, err_msg=col)
        else:
            assert got == values, col
    assert out["is_rework"].any() and not out["is_rework"].all()


# --------------------------------------------------------------------------------------------
# Working calendar


def _brute_force_working_seconds(a: datetime, b: datetime, cal: dict) -> float:
    """Count the minutes [m, m+1) between a and b whose local start is inside working hours."""
    tz = ZoneInfo(cal.get("timezone", "UTC"))
    days = set(cal.get("days", [0, 1, 2, 3, 4]))
    h0, m0 = map(int, cal.get("start", "09:00").split(":"))
    h1, m1 = map(int, cal.get("end", "17:00").split(":"))
    start, end = h0 * 60 + m0, h1 * 60 + m1
    minutes = 0
    t = a
    while t < b:
        local = t.astimezone(tz)
        minute_of_day = local.hour * 60 + local.minute
        if local.weekday() in days and start <= minute_of_day < end:
            minutes += 1
        t += timedelta(minutes=1)
    return minutes * 60.0


def _synthetic_minute_log(seed: int, cases: int = 12) -> pd.DataFrame:
    """Cases of 2-6 events at whole minutes around the 2021 spring DST change (28 March)."""
    rng = np.random.default_rng(seed)
    origin = datetime(2021, 3, 24, 6, 0, tzinfo=UTC)
    rows = []
    for c in range(cases):
        offsets = np.sort(rng.integers(0, 9 * 24 * 60, size=rng.integers(2, 7)))
        for k, minute in enumerate(offsets):
            ts = origin + timedelta(minutes=int(minute))
            rows.append({XES_CASE: f"c{c}", XES_ACTIVITY: f"a{k % 3}", XES_TIMESTAMP: ts})
    df = pd.DataFrame(rows)
    df[XES_TIMESTAMP] = pd.to_datetime(df[XES_TIMESTAMP], utc=True).dt.as_unit("us")
    return df


@pytest.mark.parametrize(
    "calendar",
    [
        {},  # defaults: Mon-Fri 09:00-17:00 UTC
        {"days": [0, 2, 5], "start": "08:30", "end": "12:15"},
        {
            "days": [0, 1, 2, 3, 4, 5, 6],
            "start": "09:00",
            "end": "17:00",
            "timezone": "Europe/Amsterdam",
        },
        {"days": [6], "start": "00:00", "end": "24:00", "timezone": "America/New_York"},
    ],
)
def test_working_time_matches_minute_by_minute_reference(calendar: dict) -> None:
    df = _synthetic_minute_log(seed=len(str(calendar)))
    out, _ = enrich(df, {"workingCalendar": calendar})
    checked = 0
    for _, events in out.groupby(XES_CASE, sort=False):
        times = [t.to_pydatetime() for t in events[XES_TIMESTAMP]]
        got = events["working_seconds_since_previous"].tolist()
        assert np.isnan(got[0])
        for i in range(1, len(times)):
            assert got[i] == _brute_force_working_seconds(times[i - 1], times[i], calendar)
            checked += 1
        total = _brute_force_working_seconds(times[0], times[-1], calendar)
        assert (events["case_working_duration_seconds"] == total).all()
    assert checked > 20


def test_all_day_calendar_equals_elapsed_time(receipt: pd.DataFrame) -> None:
    full = {"days": list(range(7)), "start": "00:00", "end": "24:00"}
    out, _ = enrich(receipt, {"workingCalendar": full})
    np.testing.assert_allclose(
        out["working_seconds_since_previous"], out["seconds_since_previous"], atol=1e-6
    )
    np.testing.assert_allclose(
        out["case_working_duration_seconds"], out["case_duration_seconds"], atol=1e-6
    )
    office, _ = enrich(receipt, {"workingCalendar": {}})
    assert (office["case_working_duration_seconds"] <= office["case_duration_seconds"]).all()
    assert (office["case_working_duration_seconds"] < office["case_duration_seconds"]).any()


def test_working_time_is_fast_on_a_bpic_sized_log(receipt: pd.DataFrame) -> None:
    """31 renamed copies of receipt = 266k events, the size of BPIC 2012 (262k)."""
    copies = [receipt.assign(**{XES_CASE: receipt[XES_CASE] + f"-{k}"}) for k in range(31)]
    big = pd.concat(copies, ignore_index=True)
    assert len(big) > 262_000
    started = time.perf_counter()
    out, report = enrich(
        big,
        {"workingCalendar": {"timezone": "Europe/Amsterdam"}, "removeDuplicates": True},
    )
    elapsed = time.perf_counter() - started
    assert report["rowsOut"] == len(big) - report["duplicatesRemoved"]
    assert out["working_seconds_since_previous"].notna().sum() > 200_000
    assert elapsed < 10, f"enrich with calendar took {elapsed:.1f}s on {len(big)} events"


@pytest.mark.parametrize(
    "calendar, message",
    [
        ({"days": [7]}, "weekday numbers"),
        ({"days": []}, "non-empty list"),
        ({"start": "17:00", "end": "09:00"}, "must be after start"),
        ({"start": "9h"}, "workingCalendar.start"),
        ({"timezone": "Mars/Olympus"}, "IANA"),
        ({"hours": 8}, "unknown key"),
        ("9-5", "must be an object"),
    ],
)
def test_invalid_calendars_are_rejected(calendar: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkingCalendar.from_option(calendar)


# --------------------------------------------------------------------------------------------
# Duplicates


def test_remove_duplicates_drops_exact_copies_only(road: pd.DataFrame) -> None:
    rng = np.random.default_rng(7)
    copies = road.iloc[rng.choice(len(road), size=25, replace=False)]
    # Same case/activity/time but another resource: a different event, must stay.
    other_resource = road.iloc[[0, 1]].assign(**{XES_RESOURCE: "someone else"})
    dirty = pd.concat([road, copies, other_resource], ignore_index=True)
    dirty = dirty.sample(frac=1, random_state=3).reset_index(drop=True)

    out, report = enrich(dirty, {"removeDuplicates": True})
    assert report["duplicatesRemoved"] == 25
    assert report["rowsIn"] == len(road) + 27 and report["rowsOut"] == len(road) + 2
    assert [w["type"] for w in report["warnings"]] == ["duplicateEvents"]
    assert report["warnings"][0]["count"] == 25
    keys = [XES_CASE, XES_ACTIVITY, XES_TIMESTAMP, XES_RESOURCE]
    assert not out.duplicated(subset=keys).any()
    assert (out[XES_RESOURCE] == "someone else").sum() == 2

    kept, report = enrich(dirty, {"removeDuplicates": False})
    assert report["duplicatesRemoved"] == 0 and len(kept) == len(dirty)


# --------------------------------------------------------------------------------------------
# Timestamp repair


def _format(ts: pd.Timestamp, fmt: str) -> str:
    if fmt == "iso":
        return ts.tz_convert("Europe/Amsterdam").isoformat()
    if fmt == "dotted":
        return ts.strftime("%d.%m.%Y %H:%M")
    if fmt == "slashed":
        return ts.strftime("%m/%d/%Y")
    if fmt == "epoch":
        return str(int(ts.timestamp()))
    raise AssertionError(fmt)


def _truncate(ts: pd.Timestamp, fmt: str) -> pd.Timestamp:
    return {
        "iso": ts,
        "dotted": ts.floor("min"),
        "slashed": ts.floor("D"),
        "epoch": ts.floor("s"),
    }[fmt]


def test_repair_parses_mixed_raw_strings_and_interpolates_gaps(receipt: pd.DataFrame) -> None:
    log = receipt.iloc[:3000].reset_index(drop=True)
    truth = log[XES_TIMESTAMP]
    rng = np.random.default_rng(11)
    formats = rng.choice(["iso", "dotted", "slashed", "epoch"], size=len(log))
    raw = [_format(ts, f) for ts, f in zip(truth, formats, strict=True)]
    blank = rng.random(len(log)) < 0.08
    garbage = ~blank & (rng.random(len(log)) < 0.01)
    raw = [
        ("" if (i % 2) else None) if blank[i] else ("31.02.2011 10:00" if garbage[i] else v)
        for i, v in enumerate(raw)
    ]
    values = pd.Series(raw, dtype=object)

    repaired, report = repair_timestamps(values, log[XES_CASE])

    assert str(repaired.dtype) == "datetime64[us, UTC]"
    known = ~blank & ~garbage
    for fmt in ("iso", "dotted", "slashed", "epoch"):
        rows = np.flatnonzero(known & (formats == fmt))
        expected = [_truncate(truth[i], fmt) for i in rows]
        assert list(repaired.iloc[rows]) == expected, fmt
    name = {"iso": "iso8601", "dotted": "dd.mm.yyyy", "slashed": "mm/dd/yyyy", "epoch": "epoch"}
    for fmt, key in name.items():
        assert report["parsed"][key] == int((known & (formats == fmt)).sum())
    assert report["repaired"] == int((known & (formats != "iso")).sum())
    assert report["missing"] == int(blank.sum())
    assert report["unparseable"] == int(garbage.sum()) > 0

    # Reference interpolation: per case in row order, by position between known neighbours.
    gaps = ~known
    parsed = repaired.copy()
    expected_fill: dict[int, pd.Timestamp] = {}
    uninferable = 0
    for _, idx in log.groupby(XES_CASE, sort=False).indices.items():
        known_pos = [p for p, i in enumerate(idx) if not gaps[i]]
        for p, i in enumerate(idx):
            if not gaps[i]:
                continue
            before = [k for k in known_pos if k < p]
            after = [k for k in known_pos if k > p]
            if not before and not after:
                uninferable += 1
                continue
            if not before or not after:
                expected_fill[i] = parsed.iloc[idx[(before or after)[-1 if before else 0]]]
                continue
            p0, p1 = before[-1], after[0]
            t0, t1 = parsed.iloc[idx[p0]], parsed.iloc[idx[p1]]
            expected_fill[i] = t0 + (t1 - t0) * ((p - p0) / (p1 - p0))
    assert report["inferred"] == len(expected_fill) > 100
    assert report["uninferable"] == uninferable
    for i, ts in expected_fill.items():
        assert abs((repaired.iloc[i] - ts).total_seconds()) <= 2e-6, i
    kinds = {w["type"]: w["count"] for w in report["warnings"]}
    assert kinds["timestampInferred"] == len(expected_fill)
    assert kinds["timestampUnparseable"] == int(garbage.sum())
    assert kinds["timestampRepaired"] == report["repaired"]


def test_repair_edge_cases_and_numbers() -> None:
    values = pd.Series(
        [
            None,
            "2020-01-01T10:00:00Z",
            "",
            "2020-01-01T12:00:00Z",
            None,  # case a
            1577880000,
            1577880000123.0,
            "1577880000.5",  # case b (epochs)
            "garbage",
            None,
        ],  # case c: none valid
        dtype=object,
    )
    cases = pd.Series(list("aaaaabbbcc"))
    got, report = repair_timestamps(values, cases)
    ts = pd.Timestamp
    assert got.iloc[0] == ts("2020-01-01T10:00:00Z")  # copied from the only neighbour
    assert got.iloc[2] == ts("2020-01-01T11:00:00Z")  # halfway
    assert got.iloc[4] == ts("2020-01-01T12:00:00Z")
    assert got.iloc[5] == ts("2020-01-01T12:00:00Z")
    assert got.iloc[6] == ts("2020-01-01T12:00:00.123Z")  # >= 1e11: milliseconds
    assert got.iloc[7] == ts("2020-01-01T12:00:00.5Z")
    assert got.iloc[8:].isna().all()
    assert report["inferred"] == 3 and report["uninferable"] == 2
    assert report["parsed"]["epoch"] == 3
    with pytest.raises(ValueError, match="one case id per"):
        repair_timestamps(values, cases.iloc[:3])


def test_enrich_repairs_a_raw_string_timestamp_column(road: pd.DataFrame) -> None:
    raw = road.copy()
    text = raw[XES_TIMESTAMP].dt.strftime("%d.%m.%Y %H:%M").astype(object)
    text.iloc[[3, 10, 50]] = None
    raw[XES_TIMESTAMP] = text

    with pytest.raises(ValueError, match="repairTimestamps"):
        enrich(raw, {})
    out, report = enrich(raw, {"repairTimestamps": True})
    assert report["timestampsInferred"] == 3
    assert report["timestampsRepaired"] == len(road) - 3
    assert out[XES_TIMESTAMP].notna().all()
    same = out.index.difference([3, 10, 50])
    pd.testing.assert_series_equal(
        out.loc[same, XES_TIMESTAMP], road.loc[same, XES_TIMESTAMP].dt.floor("min")
    )
    assert out["case_duration_seconds"].notna().all()


def test_missing_timestamps_without_repair_are_reported(road: pd.DataFrame) -> None:
    df = road.copy()
    df.loc[[1, 2], XES_TIMESTAMP] = pd.NaT
    out, report = enrich(df, {})
    assert [(w["type"], w["count"]) for w in report["warnings"]] == [("timestampMissing", 2)]
    assert out.loc[[1, 2], "hour"].isna().all()


# --------------------------------------------------------------------------------------------
# Lookup


def test_lookup_joins_on_a_case_attribute(receipt: pd.DataFrame) -> None:
    table = pd.DataFrame(
        {
            "case:channel": ["Internet", "Desk", "Post", "Desk"],  # "Desk" twice: first wins
            "priority": ["low", "high", "medium", "ignored"],
            "cost": [1.0, 5.0, 3.0, 99.0],
        }
    )
    out, report = enrich(
        receipt, {"lookup": {"frame": table, "key": "case:channel", "columns": ["priority"]}}
    )
    assert len(out) == len(receipt)
    assert "cost" not in out.columns
    expected = out["case:channel"].map({"Internet": "low", "Desk": "high", "Post": "medium"})
    pd.testing.assert_series_equal(out["priority"], expected, check_names=False)
    kinds = {w["type"]: w["count"] for w in report["warnings"]}
    assert kinds["lookupDuplicateKeys"] == 1
    unmatched = int((~receipt["case:channel"].isin(["Internet", "Desk", "Post"])).sum())
    assert unmatched > 0 and kinds["lookupUnmatched"] == unmatched


def test_lookup_numeric_key_matches_text_ids(road: pd.DataFrame) -> None:
    ids = sorted(road[XES_RESOURCE].dropna().unique())[:5]
    table = pd.DataFrame({XES_RESOURCE: [int(i) for i in ids], "team": [f"T{i}" for i in ids]})
    # No columns, or an empty list (what the job passes when none are chosen): all of them.
    out, _ = enrich(road, {"lookup": {"frame": table, "key": XES_RESOURCE, "columns": []}})
    hit = out[XES_RESOURCE].isin(ids)
    assert hit.sum() > 5
    assert (out.loc[hit, "team"] == "T" + out.loc[hit, XES_RESOURCE]).all()
    assert out.loc[~hit, "team"].isna().all()


def test_lookup_errors_name_the_missing_column(road: pd.DataFrame) -> None:
    table = pd.DataFrame({"region": ["x"], "manager": ["m"]})
    with pytest.raises(ValueError, match="'region' is not a column of the event log"):
        enrich(road, {"lookup": {"frame": table, "key": "region"}})
    with pytest.raises(ValueError, match="'vehicleClass' is not a column of the lookup table"):
        enrich(road, {"lookup": {"frame": table, "key": "vehicleClass"}})
    with pytest.raises(ValueError, match="lookup.columns nope"):
        enrich(
            road,
            {
                "lookup": {
                    "frame": table.assign(vehicleClass="A"),
                    "key": "vehicleClass",
                    "columns": ["nope"],
                }
            },
        )


def test_unknown_options_are_reported_not_fatal(road: pd.DataFrame) -> None:
    _, report = enrich(road, {"removeDuplicate": True})
    assert report["warnings"][0]["type"] == "unknownOption"
    assert "removeDuplicate" in report["warnings"][0]["message"]


# --------------------------------------------------------------------------------------------
# CSV safety


def test_csv_safe_neutralises_formulas_and_keeps_numbers() -> None:
    df = pd.DataFrame(
        {
            "org:resource": ['=HYPERLINK("http://x")', "+SUM(A1)", "-2+3", "@cmd", "Anna"],
            "note": pd.Series(["\tTAB", "\rCR", "-12.5", "1e3", None], dtype=object),
            "amount": [-5, 3, -1, 0, 2],
            "text_number": pd.Series(["-7", "+3.5", "-", "=1", "ok"], dtype="str"),
            "=evil header": [1, 2, 3, 4, 5],
        }
    )
    before = df.copy()
    safe = csv_safe(df)
    pd.testing.assert_frame_equal(df, before)
    assert safe["org:resource"].tolist() == [
        '\'=HYPERLINK("http://x")',
        "'+SUM(A1)",
        "'-2+3",
        "'@cmd",
        "Anna",
    ]
    assert safe["note"].tolist() == ["'\tTAB", "'\rCR", "-12.5", "1e3", None]
    assert safe["amount"].tolist() == [-5, 3, -1, 0, 2]
    assert safe["text_number"].tolist() == ["-7", "+3.5", "'-", "'=1", "ok"]
    assert "'=evil header" in safe.columns

    # What a spreadsheet would see: no cell (or header) that starts like a formula,
    # except plain numbers.
    back = pd.read_csv(io.StringIO(safe.to_csv(index=False)), dtype=str, keep_default_na=False)
    cells = [*back.columns, *back.to_numpy().ravel().tolist()]
    risky = [
        c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r")) and not _is_number(c)
    ]
    assert risky == []


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_csv_safe_on_a_real_enriched_log(receipt: pd.DataFrame) -> None:
    out, _ = enrich(receipt, {})
    safe = csv_safe(out)
    pd.testing.assert_frame_equal(safe, out)  # nothing risky in receipt: unchanged
