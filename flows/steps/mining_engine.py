"""Which implementation computes the pm4py numbers: pm4py itself or pmjobs' exact fast paths.

``flows.steps.fastpm`` re-implements the hot pm4py calls (DFG, variants, durations, inductive
miner, token replay) with identical results, many times faster. The plain pm4py path stays
selectable with ``PMJOBS_MINING_ENGINE=pm4py`` so that a user can check any number against
pm4py without changing code; both engines expose the same calls with pm4py's signatures.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

import pandas as pd
import pm4py
from pm4py.objects.petri_net.obj import Marking, PetriNet

ENGINE_ENV = "PMJOBS_MINING_ENGINE"
FAST = "fast"
PLAIN = "pm4py"
ENGINES = (FAST, PLAIN)

Net = tuple[PetriNet, Marking, Marking]


class Engine(Protocol):
    """The pm4py calls the mining stages use; each returns exactly what pm4py returns."""

    name: str

    def discover_dfg(self, frame: pd.DataFrame) -> tuple[dict, dict, dict]: ...
    def discover_performance_dfg_mean(self, frame: pd.DataFrame) -> dict: ...
    def discover_performance_dfg_stats(self, frame: pd.DataFrame) -> dict: ...
    def get_variants(self, frame: pd.DataFrame) -> dict: ...
    def get_all_case_durations(self, frame: pd.DataFrame) -> list[float]: ...
    def get_event_attribute_values(self, frame: pd.DataFrame) -> dict: ...
    def discover_petri_net_inductive(self, frame: pd.DataFrame, noise_threshold: float) -> Net: ...
    def fitness_token_based_replay(self, frame: pd.DataFrame, *net: Any) -> dict: ...
    def precision_token_based_replay(self, frame: pd.DataFrame, *net: Any) -> float: ...
    def token_replay(self, frame: pd.DataFrame, *net: Any) -> tuple[dict, float]: ...


class Pm4pyEngine:
    """The reference: pm4py's simplified interface, as a user would call it."""

    name = PLAIN

    def discover_dfg(self, frame: pd.DataFrame) -> tuple[dict, dict, dict]:
        return pm4py.discover_dfg(frame)

    def discover_performance_dfg_mean(self, frame: pd.DataFrame) -> dict:
        return pm4py.discover_performance_dfg(frame, perf_aggregation_key="mean")[0]

    def discover_performance_dfg_stats(self, frame: pd.DataFrame) -> dict:
        """Mean, median and max per edge (of pm4py's ``perf_aggregation_key="all"``)."""
        stats = pm4py.discover_performance_dfg(frame, perf_aggregation_key="all")[0]
        return {edge: {k: s[k] for k in ("mean", "median", "max")} for edge, s in stats.items()}

    def get_variants(self, frame: pd.DataFrame) -> dict:
        return pm4py.get_variants(frame)

    def get_all_case_durations(self, frame: pd.DataFrame) -> list[float]:
        return pm4py.get_all_case_durations(frame)

    def get_event_attribute_values(self, frame: pd.DataFrame) -> dict:
        return pm4py.get_event_attribute_values(frame, "concept:name")

    def discover_petri_net_inductive(self, frame: pd.DataFrame, noise_threshold: float) -> Net:
        return pm4py.discover_petri_net_inductive(frame, noise_threshold=noise_threshold)

    def fitness_token_based_replay(self, frame: pd.DataFrame, *net: Any) -> dict:
        return pm4py.fitness_token_based_replay(frame, *net)

    def precision_token_based_replay(self, frame: pd.DataFrame, *net: Any) -> float:
        return pm4py.precision_token_based_replay(frame, *net)

    def token_replay(self, frame: pd.DataFrame, *net: Any) -> tuple[dict, float]:
        """Fitness and precision (one call so the fast engine can share its replay memo)."""
        fitness = self.fitness_token_based_replay(frame, *net)
        return fitness, self.precision_token_based_replay(frame, *net)


class FastEngine:
    """pmjobs' fast paths; imported lazily so the plain engine never loads them."""

    name = FAST

    def discover_dfg(self, frame: pd.DataFrame) -> tuple[dict, dict, dict]:
        from flows.steps.fastpm import aggregates

        return aggregates.discover_dfg(frame)

    def discover_performance_dfg_mean(self, frame: pd.DataFrame) -> dict:
        from flows.steps.fastpm import aggregates

        return aggregates.discover_performance_dfg_mean(frame)

    def discover_performance_dfg_stats(self, frame: pd.DataFrame) -> dict:
        from flows.steps.fastpm import aggregates

        return aggregates.discover_performance_dfg_stats(frame)

    def get_variants(self, frame: pd.DataFrame) -> dict:
        from flows.steps.fastpm import aggregates

        return aggregates.get_variants(frame)

    def get_all_case_durations(self, frame: pd.DataFrame) -> list[float]:
        from flows.steps.fastpm import aggregates

        return aggregates.get_all_case_durations(frame)

    def get_event_attribute_values(self, frame: pd.DataFrame) -> dict:
        from flows.steps.fastpm import aggregates

        return aggregates.get_event_attribute_values(frame)

    def discover_petri_net_inductive(self, frame: pd.DataFrame, noise_threshold: float) -> Net:
        from flows.steps.fastpm import inductive

        return inductive.discover_petri_net_inductive(frame, noise_threshold)

    def fitness_token_based_replay(self, frame: pd.DataFrame, *net: Any) -> dict:
        from flows.steps.fastpm import replay

        return replay.fitness_token_based_replay(frame, *net)

    def precision_token_based_replay(self, frame: pd.DataFrame, *net: Any) -> float:
        from flows.steps.fastpm import replay

        return replay.precision_token_based_replay(frame, *net)

    def token_replay(self, frame: pd.DataFrame, *net: Any) -> tuple[dict, float]:
        from flows.steps.fastpm import replay

        return replay.conformance(frame, *net)


_ENGINES: dict[str, Engine] = {FAST: FastEngine(), PLAIN: Pm4pyEngine()}


def current() -> Engine:
    """The engine named by ``PMJOBS_MINING_ENGINE`` (default: fast)."""
    name = os.environ.get(ENGINE_ENV, FAST).strip().lower() or FAST
    if name not in _ENGINES:
        raise ValueError(f"{ENGINE_ENV}={name!r} is not one of {', '.join(ENGINES)}")
    return _ENGINES[name]
