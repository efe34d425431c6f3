"""Tests for flows.steps.eventlog on the real logs in tests/data (no mocks).

The reference numbers are always computed live with pm4py on the original file, so the tests
check "same as pm4py" rather than remembered counts.
"""

from __future__ import annotations

import gzip
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from flows.steps.eventlog import (
    XES_ACTIVITY,
    XES_CASE,
    XES_RESOURCE,
    XES_TIMESTAMP,
    ColumnMapping,
    DatasetStats,
    EventLogError,
    detect_format,
    ingest,
    load_events,
    ordered,
)

DATA = Path(__file__).resolve().parents[1] / "data"
ROAD = DATA / "roadtraffic100traces.xes"
RECEIPT = DATA / "receipt.csv"
SEPSIS = DATA / "Sepsis Cases - Event Log.xes.gz"
KEYS = [XES_CASE, XES_ACTIVITY, XES_TIMESTAMP]


@pytest.fixture(scope="module")
def pm4py():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pm4py as module
    return module


def read_with_pm4py(pm4py, path: Path) -> pd.DataFrame:
    """The log as a user reads it directly with pm4py (the reference for every comparison)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if path.suffix == ".csv":
            return pm4py.format_dataframe(
                pd.read_csv(path),
                case_id=XES_CASE,
                activity_key=XES_ACTIVITY,
                timestamp_key=XES_TIMESTAMP,
            )
        return pm4py.read_xes(str(path), variant="iterparse", show_progress_bar=False)


@pytest.fixture(scope="module")
def reference(pm4py):
    cache: dict[Path, pd.DataFrame] = {}

    def get(path: Path) -> pd.DataFrame:
        if path not in cache:
            cache[path] = read_with_pm4py(pm4py, path)
        return cache[path]

    return get


def assert_no_output(dest: Path) -> None:
    """Nothing at dest and no temporary leftovers next to it."""
    assert not dest.exists()
    if dest.parent.exists():
        assert list(dest.parent.iterdir()) == []


# ------------------------------------------------------------------------------------------
# Real logs: ingest + load_events give exactly what pm4py gives on the original file


@pytest.mark.parametrize(
    ("path", "fmt"),
    [(ROAD, "xes"), (RECEIPT, "csv"), (SEPSIS, "xes.gz")],
    ids=["roadtraffic", "receipt", "sepsis"],
)
def test_real_log_roundtrip_matches_pm4py(pm4py, reference, tmp_path, path, fmt):
    ref = reference(path)
    dest = tmp_path / "out" / "events.parquet"

    stats = ingest(path, path.name, ColumnMapping(), dest)

    assert isinstance(stats, DatasetStats)
    assert stats.format == fmt
    assert stats.events == len(ref)
    assert stats.cases == ref[XES_CASE].nunique()
    assert stats.activities == ref[XES_ACTIVITY].nunique()
    assert stats.start_time == ref[XES_TIMESTAMP].min().to_pydatetime()
    assert stats.end_time == ref[XES_TIMESTAMP].max().to_pydatetime()
    assert stats.start_time.tzinfo is not None
    assert stats.start_time.utcoffset().total_seconds() == 0
    assert set(KEYS) <= set(stats.columns)
    assert sorted(os.listdir(dest.parent)) == ["events.parquet"]

    df = load_events(dest)
    assert list(df.columns) == stats.columns
    # Same key dtypes as pm4py.read_xes (str, str, datetime64[us, UTC]).
    xes_dtypes = reference(ROAD).dtypes
    for col in KEYS:
        assert df[col].dtype == xes_dtypes[col], col
    assert str(df[XES_TIMESTAMP].dtype) == "datetime64[us, UTC]"
    assert df.attrs["pm4py:param:activity_key"] == XES_ACTIVITY

    # Same numbers from pm4py's own functions.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pm4py.discover_dfg(df) == pm4py.discover_dfg(ref)
        assert pm4py.get_start_activities(df) == pm4py.get_start_activities(ref)
        assert pm4py.get_end_activities(df) == pm4py.get_end_activities(ref)
        assert pm4py.get_variants(df) == pm4py.get_variants(ref)

    # Same instants; same events in pm4py order; rows stored in the original file order.
    if fmt == "csv":
        pd.testing.assert_series_equal(
            ordered(df)[XES_TIMESTAMP].reset_index(drop=True),
            ref[XES_TIMESTAMP].reset_index(drop=True),
        )
        raw = pd.read_csv(path)
        assert df[XES_CASE].tolist() == raw[XES_CASE].astype(str).tolist()
        assert df[XES_ACTIVITY].tolist() == raw[XES_ACTIVITY].astype(str).tolist()
    else:
        pd.testing.assert_frame_equal(df[KEYS], ref[KEYS])
        reordered = ordered(df)
        for col in KEYS:
            assert reordered[col].tolist() == ordered(ref)[col].tolist()


def test_ordered_is_pm4py_format_dataframe_order(reference):
    ref = reference(RECEIPT)  # format_dataframe sorted it by case, timestamp, position
    raw = pd.read_csv(RECEIPT)
    raw[XES_TIMESTAMP] = pd.to_datetime(raw[XES_TIMESTAMP], utc=True)
    got = ordered(raw)
    assert got[XES_CASE].astype(str).tolist() == ref[XES_CASE].tolist()
    assert got[XES_ACTIVITY].tolist() == ref[XES_ACTIVITY].tolist()
    assert got.index.tolist() == ref.index.tolist()  # index = original position


def test_other_columns_are_kept(tmp_path):
    dest = tmp_path / "receipt.parquet"
    stats = ingest(RECEIPT, RECEIPT.name, ColumnMapping(), dest)
    df = load_events(dest)
    raw_columns = pd.read_csv(RECEIPT, nrows=1).columns
    assert set(raw_columns) == set(stats.columns)
    # ISO date-time attributes become UTC timestamps, as pm4py.format_dataframe does.
    assert str(df["case:deadline"].dtype) == "datetime64[us, UTC]"
    assert df[XES_RESOURCE].dtype == "str"


def test_sepsis_without_org_resource_is_fine(tmp_path):
    dest = tmp_path / "sepsis.parquet"
    stats = ingest(SEPSIS, SEPSIS.name, ColumnMapping(), dest)
    assert XES_RESOURCE not in stats.columns
    assert "org:group" in stats.columns
    # boolean attributes with gaps survive the Parquet round trip
    assert set(load_events(dest)["InfectionSuspected"].dropna().unique()) <= {True, False}


# ------------------------------------------------------------------------------------------
# Tabular uploads with a column mapping


def test_csv_with_other_column_names_and_mapping(pm4py, reference, tmp_path):
    raw = pd.read_csv(RECEIPT)
    renamed = raw.rename(
        columns={
            XES_CASE: "CaseID",
            XES_ACTIVITY: "Activity",
            XES_TIMESTAMP: "Completed At",
            XES_RESOURCE: "Who",
        }
    )
    src = tmp_path / "upload.bin"
    renamed.to_csv(src, sep=";", index=False)
    mapping = ColumnMapping(
        case="CaseID", activity="Activity", timestamp="Completed At", resource="Who"
    )
    dest = tmp_path / "out.parquet"

    stats = ingest(src, "permits export.csv", mapping, dest)

    ref = reference(RECEIPT)
    assert stats.events == len(ref)
    assert stats.cases == ref[XES_CASE].nunique()
    for old in ("CaseID", "Activity", "Completed At", "Who"):
        assert old not in stats.columns
    df = load_events(dest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert pm4py.discover_dfg(df) == pm4py.discover_dfg(ref)
        assert pm4py.get_variants(df) == pm4py.get_variants(ref)
    assert df[XES_RESOURCE].tolist() == raw[XES_RESOURCE].astype(str).tolist()


def test_csv_with_timestamp_format_and_numeric_ids(tmp_path):
    src = tmp_path / "log.csv"
    src.write_text(
        "case,task,when,extra\n"
        "007,Register,31/12/2020 23:30,1\n"
        "007,Approve,01/01/2021 00:15,x\n"
        "8,Register,02/01/2021 09:00,\n"
    )
    mapping = ColumnMapping(
        case="case", activity="task", timestamp="when", timestamp_format="%d/%m/%Y %H:%M"
    )
    dest = tmp_path / "log.parquet"
    stats = ingest(src, src.name, mapping, dest)
    assert (stats.events, stats.cases, stats.activities) == (3, 2, 2)
    assert stats.start_time == datetime(2020, 12, 31, 23, 30, tzinfo=UTC)
    assert stats.end_time == datetime(2021, 1, 2, 9, 0, tzinfo=UTC)
    df = load_events(dest)
    assert df[XES_CASE].tolist() == ["007", "007", "8"]  # ids kept as written
    assert "extra" in df.columns and XES_RESOURCE not in df.columns


def test_existing_xes_named_column_is_not_lost(tmp_path):
    src = tmp_path / "log.csv"
    src.write_text("id,concept:name,step,ts\nc1,old,A,2020-01-01T10:00:00Z\n")
    mapping = ColumnMapping(case="id", activity="step", timestamp="ts")
    stats = ingest(src, src.name, mapping, tmp_path / "o.parquet")
    df = load_events(tmp_path / "o.parquet")
    assert df[XES_ACTIVITY].tolist() == ["A"]
    assert df["concept:name (original)"].tolist() == ["old"]
    assert stats.events == 1


def test_parquet_upload_with_naive_timestamps(tmp_path):
    src = tmp_path / "in.parquet"
    pd.DataFrame(
        {
            "cid": [1, 1, 2],
            "act": ["a", "b", "a"],
            "t": pd.to_datetime(["2020-01-01 10:00", "2020-01-01 11:00", "2020-01-02 09:00"]),
            "res": [5, 6, None],
        }
    ).to_parquet(src)
    mapping = ColumnMapping(case="cid", activity="act", timestamp="t", resource="res")
    stats = ingest(src, "in.parquet", mapping, tmp_path / "o.parquet")
    assert stats.format == "parquet"
    assert stats.start_time == datetime(2020, 1, 1, 10, tzinfo=UTC)
    df = load_events(tmp_path / "o.parquet")
    assert df[XES_CASE].tolist() == ["1", "1", "2"]
    assert df[XES_RESOURCE].dtype == "str"


def test_xes_with_mixed_attribute_types_is_stored(tmp_path):
    src = tmp_path / "mixed.xes"
    src.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<log xes.version="1.0">\n'
        '<trace><string key="concept:name" value="c1"/>\n'
        '<event><string key="concept:name" value="A"/>'
        '<date key="time:timestamp" value="2020-01-01T10:00:00.000+01:00"/>'
        '<int key="x" value="1"/></event>\n'
        '<event><string key="concept:name" value="B"/>'
        '<date key="time:timestamp" value="2020-01-01T11:00:00.000+01:00"/>'
        '<string key="x" value="foo"/></event>\n'
        "</trace></log>\n"
    )
    # a CSV mapping is ignored for XES
    stats = ingest(src, "upload", ColumnMapping(case="nope"), tmp_path / "o.parquet")
    assert (stats.format, stats.events, stats.cases) == ("xes", 2, 1)
    assert stats.start_time == datetime(2020, 1, 1, 9, tzinfo=UTC)
    assert load_events(tmp_path / "o.parquet")["x"].tolist() == ["1", "foo"]


# ------------------------------------------------------------------------------------------
# Bad input: EventLogError with a message a person can act on, and nothing at dest


def test_missing_column_names_it_and_lists_available(tmp_path):
    dest = tmp_path / "out" / "e.parquet"
    with pytest.raises(EventLogError) as err:
        ingest(RECEIPT, RECEIPT.name, ColumnMapping(case="Case ID"), dest)
    msg = str(err.value)
    assert "'Case ID'" in msg and "case" in msg
    assert "available" in msg and "'concept:name'" in msg
    assert_no_output(dest)


def test_explicit_resource_must_exist(tmp_path):
    with pytest.raises(EventLogError, match="'Owner' \\(resource\\)"):
        ingest(RECEIPT, RECEIPT.name, ColumnMapping(resource="Owner"), tmp_path / "e.parquet")


def test_same_column_for_two_roles(tmp_path):
    with pytest.raises(EventLogError, match="both"):
        ingest(
            RECEIPT,
            RECEIPT.name,
            ColumnMapping(activity=XES_CASE),
            tmp_path / "e.parquet",
        )


def test_bad_timestamps_give_column_example_and_count(tmp_path):
    raw = pd.read_csv(RECEIPT, nrows=50)
    raw.loc[[3, 17], XES_TIMESTAMP] = ["yesterday", "31/02/2011 25:00"]
    src = tmp_path / "bad.csv"
    raw.to_csv(src, index=False)
    dest = tmp_path / "out" / "e.parquet"
    with pytest.raises(EventLogError) as err:
        ingest(src, src.name, ColumnMapping(), dest)
    msg = str(err.value)
    assert f"'{XES_TIMESTAMP}'" in msg
    assert "2 of 50" in msg
    assert "yesterday" in msg or "31/02/2011 25:00" in msg
    assert_no_output(dest)


def test_explicit_timestamp_format_mismatch(tmp_path):
    with pytest.raises(EventLogError, match="'%d.%m.%Y'"):
        ingest(
            RECEIPT,
            RECEIPT.name,
            ColumnMapping(timestamp_format="%d.%m.%Y"),
            tmp_path / "e.parquet",
        )


def test_missing_key_values_are_rejected(tmp_path):
    src = tmp_path / "gaps.csv"
    src.write_text(
        "case:concept:name,concept:name,time:timestamp\n"
        "c1,A,2020-01-01T10:00:00Z\n"
        "c1,,2020-01-01T11:00:00Z\n"
    )
    with pytest.raises(EventLogError, match=r"'concept:name'.* 1 of 2 .*data row 2"):
        ingest(src, src.name, ColumnMapping(), tmp_path / "e.parquet")


def test_numeric_timestamps_are_rejected(tmp_path):
    src = tmp_path / "n.parquet"
    pd.DataFrame({XES_CASE: ["c"], XES_ACTIVITY: ["a"], XES_TIMESTAMP: [1600000000]}).to_parquet(
        src
    )
    with pytest.raises(EventLogError, match="holds numbers"):
        ingest(src, src.name, ColumnMapping(), tmp_path / "e.parquet")


@pytest.mark.parametrize(
    ("filename", "content", "expected"),
    [
        ("empty.csv", b"", "empty"),
        ("empty.xes", b"", "empty"),
        ("header-only.csv", b"case:concept:name,concept:name,time:timestamp\n", "no events"),
        ("blank.csv", b"\n\n", "no data"),
        (
            "nolog.xes",
            b'<?xml version="1.0"?>\n<log xes.version="1.0"></log>\n',
            "no events",
        ),
        ("html.xes", b"<html><body>hi</body></html>", "not an XES event log"),
        ("broken.xes", b'<?xml version="1.0"?><log><trace><string key=', "not well-formed XML"),
    ],
)
def test_empty_and_malformed_files(tmp_path, filename, content, expected):
    src = tmp_path / "upload"
    src.write_bytes(content)
    dest = tmp_path / "out" / "e.parquet"
    with pytest.raises(EventLogError, match=expected) as err:
        ingest(src, filename, ColumnMapping(), dest)
    assert filename in str(err.value)
    assert_no_output(dest)


def test_truncated_xes_gz(tmp_path):
    src = tmp_path / "upload"
    src.write_bytes(SEPSIS.read_bytes()[:100_000])
    dest = tmp_path / "out" / "e.parquet"
    with pytest.raises(EventLogError, match="truncated or corrupt") as err:
        ingest(src, SEPSIS.name, ColumnMapping(), dest)
    assert SEPSIS.name in str(err.value)
    assert_no_output(dest)


def test_gzip_of_garbage_is_not_xes(tmp_path):
    src = tmp_path / "upload"
    src.write_bytes(gzip.compress(b"just some text, no xml"))
    with pytest.raises(EventLogError, match="XES"):
        ingest(src, "log.xes.gz", ColumnMapping(), tmp_path / "e.parquet")


@pytest.mark.parametrize("filename", ["log.csv", "log.xes", "log.xes.gz", "log.parquet"])
def test_garbage_bytes(tmp_path, filename):
    src = tmp_path / "upload"
    src.write_bytes(bytes(range(256)) * 40 + os.urandom(4096))
    dest = tmp_path / "out" / "e.parquet"
    with pytest.raises(EventLogError) as err:
        ingest(src, filename, ColumnMapping(), dest)
    assert filename in str(err.value)
    assert_no_output(dest)


def test_failed_ingest_keeps_previous_dest(tmp_path):
    dest = tmp_path / "e.parquet"
    ingest(ROAD, ROAD.name, ColumnMapping(), dest)
    before = dest.read_bytes()
    src = tmp_path / "broken.xes"
    src.write_bytes(ROAD.read_bytes()[:5000])
    with pytest.raises(EventLogError):
        ingest(src, src.name, ColumnMapping(), dest)
    assert dest.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["broken.xes", "e.parquet"]


# ------------------------------------------------------------------------------------------
# Format detection


@pytest.mark.parametrize(
    ("filename", "head", "expected"),
    [
        ("a.csv", b"x", "csv"),
        ("A.CSV", b"\x1f\x8b", "csv"),  # the extension wins
        ("a.xes", b"", "xes"),
        ("Sepsis Cases - Event Log.xes.gz", b"", "xes.gz"),
        ("a.parquet", b"", "parquet"),
        ("a.pq", b"", "parquet"),
        ("upload", b"\x1f\x8b\x08\x00", "xes.gz"),
        ("upload", b"PAR1\x15\x04", "parquet"),
        ("upload.dat", b'<?xml version="1.0"?><log>', "xes"),
        ("upload", b"\xef\xbb\xbf  <log xes.version='1.0'>", "xes"),
    ],
)
def test_detect_format(filename, head, expected):
    assert detect_format(filename, head) == expected


@pytest.mark.parametrize(
    ("filename", "head"),
    [("notes.txt", b"hello"), ("log.csv.gz", b"\x1f\x8b"), ("report.pdf", b"%PDF-1.7")],
)
def test_detect_format_unsupported(filename, head):
    with pytest.raises(EventLogError, match="supported: CSV, XES, XES.gz, Parquet") as err:
        detect_format(filename, head)
    assert filename in str(err.value)
