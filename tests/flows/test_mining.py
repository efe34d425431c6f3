"""flows.steps.mining / process_map against pm4py's own answers on real logs.

Every expected figure is computed here by pm4py's simplified interface on a copy of the same
frame (copies, because pm4py's DFG code adds a ``start_timestamp`` column to its input).
Floats are compared with ``==``: the module calls the very same pm4py functions on rows in
the same order, so there is no reason for even the last bit to differ.
"""

from __future__ import annotations

import json
import math
import statistics
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pm4py
import pytest

from flows.steps import mining
from flows.steps.process_map import DOT_NOT_FOUND, render_svg

DATA = Path(__file__).resolve().parents[1] / "data"
ROADTRAFFIC = DATA / "roadtraffic100traces.xes"
RECEIPT = DATA / "receipt.csv"
SEPSIS = DATA / "Sepsis Cases - Event Log.xes.gz"
SVG_NS = "{http://www.w3.org/2000/svg}"


def _read_csv(path: Path) -> pd.DataFrame:
    return pm4py.format_dataframe(
        pd.read_csv(path),
        case_id="case:concept:name",
        activity_key="concept:name",
        timestamp_key="time:timestamp",
    )


@pytest.fixture(scope="module")
def roadtraffic() -> pd.DataFrame:
    return pm4py.read_xes(str(ROADTRAFFIC), variant="iterparse", show_progress_bar=False)


@pytest.fixture(scope="module")
def receipt() -> pd.DataFrame:
    return _read_csv(RECEIPT)


@pytest.fixture(scope="module")
def sepsis() -> pd.DataFrame:
    return pm4py.read_xes(str(SEPSIS), variant="iterparse", show_progress_bar=False)


@pytest.fixture(scope="module")
def roadtraffic_result(roadtraffic: pd.DataFrame) -> dict[str, Any]:
    return mining.analyse(roadtraffic)


@pytest.fixture(scope="module")
def receipt_result(receipt: pd.DataFrame) -> dict[str, Any]:
    return mining.analyse(receipt)


# --- expected values, straight from pm4py -------------------------------------------------


def expected_frequencies(df: pd.DataFrame) -> dict[str, Any]:
    dfg, start, end = pm4py.discover_dfg(df.copy())
    # Default aggregation "all" (a different pandas call than the module's "mean").
    perf, _, _ = pm4py.discover_performance_dfg(df.copy())
    return {
        "dfg": {edge: (count, perf[edge]["mean"]) for edge, count in dfg.items()},
        "startActivities": dict(start),
        "endActivities": dict(end),
        "activities": pm4py.get_event_attribute_values(df.copy(), "concept:name"),
    }


def assert_frequencies(result: dict[str, Any], df: pd.DataFrame) -> None:
    want = expected_frequencies(df)
    got = {(e["source"], e["target"]): (e["frequency"], e["meanSeconds"]) for e in result["dfg"]}
    assert len(got) == len(result["dfg"])
    assert got == want["dfg"]
    assert result["startActivities"] == want["startActivities"]
    assert result["endActivities"] == want["endActivities"]
    assert result["activities"] == want["activities"]
    keys = [(-e["frequency"], e["source"], e["target"]) for e in result["dfg"]]
    assert keys == sorted(keys)


def assert_variants(variants: list[dict[str, Any]], df: pd.DataFrame) -> None:
    want = pm4py.get_variants(df.copy())
    got = {tuple(v["activities"]): v["count"] for v in variants}
    assert len(got) == len(variants) == len(want)
    assert got == want
    counts = [v["count"] for v in variants]
    assert counts == sorted(counts, reverse=True)
    # Documented tie-break: pm4py's (count, activities) key, descending.
    keys = [(v["count"], tuple(v["activities"])) for v in variants]
    assert keys == sorted(keys, reverse=True)


def assert_durations(durations: dict[str, Any], df: pd.DataFrame) -> None:
    want = pm4py.get_all_case_durations(df.copy())
    assert durations == {
        "count": len(want),
        "min": min(want),
        "max": max(want),
        "mean": statistics.fmean(want),
        "median": statistics.median(want),
    }
    # fmean is exactly rounded; numpy's pairwise sum may differ in the last bits only.
    assert math.isclose(durations["mean"], float(np.mean(want)), rel_tol=1e-12)


def assert_conformance(result: dict[str, Any], df: pd.DataFrame, noise: float = 0.2) -> None:
    ref = df.copy()
    net, im, fm = pm4py.discover_petri_net_inductive(ref, noise_threshold=noise)
    fitness = pm4py.fitness_token_based_replay(ref, net, im, fm)
    assert result["fitness"] == {
        "averageTraceFitness": fitness["average_trace_fitness"],
        "logFitness": fitness["log_fitness"],
        "percentageFitTraces": fitness["percentage_of_fitting_traces"],
    }
    assert result["precision"] == pm4py.precision_token_based_replay(ref, net, im, fm)


def assert_plain_json(value: Any) -> None:
    """Only builtin JSON types, so json.dumps works without a custom encoder."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert type(value) in (str, int, float, bool), (value, type(value))
        assert not (type(value) is float and not math.isfinite(value)), value


# --- analyse() on full logs ---------------------------------------------------------------


@pytest.mark.parametrize("log", ["roadtraffic", "receipt"])
def test_analyse_equals_pm4py(log: str, request: pytest.FixtureRequest) -> None:
    df: pd.DataFrame = request.getfixturevalue(log)
    result: dict[str, Any] = request.getfixturevalue(f"{log}_result")
    assert_frequencies(result, df)
    assert_variants(result["variants"], df)
    assert_durations(result["caseDurations"], df)
    assert_conformance(result, df)
    assert result["noiseThreshold"] == 0.2


@pytest.mark.parametrize("log", ["roadtraffic", "receipt"])
def test_result_is_plain_json(log: str, request: pytest.FixtureRequest) -> None:
    result: dict[str, Any] = request.getfixturevalue(f"{log}_result")
    assert_plain_json(result)
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_sepsis_stages_equal_pm4py(sepsis: pd.DataFrame) -> None:
    """Frequencies, variants, durations and the model; conformance is too slow here.

    Measured on 2 cores: fitness ~1.3 s but precision ~16 s, doubled for the reference.
    """
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - start
        return out

    frame = timed("prepare", lambda: mining.prepare(sepsis))
    assert_frequencies(timed("frequencies", lambda: mining.discover_frequencies(frame)), sepsis)
    assert_variants(timed("variants", lambda: mining.discover_variants(frame)), sepsis)
    assert_durations(timed("durations", lambda: mining.case_durations(frame)), sepsis)
    model = timed("model", lambda: mining.discover_model(frame))
    net, _, _ = pm4py.discover_petri_net_inductive(sepsis.copy(), noise_threshold=0.2)
    assert len(model.net.places) == len(net.places)
    assert len(model.net.arcs) == len(net.arcs)
    assert sorted(str(t.label) for t in model.net.transitions) == sorted(
        str(t.label) for t in net.transitions
    )
    print("sepsis stage seconds:", {k: round(v, 3) for k, v in timings.items()})


# --- canonical order, purity, parameters ---------------------------------------------------


def test_shuffled_rows_match_pm4py_stable_order(roadtraffic: pd.DataFrame) -> None:
    """Unordered input is sorted like pm4py.format_dataframe (case, timestamp, position)."""
    shuffled = roadtraffic.sample(frac=1.0, random_state=7).reset_index(drop=True)
    formatted = pm4py.format_dataframe(shuffled.copy())
    frame = mining.prepare(shuffled)
    for col in mining.COLUMNS:
        assert frame[col].tolist() == formatted[col].tolist()
    assert_frequencies(mining.discover_frequencies(shuffled), formatted)
    assert_variants(mining.discover_variants(shuffled), formatted)
    assert_durations(mining.case_durations(shuffled), formatted)


def test_case_block_order_does_not_matter(receipt: pd.DataFrame) -> None:
    cases = receipt["case:concept:name"].unique()[::-1]
    reordered = receipt.set_index("case:concept:name").loc[cases].reset_index()
    assert mining.discover_frequencies(reordered) == mining.discover_frequencies(receipt)
    assert mining.discover_variants(reordered) == mining.discover_variants(receipt)
    assert mining.case_durations(reordered) == mining.case_durations(receipt)


def test_input_frame_is_not_mutated(
    roadtraffic: pd.DataFrame, roadtraffic_result: dict[str, Any]
) -> None:
    before = roadtraffic.copy()
    attrs = dict(roadtraffic.attrs)
    mining.analyse(roadtraffic)
    pd.testing.assert_frame_equal(roadtraffic, before)
    assert roadtraffic.attrs == attrs


def test_noise_threshold_zero_is_plain_inductive_miner(roadtraffic: pd.DataFrame) -> None:
    result = mining.analyse(roadtraffic, noise_threshold=0.0)
    assert result["noiseThreshold"] == 0.0
    assert_conformance(result, roadtraffic, noise=0.0)


def test_invalid_input_is_rejected(roadtraffic: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="missing column"):
        mining.analyse(roadtraffic.drop(columns=["time:timestamp"]))
    with pytest.raises(TypeError, match="datetimes"):
        mining.prepare(roadtraffic.astype({"time:timestamp": str}))
    with pytest.raises(ValueError, match="no complete events"):
        mining.prepare(roadtraffic.iloc[0:0])
    with pytest.raises(ValueError, match="noise_threshold"):
        mining.discover_model(roadtraffic, noise_threshold=1.5)


def test_pnml_round_trip(roadtraffic: pd.DataFrame, tmp_path: Path) -> None:
    model = mining.discover_model(roadtraffic)
    data = model.to_pnml_bytes()
    assert ET.fromstring(data).tag == "pnml"
    path = tmp_path / "model.pnml"
    path.write_bytes(data)
    net, im, fm = pm4py.read_pnml(str(path))
    assert len(net.places) == len(model.net.places)
    assert len(net.transitions) == len(model.net.transitions)
    assert len(im) == len(fm) == 1


# --- process map ----------------------------------------------------------------------------


def _svg_texts(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    return [t.text or "" for t in root.iter(f"{SVG_NS}text")]


def _assert_self_contained(svg: bytes) -> None:
    assert b"<!DOCTYPE" not in svg
    for element in ET.fromstring(svg).iter():
        for name, value in element.attrib.items():
            if name.endswith("href"):
                assert not value.strip().lower().startswith(("http:", "https:", "file:", "//"))


def test_render_svg_real_log(receipt_result: dict[str, Any]) -> None:
    svg = render_svg(receipt_result)
    texts = _svg_texts(svg)
    for activity, count in receipt_result["activities"].items():
        assert activity in texts
        assert str(count) in texts
    _assert_self_contained(svg)


def test_render_svg_escapes_awkward_names() -> None:
    awkward = ['A & "B" <C>', "R&amp;D", "back\\slash\\n", "<html>", "Zürich – 東京 🚀", "x -- y"]
    rows = [
        {
            "case:concept:name": f"c{case}",
            "concept:name": name,
            "time:timestamp": pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(hours=i + case),
        }
        for case in range(3)
        for i, name in enumerate(awkward[case:] + awkward[:case])
    ]
    result = mining.analyse(pd.DataFrame(rows))
    assert set(result["activities"]) == set(awkward)
    svg = render_svg(result)
    texts = _svg_texts(svg)
    for name in awkward:
        assert name in texts
    _assert_self_contained(svg)


def test_render_svg_without_dot(
    roadtraffic_result: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError) as excinfo:
        render_svg(roadtraffic_result)
    assert str(excinfo.value) == DOT_NOT_FOUND
