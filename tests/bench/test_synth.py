"""The benchmark log generator: deterministic bytes per seed, and the same log in every format."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pm4py
import pytest

from bench import synth

EVENTS = 3_000


@pytest.mark.parametrize("fmt", synth.FORMATS)
def test_same_seed_same_bytes(tmp_path: Path, fmt: str) -> None:
    first = synth.write(synth.generate(EVENTS, seed=7), tmp_path / f"a.{fmt}", fmt)
    second = synth.write(synth.generate(EVENTS, seed=7), tmp_path / f"b.{fmt}", fmt)
    other = synth.write(synth.generate(EVENTS, seed=8), tmp_path / f"c.{fmt}", fmt)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()


def test_shape_of_the_log() -> None:
    log = synth.generate(20_000, seed=1)
    frame = synth.to_frame(log, text_timestamps=False)
    assert len(frame) == 20_000  # exactly the events asked for
    assert 28 <= frame[synth.ACTIVITY].nunique() <= 34
    per_case = frame.groupby(synth.CASE).size()
    assert 15 <= per_case.iloc[:-1].mean() <= 25  # the last case may be cut short
    ts = frame[synth.TIMESTAMP]
    same_case = frame[synth.CASE].eq(frame[synth.CASE].shift())
    assert not (ts.lt(ts.shift()) & same_case).any(), "time goes backwards inside a case"
    arrivals = frame.loc[~same_case, synth.TIMESTAMP]
    assert (arrivals.dt.day_of_week < 5).all()
    assert arrivals.dt.hour.between(8, 17).all()
    assert frame[synth.RESOURCE].nunique() > 20
    # rework loops and parallel interleavings make many variants, but not one per case
    variants = pm4py.get_variants(pm4py.format_dataframe(frame.copy()))
    assert 10 < len(variants) < per_case.size


def test_every_format_reads_back_as_the_same_log(tmp_path: Path) -> None:
    log = synth.generate(EVENTS, seed=3)
    paths = {fmt: synth.write(log, tmp_path / f"log.{fmt}", fmt) for fmt in synth.FORMATS}
    key = [synth.CASE, synth.ACTIVITY, synth.TIMESTAMP, synth.RESOURCE]
    frames = {
        "csv": pm4py.format_dataframe(pd.read_csv(paths["csv"])),
        "parquet": pm4py.format_dataframe(pd.read_parquet(paths["parquet"])),
        "xes": pm4py.read_xes(str(paths["xes"]), variant="iterparse", show_progress_bar=False),
        "xes.gz": pm4py.read_xes(
            str(paths["xes.gz"]), variant="iterparse", show_progress_bar=False
        ),
    }
    expected = synth.to_frame(log, text_timestamps=False)[key].astype({synth.CASE: str})
    for fmt, frame in frames.items():
        got = frame[key].reset_index(drop=True)
        assert len(got) == EVENTS, fmt
        assert got[synth.CASE].astype(str).tolist() == expected[synth.CASE].tolist(), fmt
        assert got[synth.ACTIVITY].tolist() == expected[synth.ACTIVITY].tolist(), fmt
        assert got[synth.RESOURCE].tolist() == expected[synth.RESOURCE].tolist(), fmt
        assert (got[synth.TIMESTAMP] == expected[synth.TIMESTAMP]).all(), fmt
    xes = frames["xes"]
    assert xes["case:channel"].tolist() == frames["csv"]["case:channel"].tolist()
    assert xes["case:amount"].tolist() == frames["csv"]["case:amount"].tolist()


def test_sizes_parse() -> None:
    assert synth.parse_size("5M") == 5_000_000
    assert synth.parse_size("200k") == 200_000
    assert synth.parse_size("1.5m") == 1_500_000
    assert synth.parse_size("12345") == 12_345
    assert synth.size_label(1_000_000) == "1M"
