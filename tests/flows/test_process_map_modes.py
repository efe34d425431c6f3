"""The performance process map labels each arc with pm4py's mean time between its events."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pm4py
import pytest

from flows.steps import mining, process_map
from tests.conftest import DATA


def test_performance_map_labels_arcs_with_mean_times() -> None:
    log = pm4py.read_xes(
        str(DATA / "roadtraffic100traces.xes"), variant="iterparse", show_progress_bar=False
    )
    result = mining.discover_frequencies(log)
    svg = process_map.render_svg(result, "performance")
    texts = {t.text for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text")}
    performance, _, _ = pm4py.discover_performance_dfg(log)
    for (source, target), stats in performance.items():
        seconds = stats["mean"] if isinstance(stats, dict) else stats
        assert process_map.human_duration(seconds) in texts, (source, target, seconds)
    frequency = {
        t.text
        for t in ET.fromstring(process_map.render_svg(result)).iter(
            "{http://www.w3.org/2000/svg}text"
        )
    }
    assert frequency != texts


@pytest.mark.parametrize(
    ("seconds", "text"), [(5, "5 s"), (600, "10 min"), (7200, "2.0 h"), (3 * 86400, "3.0 d")]
)
def test_human_duration(seconds: float, text: str) -> None:
    assert process_map.human_duration(seconds) == text


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        process_map.to_dot({}, "colourful")
