"""Process-mining stages of a pmjobs job: pure functions from an event-log DataFrame to JSON.

Every number is what pm4py's simplified interface reports on one canonical frame, computed by
the engine ``PMJOBS_MINING_ENGINE`` selects (:mod:`flows.steps.mining_engine`: exact fast paths
by default, or pm4py itself), so the published ``ProcessMiningResult`` equals pm4py's output:

* columns ``case:concept:name``, ``concept:name``, ``time:timestamp`` (XES names, tz-aware
  timestamps, as produced by ``pm4py.read_xes`` / ``pm4py.format_dataframe``);
* rows in pm4py's stable order: case, timestamp, original position (what
  ``pm4py.format_dataframe`` produces). Some pm4py functions sort internally (DFG, inductive
  miner) but others (start/end activities, variants, case durations, token replay) trust the
  row order, so one canonical order keeps the stages consistent with each other.

:func:`prepare` builds that frame; it is cheap (an O(n) check, no sort) when the input is
already in order, so each stage calls it and :func:`analyse` does not pay for repeated sorts.
The stages never mutate the caller's frame (pm4py's DFG code adds a ``start_timestamp``
column to whatever frame it gets; it gets our private 3-column projection instead).
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pm4py
from pm4py.objects.petri_net.obj import Marking, PetriNet

from flows.steps import mining_engine

CASE = "case:concept:name"
ACTIVITY = "concept:name"
TIMESTAMP = "time:timestamp"
COLUMNS: tuple[str, str, str] = (CASE, ACTIVITY, TIMESTAMP)

DEFAULT_NOISE_THRESHOLD = 0.2

# pm4py copies ``DataFrame.attrs`` into the parameters of every algorithm it runs, so these
# name the columns explicitly and silence the tqdm bars (noise in worker logs) without
# touching pm4py's process-wide configuration. Replacing upstream attrs also drops stale
# keys (e.g. a start-timestamp key naming a column the projection removed).
_PM4PY_ATTRS: dict[str, Any] = {
    "pm4py:param:case_id_key": CASE,
    "pm4py:param:activity_key": ACTIVITY,
    "pm4py:param:attribute_key": ACTIVITY,
    "pm4py:param:timestamp_key": TIMESTAMP,
    "show_progress_bar": False,
}


@dataclass(frozen=True)
class PetriModel:
    """Accepting Petri net discovered by the inductive miner (pm4py objects, not JSON)."""

    net: PetriNet
    initial_marking: Marking
    final_marking: Marking
    noise_threshold: float = DEFAULT_NOISE_THRESHOLD

    def to_pnml_bytes(self) -> bytes:
        """Serialise as PNML; pm4py only writes to paths, hence the temporary file."""
        with tempfile.TemporaryDirectory(prefix="pmjobs-pnml-") as tmp:
            path = Path(tmp) / "model.pnml"
            pm4py.write_pnml(self.net, self.initial_marking, self.final_marking, str(path))
            return path.read_bytes()


def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """Return a private 3-column copy of ``df`` in pm4py's stable order.

    Rows missing a case id, activity or timestamp are dropped (as ``pm4py.format_dataframe``
    does). Rows are re-sorted by (case, timestamp) with a stable sort only when some case is
    split into several blocks or goes back in time; the order of whole case blocks is left
    alone because no pm4py result used here depends on it.
    """
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"event log is missing column(s) {missing}; expected XES column names")
    if not pd.api.types.is_datetime64_any_dtype(df[TIMESTAMP]):
        raise TypeError(f"column {TIMESTAMP!r} must hold datetimes, not {df[TIMESTAMP].dtype}")
    frame = df[list(COLUMNS)]
    if frame.isna().to_numpy().any():
        frame = frame.dropna()
    if frame.empty:
        raise ValueError("event log has no complete events (case id, activity and timestamp)")
    if not _in_case_timestamp_order(frame):
        # Multi-key sort_values is a stable lexsort, so ties keep their original position.
        frame = frame.sort_values([CASE, TIMESTAMP], kind="stable")
    frame = frame.reset_index(drop=True)
    frame.attrs = dict(_PM4PY_ATTRS)
    return frame


def _in_case_timestamp_order(frame: pd.DataFrame) -> bool:
    """True when each case is one contiguous block with non-decreasing timestamps."""
    case = frame[CASE]
    same_case = case.eq(case.shift()).to_numpy(dtype=bool, na_value=False)
    if int((~same_case).sum()) != case.nunique():
        return False
    ts = frame[TIMESTAMP]
    backwards = ts.lt(ts.shift()).to_numpy(dtype=bool, na_value=False)
    return not bool((backwards & same_case).any())


def discover_frequencies(df: pd.DataFrame) -> dict[str, Any]:
    """Frequency + performance DFG, start/end activities and activity counts.

    ``dfg`` is ordered by frequency (descending), then source, then target, so the JSON is
    stable across runs. ``meanSeconds`` is pm4py's performance-DFG mean for the edge.
    """
    frame = prepare(df)
    engine = mining_engine.current()
    frequency, start, end = engine.discover_dfg(frame)
    performance = engine.discover_performance_dfg_mean(frame)
    activities = engine.get_event_attribute_values(frame)
    edges = [
        {
            "source": str(source),
            "target": str(target),
            "frequency": int(count),
            "meanSeconds": float(performance[(source, target)]),
        }
        for (source, target), count in frequency.items()
    ]
    edges.sort(key=lambda e: (-e["frequency"], e["source"], e["target"]))
    return {
        "activities": _counts(activities),
        "dfg": edges,
        "startActivities": _counts(start),
        "endActivities": _counts(end),
    }


def discover_variants(df: pd.DataFrame) -> list[dict[str, Any]]:
    """All variants, most frequent first.

    Ties are broken the way pm4py's ``get_variants_sorted_by_count`` does: by the activity
    sequence in descending lexicographic (code point) order, i.e. sort key
    ``(count, activities)`` reversed. This does not depend on case ids or row order.
    """
    variants = mining_engine.current().get_variants(prepare(df))
    ordered = sorted(
        ((tuple(str(a) for a in acts), int(count)) for acts, count in variants.items()),
        key=lambda item: (item[1], item[0]),
        reverse=True,
    )
    return [{"activities": list(acts), "count": count} for acts, count in ordered]


def case_durations(df: pd.DataFrame) -> dict[str, Any]:
    """Summary of pm4py's case durations (last minus first timestamp, seconds).

    ``mean`` uses ``statistics.fmean`` (an exactly rounded ``math.fsum``), so it does not
    depend on summation order; ``median`` averages the two middle values for even counts.
    """
    durations = [float(d) for d in mining_engine.current().get_all_case_durations(prepare(df))]
    return {
        "count": len(durations),
        "min": min(durations),
        "max": max(durations),
        "mean": statistics.fmean(durations),
        "median": float(statistics.median(durations)),
    }


def discover_model(
    df: pd.DataFrame, noise_threshold: float = DEFAULT_NOISE_THRESHOLD
) -> PetriModel:
    """Inductive miner Petri net (IMf when ``noise_threshold`` > 0, plain IM at 0)."""
    if not 0.0 <= noise_threshold <= 1.0:
        raise ValueError(f"noise_threshold must be within [0, 1], got {noise_threshold}")
    net, im, fm = mining_engine.current().discover_petri_net_inductive(
        prepare(df), float(noise_threshold)
    )
    return PetriModel(net, im, fm, float(noise_threshold))


def conformance(df: pd.DataFrame, model: PetriModel) -> dict[str, Any]:
    """Token-based replay fitness and ETConformance precision of ``model`` on the log.

    ``percentageFitTraces`` is on pm4py's 0-100 scale; the other values are in [0, 1].
    """
    frame = prepare(df)
    net, im, fm = model.net, model.initial_marking, model.final_marking
    fitness, precision = mining_engine.current().token_replay(frame, net, im, fm)
    return {
        "fitness": {
            "averageTraceFitness": float(fitness["average_trace_fitness"]),
            "logFitness": float(fitness["log_fitness"]),
            "percentageFitTraces": float(fitness["percentage_of_fitting_traces"]),
        },
        "precision": float(precision),
    }


def analyse(df: pd.DataFrame, noise_threshold: float = DEFAULT_NOISE_THRESHOLD) -> dict[str, Any]:
    """All stages in one call: the ``ProcessMiningResult`` dict (camelCase, JSON-able)."""
    frame = prepare(df)
    model = discover_model(frame, noise_threshold)
    return {
        **discover_frequencies(frame),
        "variants": discover_variants(frame),
        "caseDurations": case_durations(frame),
        **conformance(frame, model),
        "noiseThreshold": model.noise_threshold,
    }


def _counts(mapping: dict[Any, Any]) -> dict[str, int]:
    """Plain ``{str: int}``, most frequent first then by name, for stable JSON."""
    items = sorted(((str(k), int(v)) for k, v in mapping.items()), key=lambda kv: (-kv[1], kv[0]))
    return dict(items)
