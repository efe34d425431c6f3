"""PMJOBS_MINING_ENGINE: the fast paths and plain pm4py give the same ProcessMiningResult."""

from __future__ import annotations

from pathlib import Path

import pm4py
import pytest

from flows.steps import mining, mining_engine

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def sepsis():
    path = DATA / "Sepsis Cases - Event Log.xes.gz"
    return pm4py.read_xes(str(path), variant="iterparse", show_progress_bar=False)


def test_default_engine_is_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(mining_engine.ENGINE_ENV, raising=False)
    assert mining_engine.current().name == mining_engine.FAST
    monkeypatch.setenv(mining_engine.ENGINE_ENV, "PM4PY")
    assert mining_engine.current().name == mining_engine.PLAIN


def test_unknown_engine_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mining_engine.ENGINE_ENV, "turbo")
    with pytest.raises(ValueError, match="turbo"):
        mining_engine.current()


def test_both_engines_publish_the_same_result(sepsis, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mining_engine.ENGINE_ENV, mining_engine.PLAIN)
    plain = mining.analyse(sepsis)
    monkeypatch.setenv(mining_engine.ENGINE_ENV, mining_engine.FAST)
    fast = mining.analyse(sepsis)
    assert fast == plain
    assert plain["variants"] and plain["dfg"] and 0 < plain["precision"] < 1
