"""flows.steps.fastpm.xes against pm4py's default iterparse importer.

The reference is built the way ``pm4py.read_xes`` does it, but with the ITERPARSE variant
forced (with r4pm installed, plain ``pm4py.read_xes`` would use r4pm).
"""

from __future__ import annotations

import gzip
import resource
import shutil
from pathlib import Path

import pandas as pd
import pm4py
import pytest
from pm4py.objects.conversion.log import converter as log_converter
from pm4py.objects.log.importer.xes import importer as xes_importer

from flows.steps.fastpm import PM4PY_VERSION, xes

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def reference(path: Path) -> pd.DataFrame:
    log = xes_importer.apply(
        str(path),
        variant=xes_importer.Variants.ITERPARSE,
        parameters={"show_progress_bar": False},
    )
    return log_converter.apply(log, variant=log_converter.Variants.TO_DATA_FRAME)


def assert_same_as_iterparse(path: Path) -> pd.DataFrame:
    got = xes.read_xes(path)
    want = reference(path)
    pd.testing.assert_frame_equal(got, want)
    assert list(got.columns) == list(want.columns)
    assert got.attrs == want.attrs
    return got


def test_pm4py_version_is_pinned() -> None:
    assert pm4py.__version__ == PM4PY_VERSION


@pytest.mark.parametrize(
    "path",
    [
        DATA / "roadtraffic100traces.xes",
        DATA / "Sepsis Cases - Event Log.xes.gz",
        pytest.param(ROOT / "bench" / "data" / "bpic2012.xes.gz", marks=pytest.mark.slow),
    ],
    ids=["roadtraffic", "sepsis", "bpic2012"],
)
def test_real_logs_equal_iterparse(path: Path) -> None:
    assert_same_as_iterparse(path)


def test_plain_and_gzipped_give_the_same_frame(tmp_path: Path) -> None:
    plain = tmp_path / "roadtraffic.xes"
    shutil.copyfile(DATA / "roadtraffic100traces.xes", plain)
    packed = tmp_path / "roadtraffic.xes.gz"
    with plain.open("rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    pd.testing.assert_frame_equal(xes.read_xes(packed), assert_same_as_iterparse(plain))


def _log(body: str, prolog: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{prolog}<log xes.version="1.0" '
        f'xmlns="http://www.xes-standard.org/">\n{body}\n</log>\n'
    )


def _event(name: str, ts: str, extra: str = "") -> str:
    return (
        f'<event><string key="concept:name" value="{name}"/>'
        f'<date key="time:timestamp" value="{ts}"/>{extra}</event>'
    )


EDGE_CASES = {
    # Keys first appearing late and a trace attribute written after the events.
    "late_keys": (
        '<trace><string key="concept:name" value="c1"/>'
        + _event("A", "2024-01-01T10:00:00.000+02:00")
        + _event("B", "2024-01-01T11:00:00Z", '<int key="n" value="3"/>')
        + '<float key="cost" value="1.5"/></trace>'
        + '<trace><boolean key="vip" value="true"/><string key="concept:name" value="c2"/>'
        + _event("A &amp; B &#233;", "2024-01-02T10:00:00", '<boolean key="ok" value="false"/>')
        + "</trace>"
    ),
    # The same key as int in one event and string in another.
    "mixed_types": (
        '<trace><string key="concept:name" value="c1"/>'
        + _event("A", "2024-01-01T10:00:00Z", '<int key="n" value="3"/>')
        + _event("B", "2024-01-01T11:00:00Z", '<string key="n" value="abc"/>')
        + "</trace>"
    ),
    # Nested attribute and a list inside events.
    "nested": (
        '<trace><string key="concept:name" value="c1"/>'
        + _event(
            "A",
            "2024-01-01T10:00:00Z",
            '<string key="s" value="x"><int key="k" value="1"/></string>',
        )
        + _event(
            "B",
            "2024-01-01T11:00:00Z",
            '<list key="l"><values><string key="q" value="1"/></values></list>',
        )
        + "</trace>"
    ),
    # A raw newline/tab inside an attribute value (XML normalises them to spaces).
    "raw_whitespace": (
        '<trace><string key="concept:name" value="c1"/>'
        + _event("A", "2024-01-01T10:00:00Z", '<string key="note" value="two\n\tlines"/>')
        + _event("B", "2024-01-01T11:00:00Z", '<string key="note" value="x&#10;y"/>')
        + "</trace>"
    ),
    # Values r4pm parses differently (0 / 0.0 / False / null), the keys valid elsewhere.
    "unparseable_values": (
        '<trace><string key="concept:name" value="c1"/>'
        + _event(
            "A",
            "2024-01-01T10:00:00Z",
            '<int key="n" value="3"/><float key="f" value="2.5"/>'
            '<boolean key="b" value="true"/><date key="d" value="2024-01-01T00:00:00Z"/>',
        )
        + _event(
            "B",
            "2024-01-01T11:00:00Z",
            '<int key="n" value="x1"/><float key="f" value="abc"/>'
            '<boolean key="b" value="TRUE"/><date key="d" value="2020-01-01"/>',
        )
        + "</trace>"
    ),
    # Booleans with missing values, an unparseable int, an empty trace.
    "missing_values": (
        '<trace><string key="concept:name" value="c1"/>'
        + _event("A", "2024-01-01T10:00:00Z", '<boolean key="b" value="true"/>')
        + _event("B", "2024-01-01T11:00:00Z")
        + '</trace><trace><string key="concept:name" value="empty"/></trace>'
        + '<trace><string key="concept:name" value="c3"/>'
        + _event("C", "2024-01-01T12:00:00Z", '<int key="bad" value="1.5"/>')
        + "</trace>"
    ),
}


@pytest.mark.parametrize("case", sorted(EDGE_CASES))
def test_edge_cases_equal_iterparse(case: str, tmp_path: Path) -> None:
    path = tmp_path / f"{case}.xes"
    path.write_text(_log(EDGE_CASES[case]), encoding="utf-8")
    assert_same_as_iterparse(path)


BILLION_LAUGHS = "".join(
    [
        "<!DOCTYPE log [\n",
        ' <!ENTITY lol0 "lol">\n',
        *(f' <!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">\n' for i in range(1, 10)),
        "]>\n",
    ]
)


@pytest.mark.parametrize("compressed", [False, True], ids=["xes", "xes.gz"])
def test_billion_laughs_is_refused(compressed: bool, tmp_path: Path) -> None:
    body = (
        '<trace><string key="concept:name" value="c1"/>'
        + _event("&lol9;", "2024-01-01T10:00:00Z")
        + "</trace>"
    )
    text = _log(body, prolog="<!-- a comment mentioning <!DOCTYPE is fine -->\n" + BILLION_LAUGHS)
    path = tmp_path / ("bomb.xes.gz" if compressed else "bomb.xes")
    if compressed:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(xes.XesError, match="DTD"):
        xes.read_xes(path)
    with pytest.raises(xes.XesError, match="DTD"):
        xes.read_xes_iterparse(path)
    # 10**9 expanded "lol"s would be gigabytes; nothing of the kind was allocated.
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000


def test_comment_before_root_is_not_a_dtd(tmp_path: Path) -> None:
    path = tmp_path / "commented.xes"
    body = '<trace><string key="concept:name" value="c1"/>' + _event("A", "2024-01-01T10:00:00Z")
    path.write_text(_log(body + "</trace>", prolog="<!-- <!DOCTYPE x> -->\n"), encoding="utf-8")
    assert_same_as_iterparse(path)
