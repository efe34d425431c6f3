"""Token-based replay fitness and ETConformance precision, equal to pm4py 2.7.23.11 but fast.

pm4py replays every variant (fitness) and every distinct prefix (precision: 56,841 of them on
BPIC 2012) from the initial marking, searching the invisible transitions again each time. Yet
one replay step only depends on the current marking and the next activity: ``apply_trace``
handles each event from the marking alone (fresh visited set, append-only transition lists;
its caches are off unless ``is_reduction``). So this module transcribes one iteration of
``apply_trace``'s loop and its final-marking phase, memoises them per ``(marking, activity)``
and per end marking, and walks a prefix trie for precision. The invisible-transition search,
token helpers and the "eventually enabled" search are pm4py's own functions; the only
arithmetic here is integer token sums (order-free) and apply_trace's per-trace fitness formula
on the same integers, and the log-level aggregation is pm4py's own ``evaluate``.

Dict order matters: a marking is keyed by its items *in insertion order*, because the sink
search of the final-marking phase keeps that order on ties. The searches inside a step and the
"eventually enabled" search only read tokens or places sorted by name, so with unique place
names *what* they fire is memoised per token content, and each ordered marking is then moved
by that same firing sequence (copy, execute, add tokens), reproducing pm4py's order exactly.

Anything not proven identical falls back to plain pm4py: another pm4py version, activity
names containing the prefix separator ``,`` (precision joins prefixes on it and splits them
again), non-string activities, non-integer arc weights or token counts, inputs other than a
DataFrame and frames whose ``attrs`` change the replay. ``tests/flows/test_fastpm_replay.py``
checks each memoised step against pm4py's ``apply_trace`` and the results on real logs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable
from copy import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pm4py
from pm4py.algo.conformance.tokenreplay.variants import token_replay as tbr
from pm4py.algo.evaluation.replay_fitness.variants import token_replay as tbr_fitness
from pm4py.objects.petri_net import semantics
from pm4py.objects.petri_net.obj import Marking, PetriNet
from pm4py.objects.petri_net.utils.align_utils import (
    get_visible_transitions_eventually_enabled_by_marking,
)
from pm4py.objects.petri_net.utils.petri_utils import get_places_shortest_path_by_hidden
from pm4py.util import constants, pandas_utils

PM4PY_VERSION = "2.7.23.11"
"""The pm4py release whose internals this module mirrors (tests fail loudly on another)."""

CASE = constants.CASE_CONCEPT_NAME
ACTIVITY = "concept:name"
TIMESTAMP = "time:timestamp"
PREFIX_SEPARATOR = constants.DEFAULT_VARIANT_SEP

# Frame attrs that pm4py's simplified interface would forward and that change the replay.
_REPLAY_CHANGING_ATTRS = frozenset({"cleaning_token_flood", "token_replay_variant"})

MarkingKey = tuple[tuple[PetriNet.Place, Any], ...]


@dataclass(frozen=True, slots=True)
class _Step:
    """Effect of replaying one activity from one marking (one apply_trace iteration)."""

    marking: Marking
    key: MarkingKey
    missing: int
    consumed: int
    produced: int
    # Steps already taken from this state, by activity: the hot path skips hashing ``key``.
    after: dict[str, _Step] = field(default_factory=dict, compare=False, repr=False)

    @property
    def fits(self) -> bool:
        """No token was missing, i.e. pm4py's precision replay (stop when unfit) goes on."""
        return self.missing == 0


@dataclass(frozen=True, slots=True)
class _Move:
    """What one apply_trace iteration fires from a token content, and its token counts."""

    transition: PetriNet.Transition | None  # None: activity not in the model, nothing moves
    walked: bool  # the invisible-transition search ran (on a copy of the marking)
    fired: tuple[PetriNet.Transition, ...]  # invisible transitions it fired, in order
    added: bool  # missing tokens were added before firing ``transition``
    executed: bool
    missing: int
    consumed: int
    produced: int


@dataclass(frozen=True, slots=True)
class _Ending:
    """Effect of pm4py's final-marking phase (invisible moves to the sink) from a marking."""

    missing: int
    consumed: int
    produced: int
    remaining: int


@dataclass(slots=True)
class _Node:
    """Prefix-trie node: the replay state after the prefix, and what the log does next."""

    step: _Step | None  # None: the prefix does not fit (pm4py stops replaying it)
    children: dict[str, _Node] = field(default_factory=dict)
    next_activities: set[str] = field(default_factory=set)
    count: int = 0


def _key(marking: Marking) -> MarkingKey:
    return tuple(marking.items())


def _token_sum(marking: Marking) -> int:
    total = 0
    for place in marking:  # same loop as apply_trace's sum_tokens_im
        total = total + marking[place]
    return total


class _Replayer:
    """pm4py's token replay of one accepting net, memoised per (marking, activity)."""

    def __init__(self, net: PetriNet, im: Marking, fm: Marking) -> None:
        self.net = net
        self.im = im
        self.fm = fm
        # Built exactly as apply_log does (label -> last transition by name).
        self.trans_map: dict[Any, PetriNet.Transition] = {}
        for t in sorted(list(net.transitions), key=lambda x: x.name):
            self.trans_map[t.label] = t
        label_counts = Counter(t.label for t in net.transitions)
        self.unique_labels = {label for label, n in label_counts.items() if n == 1}
        self.spaths = get_places_shortest_path_by_hidden(
            net, tbr.TechnicalParameters.MAX_REC_DEPTH.value
        )
        start = copy(im)  # apply_trace starts from copy(initial_marking)
        self.initial = _Step(start, _key(start), 0, 0, 0)
        self.initial_tokens = _token_sum(im)
        self._steps: dict[tuple[MarkingKey, str], _Step] = {}
        self._moves: dict[tuple[Hashable, str], _Move] = {}
        self._endings: dict[MarkingKey, _Ending] = {}
        self._enabled: dict[Hashable, frozenset[str]] = {}
        self.unique_place_names = len({p.name for p in net.places}) == len(net.places)

    def step(self, state: _Step, activity: str) -> _Step:
        """Replay ``activity`` from ``state.marking`` as one iteration of apply_trace's loop.

        What fires is decided once per token content (:meth:`_move`); the reached marking is
        then rebuilt from this state's own marking by the same copy/execute/add sequence
        pm4py performs, so its dict order is exactly pm4py's too.
        """
        found = state.after.get(activity)
        if found is not None:
            return found
        memo_key = (state.key, activity)
        found = self._steps.get(memo_key)
        if found is None:
            content = frozenset(state.key) if self.unique_place_names else state.key
            move = self._moves.get((content, activity))
            if move is None:
                move = self._moves[(content, activity)] = self._move(state.marking, activity)
            marking = state.marking
            if move.walked:  # apply_hidden_trans works on a copy and fires by execute()
                marking = copy(marking)
                for hidden in move.fired:
                    marking = semantics.execute(hidden, self.net, marking)
            if move.added:  # in place, on that copy (a walk always precedes it)
                tbr.add_missing_tokens(move.transition, marking)
            if move.executed:
                marking = semantics.execute(move.transition, self.net, marking)
            found = _Step(marking, _key(marking), move.missing, move.consumed, move.produced)
            self._steps[memo_key] = found
        state.after[activity] = found
        return found

    def _move(self, marking: Marking, activity: str) -> _Move:
        """One iteration of apply_trace's loop, recording what it fires and counts.

        Transcribed from pm4py 2.7.23.11 ``apply_trace`` with the options both evaluators
        use (walk through hidden transitions, no place/transition diagnostics, no token-flood
        cleaning); the invisible-transition search and token helpers are pm4py's own.
        ``act_tr``/``vis_mark`` only ever get appended to, so starting them empty changes
        nothing but the list lengths, and the visited set is fresh per event in pm4py too.
        Every decision reads tokens only, or places sorted by name: with unique place names
        it does not depend on the marking's dict order (else moves are keyed by that order).
        """
        if activity not in self.trans_map:
            return _Move(None, False, (), False, False, 0, 0, 0)
        net = self.net
        missing = consumed = produced = 0
        if activity in self.unique_labels:
            # The only transition with this label is both the first enabled one and
            # trans_map's fallback, so pm4py's scan of all enabled transitions is moot.
            t = self.trans_map[activity]
        else:
            corr_en_t = [
                x for x in semantics.enabled_transitions(net, marking) if x.label == activity
            ]
            t = corr_en_t[0] if corr_en_t else self.trans_map[activity]
        walked = not semantics.is_enabled(t, net, marking)
        fired: list[PetriNet.Transition] = []
        if walked:
            _, marking, fired, _ = tbr.apply_hidden_trans(
                t, net, copy(marking), self.spaths, [], 0, set(), [], False
            )
            for hidden in fired:
                consumed += tbr.get_consumed_tokens(hidden)[0]
                produced += tbr.get_produced_tokens(hidden)[0]
        added = not semantics.is_enabled(t, net, marking)
        if added:
            # ``marking`` is apply_hidden_trans's copy here, never a memoised object.
            missing += tbr.add_missing_tokens(t, marking)[0]
        consumed += tbr.get_consumed_tokens(t)[0]
        produced += tbr.get_produced_tokens(t)[0]
        executed = semantics.is_enabled(t, net, marking)
        return _Move(t, walked, tuple(fired), added, executed, missing, consumed, produced)

    def ending(self, state: _Step) -> _Ending:
        """apply_trace's final-marking phase and token accounting from ``state.marking``.

        Transcribed from pm4py 2.7.23.11 (``try_to_reach_final_marking_through_hidden``,
        no postfix cache, no token-flood cleaning, so ``current_remaining_map`` is empty).
        """
        found = self._endings.get(state.key)
        if found is not None:
            return found
        net, fm, spaths = self.net, self.fm, self.spaths
        marking = copy(state.marking)  # the remaining-token count below mutates it
        consumed = produced = 0
        for _ in range(tbr.TechnicalParameters.MAX_IT_FINAL1.value):
            if not tbr.break_condition_final_marking(marking, fm):
                for group in tbr.get_req_transitions_for_final_marking(marking, fm, spaths):
                    for t in group:
                        if semantics.is_enabled(t, net, marking):
                            marking = semantics.execute(t, net, marking)
                            consumed += tbr.get_consumed_tokens(t)[0]
                            produced += tbr.get_produced_tokens(t)[0]
                    if tbr.break_condition_final_marking(marking, fm):
                        break
            else:
                break
        if not tbr.break_condition_final_marking(marking, fm) and len(fm) == 1:
            sink_place = list(fm)[0]
            connections_to_sink = []
            for place in marking:  # dict order: the stable sort keeps it on ties
                if place in spaths and sink_place in spaths[place]:
                    connections_to_sink.append([place, spaths[place][sink_place]])
            connections_to_sink = sorted(connections_to_sink, key=lambda x: len(x[1]))
            for _ in range(tbr.TechnicalParameters.MAX_IT_FINAL2.value):
                for _place, path in connections_to_sink:
                    for t in path:
                        if semantics.is_enabled(t, net, marking):
                            marking = semantics.execute(t, net, marking)
                            consumed += tbr.get_consumed_tokens(t)[0]
                            produced += tbr.get_produced_tokens(t)[0]
                        else:
                            break
        missing = 0
        for p in fm:
            diff = fm[p] - marking[p]
            if diff > 0:
                missing += diff
        remaining = 0
        for p in marking:
            if p in fm:
                marking[p] = max(0, marking[p] - fm[p])
            remaining = remaining + marking[p]
        for p in fm:
            consumed += fm[p]
        ending = _Ending(missing, consumed, produced, remaining)
        self._endings[state.key] = ending
        return ending

    def enabled_labels(self, state: _Step) -> frozenset[str]:
        """Labels of the visible transitions pm4py's precision counts as enabled."""
        # The search sorts places by name (and dedups states by that sorted repr), so with
        # unique place names its result depends on the tokens only, not on the dict order:
        # far fewer distinct keys (121 instead of 1,314 on Sepsis with IM at noise 0).
        key: Hashable = frozenset(state.key) if self.unique_place_names else state.key
        found = self._enabled.get(key)
        if found is None:
            enabled = get_visible_transitions_eventually_enabled_by_marking(
                self.net, copy(state.marking)
            )
            found = frozenset(t.label for t in enabled if t.label is not None)
            self._enabled[key] = found
        return found

    def replay_variant(self, activities: tuple[str, ...]) -> dict[str, Any]:
        """The fields of pm4py's per-trace result that the fitness evaluation reads."""
        state = self.initial
        missing = consumed = 0
        produced = self.initial_tokens
        for activity in activities:
            state = self.step(state, activity)
            missing += state.missing
            consumed += state.consumed
            produced += state.produced
        is_fit = missing == 0  # before the final marking's missing tokens, as in pm4py
        end = self.ending(state)
        missing += end.missing
        consumed += end.consumed
        produced += end.produced
        remaining = end.remaining
        is_fit = is_fit and remaining == 0
        # apply_trace's own formula, on the same integers.
        if consumed > 0 and produced > 0:
            trace_fitness = 0.5 * (1.0 - float(missing) / float(consumed)) + 0.5 * (
                1.0 - float(remaining) / float(produced)
            )
        else:
            trace_fitness = 1.0
        return {
            "trace_is_fit": is_fit,
            "trace_fitness": float(trace_fitness),
            "missing_tokens": int(missing),
            "consumed_tokens": int(consumed),
            "remaining_tokens": int(remaining),
            "produced_tokens": int(produced),
        }


def _traces(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """``pandas_utils.get_traces(frame, CASE, ACTIVITY)``, without a Python call per case.

    get_traces is ``groupby(CASE)[ACTIVITY].agg(list)``: cases in groupby's (sorted) group
    order, events in row order. ``ngroup`` numbers rows by that very group order, so a stable
    sort on it gives the same sequences (seconds instead of a minute on BPIC 2012 under load).
    """
    ngroup = frame.groupby(CASE, sort=True).ngroup().to_numpy()
    if ngroup.dtype.kind not in "iu" or (len(ngroup) and ngroup.min() < 0):
        return pandas_utils.get_traces(frame, CASE, ACTIVITY)  # null case ids: pm4py's way
    order = np.argsort(ngroup, kind="stable")
    activities = frame[ACTIVITY].to_numpy(dtype=object)[order].tolist()
    traces: list[tuple[Any, ...]] = []
    start = 0
    for end in np.cumsum(np.bincount(ngroup)).tolist():
        traces.append(tuple(activities[start:end]))
        start = end
    return traces


def _unsupported(frame: Any, net: PetriNet, im: Marking, fm: Marking) -> bool:
    """True when the fast path is not proven identical to pm4py for these inputs."""
    if pm4py.__version__ != PM4PY_VERSION:
        return True
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        return True
    if _REPLAY_CHANGING_ATTRS & set(getattr(frame, "attrs", {}) or {}):
        return True
    for t in net.transitions:
        for arc in (*t.in_arcs, *t.out_arcs):
            if type(arc.weight) is not int:
                return True
    return any(type(v) is not int for m in (im, fm) for v in m.values())


def _plain_activities(activities: Iterable[Hashable]) -> bool:
    return all(type(a) is str for a in activities)


def _checked_traces(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """The traces, after the column check pm4py's simplified interface does first."""
    pandas_utils.check_pandas_dataframe_columns(
        frame, activity_key=ACTIVITY, case_id_key=CASE, timestamp_key=TIMESTAMP
    )
    return _traces(frame)


def _activities(traces: Iterable[tuple[Any, ...]]) -> set[Any]:
    return {a for variant in set(traces) for a in variant}


def _precision_supported(activities: set[Any]) -> bool:
    """pm4py joins prefixes with "," and splits them again: only comma-free names survive."""
    return _plain_activities(activities) and not any(PREFIX_SEPARATOR in a for a in activities)


def fitness_token_based_replay(
    frame: pd.DataFrame, net: PetriNet, im: Marking, fm: Marking
) -> dict[str, float]:
    """Same dict as ``pm4py.fitness_token_based_replay(frame, net, im, fm)``."""
    if _unsupported(frame, net, im, fm):
        return pm4py.fitness_token_based_replay(frame, net, im, fm)
    traces = _checked_traces(frame)
    if not _plain_activities(_activities(traces)):
        return pm4py.fitness_token_based_replay(frame, net, im, fm)
    return _fitness(_Replayer(net, im, fm), traces)


def precision_token_based_replay(
    frame: pd.DataFrame, net: PetriNet, im: Marking, fm: Marking
) -> float:
    """Same value as ``pm4py.precision_token_based_replay(frame, net, im, fm)``."""
    if _unsupported(frame, net, im, fm):
        return pm4py.precision_token_based_replay(frame, net, im, fm)
    traces = _checked_traces(frame)
    if not _precision_supported(_activities(traces)):
        return pm4py.precision_token_based_replay(frame, net, im, fm)
    return _precision(_Replayer(net, im, fm), traces, int(frame[CASE].nunique()))


def conformance(
    frame: pd.DataFrame, net: PetriNet, im: Marking, fm: Marking
) -> tuple[dict[str, float], float]:
    """Both of the above, sharing one replay memo (precision reuses fitness's steps)."""
    if _unsupported(frame, net, im, fm):
        return (
            pm4py.fitness_token_based_replay(frame, net, im, fm),
            pm4py.precision_token_based_replay(frame, net, im, fm),
        )
    traces = _checked_traces(frame)
    activities = _activities(traces)
    if not _plain_activities(activities):
        return (
            pm4py.fitness_token_based_replay(frame, net, im, fm),
            pm4py.precision_token_based_replay(frame, net, im, fm),
        )
    replayer = _Replayer(net, im, fm)
    fitness = _fitness(replayer, traces)
    if _precision_supported(activities):
        precision = _precision(replayer, traces, int(frame[CASE].nunique()))
    else:
        precision = pm4py.precision_token_based_replay(frame, net, im, fm)
    return fitness, precision


def _fitness(replayer: _Replayer, traces: list[tuple[Any, ...]]) -> dict[str, float]:
    per_variant = {v: replayer.replay_variant(v) for v in set(traces)}
    # pm4py's evaluation over one result per trace, in trace order (float sums are ordered).
    return tbr_fitness.evaluate([per_variant[t] for t in traces])


def _precision(replayer: _Replayer, traces: list[tuple[Any, ...]], n_traces: int) -> float:
    """pm4py's ETConformance over a prefix trie instead of one replay per prefix.

    Exact only for comma-free activity names (see :func:`_precision_supported`).
    """
    net = replayer.net
    # The empty prefix (pm4py's "fix"): start activities vs. what the initial marking enables.
    start_activities = {t[0] for t in traces if len(t) > 0}
    enabled_at_start = {
        t.label for t in get_visible_transitions_eventually_enabled_by_marking(net, replayer.im)
    }
    sum_at = n_traces * len(enabled_at_start)
    sum_ee = n_traces * len(enabled_at_start.difference(start_activities))

    # pm4py's prefixes are trace[0:i] for 1 <= i < len(trace), counted once per case.
    root = _Node(replayer.initial)
    nodes: list[_Node] = []
    for variant, count in Counter(traces).items():
        node = root
        for i, activity in enumerate(variant):
            if i > 0:
                node.next_activities.add(activity)
                node.count += count
            child = node.children.get(activity)
            if child is None:
                step = None
                if node.step is not None:
                    step = replayer.step(node.step, activity)
                    if not step.fits:
                        step = None  # stop_immediately_unfit: the prefix is not fit
                child = node.children[activity] = _Node(step)
                nodes.append(child)
            node = child

    for node in nodes:
        if node.count and node.step is not None:
            labels = replayer.enabled_labels(node.step)
            sum_at += len(labels) * node.count
            sum_ee += len(labels.difference(node.next_activities)) * node.count

    precision = 1.0
    if sum_at > 0:
        precision = 1 - float(sum_ee) / float(sum_at)
    return precision
