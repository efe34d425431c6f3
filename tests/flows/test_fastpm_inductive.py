"""flows.steps.fastpm.inductive against pm4py's inductive miner on real logs.

Both the process tree (its canonical string, after pm4py's own fold + sort) and the Petri net
(structurally, via fastpm.netcompare: node names are random) must be identical.
"""

from __future__ import annotations

import copy

import pandas as pd
import pm4py
import pytest
from pm4py.objects.petri_net.utils import petri_utils

from flows.steps.fastpm import PM4PY_VERSION, inductive
from flows.steps.fastpm.netcompare import net_differences, nets_equal
from tests.flows.test_fastpm_aggregates import LOG_PARAMS, load_frame

NOISE = [0.0, 0.2, 0.5]


def test_pm4py_version_is_pinned() -> None:
    """The miner re-implements pm4py's recursion: an upgrade must be re-validated."""
    assert pm4py.__version__ == PM4PY_VERSION


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {}


@pytest.mark.parametrize("log", LOG_PARAMS)
def test_same_tree_and_net_as_pm4py(log: str, frames: dict[str, pd.DataFrame]) -> None:
    if log not in frames:
        frames[log] = load_frame(log)
    frame = frames[log]
    for noise in NOISE:
        want_tree = pm4py.discover_process_tree_inductive(frame.copy(), noise_threshold=noise)
        got_tree = inductive.discover_process_tree_inductive(frame, noise)
        assert str(got_tree) == str(want_tree), noise
        want = pm4py.discover_petri_net_inductive(frame.copy(), noise_threshold=noise)
        got = inductive.discover_petri_net_inductive(frame, noise)
        assert net_differences(got, want) == [], noise


def test_dfg_uvcl_equals_pm4py_including_order() -> None:
    from collections import Counter

    from pm4py.util.compression import util as comut

    log = Counter({("b", "a", "b"): 3, ("a",): 2, (): 4, ("c", "b", "a", "a"): 1, ("b",): 5})
    want = comut.discover_dfg_uvcl(log)
    got = inductive.dfg_uvcl(log)
    for attr in ("graph", "start_activities", "end_activities"):
        assert list(getattr(got, attr).items()) == list(getattr(want, attr).items()), attr


def test_invalid_noise_threshold_is_rejected() -> None:
    frame = load_frame("roadtraffic")
    with pytest.raises(ValueError, match="noise_threshold"):
        inductive.discover_petri_net_inductive(frame, 1.5)


# --- the comparison helper must be able to fail --------------------------------------------


@pytest.fixture(scope="module")
def model() -> tuple:
    return pm4py.discover_petri_net_inductive(load_frame("roadtraffic"), noise_threshold=0.2)


def test_netcompare_accepts_a_renamed_copy(model: tuple) -> None:
    net, im, fm = copy.deepcopy(model)
    for i, node in enumerate([*net.places, *net.transitions]):
        node.name = f"renamed-{i}"
    assert nets_equal((net, im, fm), model)


def test_netcompare_detects_a_removed_arc(model: tuple) -> None:
    net, im, fm = copy.deepcopy(model)
    petri_utils.remove_arc(net, next(iter(net.arcs)))
    assert net_differences((net, im, fm), model)


def test_netcompare_detects_a_rewired_arc(model: tuple) -> None:
    """Same counts of everything; only where one arc ends differs."""
    net, im, fm = copy.deepcopy(model)
    arc = next(a for a in net.arcs if isinstance(a.target, type(next(iter(net.places)))))
    others = [p for p in net.places if p is not arc.target and p not in im and p not in fm]
    source = arc.source
    petri_utils.remove_arc(net, arc)
    petri_utils.add_arc_from_to(source, others[0], net)
    assert not nets_equal((net, im, fm), model)


def test_netcompare_detects_label_and_marking_changes(model: tuple) -> None:
    net, im, fm = copy.deepcopy(model)
    visible = next(t for t in net.transitions if t.label is not None)
    visible.label = visible.label + " (changed)"
    assert not nets_equal((net, im, fm), model)
    net, im, fm = copy.deepcopy(model)
    fm[next(iter(fm))] = 2
    assert not nets_equal((net, im, fm), model)
