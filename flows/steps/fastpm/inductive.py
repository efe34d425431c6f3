"""pm4py's inductive miner (IM / IMf on a variant log), same trees and nets, less Python work.

pm4py builds an ``IMDataStructureUVCL`` for every sub-log, and its constructor computes the
directly-follows graph with one ``Counter.update({pair: n})`` call per event pair. The
activity-concurrent fall-through does that once per candidate activity on the whole log (and
then also projects the log for cuts it only needs to *detect*): ~88 % of the run time on
BPIC 2012. This module runs the same recursion as ``InductiveMinerFramework`` / ``IMUVCL`` /
``IMFUVCL`` but

* builds every data structure with a precomputed DFG (``IMDataStructureUVCL(log, dfg)``)
  whose counts and key order equal ``comut.discover_dfg_uvcl`` (key order feeds pm4py's set
  and tie-breaking logic, so it is kept, not just the values);
* tests fall-through candidates with the cuts' ``holds`` only (a cut "applies" iff it holds);
* re-implements the sub-log projections of the cuts and fall-throughs so they return plain
  Counters (same keys, order and counts as pm4py's code, which is mirrored line by line).

Base cases, the cut detection (``holds``), the lists of cuts / fall-throughs (pm4py's own
factories), folding, sorting and the Petri-net conversion are pm4py's own code. An unknown cut
or fall-through class (a pm4py upgrade) raises instead of silently diverging.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Hashable
from copy import copy
from functools import partial
from itertools import chain
from operator import ne
from typing import Any

import numpy as np
import pandas as pd
from pm4py.algo.discovery.inductive.base_case.factory import BaseCaseFactory
from pm4py.algo.discovery.inductive.cuts.concurrency import ConcurrencyCutUVCL
from pm4py.algo.discovery.inductive.cuts.factory import CutFactory
from pm4py.algo.discovery.inductive.cuts.loop import LoopCutUVCL
from pm4py.algo.discovery.inductive.cuts.sequence import (
    SequenceCutUVCL,
    StrictSequenceCutUVCL,
)
from pm4py.algo.discovery.inductive.cuts.xor import ExclusiveChoiceCutUVCL
from pm4py.algo.discovery.inductive.dtypes.im_ds import IMDataStructureUVCL
from pm4py.algo.discovery.inductive.fall_through.activity_concurrent import (
    ActivityConcurrentUVCL,
)
from pm4py.algo.discovery.inductive.fall_through.activity_once_per_trace import (
    ActivityOncePerTraceUVCL,
)
from pm4py.algo.discovery.inductive.fall_through.empty_traces import EmptyTracesUVCL
from pm4py.algo.discovery.inductive.fall_through.factory import FallThroughFactory
from pm4py.algo.discovery.inductive.fall_through.flower import FlowerModelUVCL
from pm4py.algo.discovery.inductive.fall_through.strict_tau_loop import StrictTauLoopUVCL
from pm4py.algo.discovery.inductive.fall_through.tau_loop import TauLoopUVCL
from pm4py.algo.discovery.inductive.variants.instances import IMInstance
from pm4py.objects.conversion.process_tree.variants import to_petri_net
from pm4py.objects.dfg.obj import DFG
from pm4py.objects.petri_net.obj import Marking, PetriNet
from pm4py.objects.process_tree.obj import Operator, ProcessTree
from pm4py.objects.process_tree.utils import generic as pt_util
from pm4py.objects.process_tree.utils.generic import tree_sort

from flows.steps.fastpm.aggregates import get_variants

Trace = tuple[Hashable, ...]
Log = Counter  # Counter[Trace], pm4py's UVCL
Split = tuple[ProcessTree, list[IMDataStructureUVCL]]


# --- data structures ------------------------------------------------------------------------


def dfg_uvcl(log: Log) -> DFG:
    """``comut.discover_dfg_uvcl(log)``: same counts and the same key order.

    pm4py inserts pairs in order of first occurrence (variants in log order, then position)
    and start/end activities in sorted-alphabet order. Here the log is encoded once as
    integer codes (by sorted activity) and the pairs are counted with numpy.
    """
    dfg = DFG()
    traces = list(log)
    alphabet = sorted(set(chain.from_iterable(traces)))
    if not alphabet:
        return dfg
    index = {a: i for i, a in enumerate(alphabet)}
    k = len(alphabet)
    lengths = np.fromiter(map(len, traces), dtype=np.int64, count=len(traces))
    codes = np.fromiter(
        map(index.__getitem__, chain.from_iterable(traces)),
        dtype=np.int64,
        count=int(lengths.sum()),
    )
    weights = np.fromiter(log.values(), dtype=np.int64, count=len(traces))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    trace_of = np.repeat(np.arange(len(traces)), lengths)
    within = trace_of[:-1] == trace_of[1:]
    pairs = codes[:-1][within] * k + codes[1:][within]
    if len(pairs):
        keys, first, inverse = np.unique(pairs, return_index=True, return_inverse=True)
        # Exact: counts are far below 2**53.
        sums = np.bincount(inverse, weights=weights[trace_of[:-1][within]]).astype(np.int64)
        order = np.argsort(first, kind="stable")
        dfg.graph.update(
            {
                (alphabet[p // k], alphabet[p % k]): c
                for p, c in zip(keys[order].tolist(), sums[order].tolist(), strict=True)
            }
        )
    nonempty = lengths > 0
    for target, positions in (
        (dfg.start_activities, starts[nonempty]),
        (dfg.end_activities, ends[nonempty] - 1),
    ):
        at = codes[positions]
        present = np.zeros(k, dtype=bool)
        present[at] = True
        totals = np.bincount(at, weights=weights[nonempty], minlength=k).astype(np.int64).tolist()
        target.update({alphabet[a]: totals[a] for a in np.flatnonzero(present).tolist()})
    return dfg


def _ds(log: Log) -> IMDataStructureUVCL:
    return IMDataStructureUVCL(log, dfg_uvcl(log))


# --- cut projections (pm4py's ``project`` methods, returning Counters) ------------------------


def _project_xor(log: Log, groups: list[set[Any]]) -> list[Log]:
    """``ExclusiveChoiceCutUVCL.project``: each trace goes to the group holding most of its
    events, ties to the *highest* group index (pm4py sorts (count, index) descending)."""
    index = {a: i for i, g in enumerate(groups) for a in g}
    logs: list[Log] = [Counter() for _ in groups]
    n_groups = len(groups)
    for t, n in log.items():
        count = [0] * n_groups
        for e in t:
            i = index.get(e)
            if i is not None:
                count[i] += 1
        best = max(range(n_groups), key=lambda i: (count[i], i))
        chosen = groups[best]
        logs[best].update({tuple(e for e in t if e in chosen): n})
    return logs


def _find_split_point(t: Trace, group: Collection[Any], start: int, ignore: set[Any]) -> int:
    """``SequenceCutUVCL._find_split_point``."""
    least_cost = 0
    position_with_least_cost = start
    cost = 0
    for i in range(start, len(t)):
        e = t[i]
        if e in group:
            cost -= 1
        elif e not in ignore:
            cost += 1
        if cost < least_cost:
            least_cost = cost
            position_with_least_cost = i + 1
    return position_with_least_cost


def _project_sequence(log: Log, groups: list[set[Any]]) -> list[Log]:
    """``SequenceCutUVCL.project``."""
    logs: list[Log] = [Counter() for _ in groups]
    for t, n in log.items():
        split_point = 0
        act_union: set[Any] = set()
        for i, group in enumerate(groups):
            new_split_point = _find_split_point(t, group, split_point, act_union)
            trace_i = tuple(e for e in t[split_point:new_split_point] if e in group)
            logs[i].update({trace_i: n})
            split_point = new_split_point
            act_union = act_union.union(set(group))
    return logs


def _project_concurrency(log: Log, groups: list[set[Any]]) -> list[Log]:
    """``ConcurrencyCutUVCL.project``."""
    result: list[Log] = []
    for g in groups:
        c: Log = Counter()
        for t, n in log.items():
            c[tuple(e for e in t if e in g)] += n
        result.append(c)
    return result


def _append_redo(
    redo_trace: Trace, redo_logs: list[Log], redo_groups: list[set[Any]], card: int
) -> None:
    """``LoopCutUVCL._append_trace_to_redo_log``."""
    if not redo_logs:
        return
    activities = set(redo_trace)
    overlaps = [(i, len(activities.intersection(redo_groups[i]))) for i in range(len(redo_groups))]
    overlaps.sort(key=lambda x: (x[1], x[0]), reverse=True)
    redo_logs[overlaps[0][0]].update({redo_trace: card})


def _project_loop(log: Log, groups: list[set[Any]]) -> list[Log]:
    """``LoopCutUVCL.project``: do-slices to the do log, redo-slices to the best redo log."""
    do = set(groups[0])
    redo_groups = [set(g) for g in groups[1:]]
    redo_activities = set().union(*redo_groups) if redo_groups else set()
    do_log: Log = Counter()
    redo_logs: list[Log] = [Counter() for _ in redo_groups]
    for t, card in log.items():
        do_trace: Trace = ()
        redo_trace: Trace = ()
        for e in t:
            if e in do:
                do_trace += (e,)
                if redo_trace:
                    _append_redo(redo_trace, redo_logs, redo_groups, card)
                    redo_trace = ()
            elif e in redo_activities:
                redo_trace += (e,)
                if do_trace:
                    do_log.update({do_trace: card})
                    do_trace = ()
            else:
                if do_trace:
                    do_log.update({do_trace: card})
                    do_trace = ()
                if redo_trace:
                    _append_redo(redo_trace, redo_logs, redo_groups, card)
                    redo_trace = ()
        if redo_trace:
            _append_redo(redo_trace, redo_logs, redo_groups, card)
        do_log.update({do_trace: card})
    return [do_log, *redo_logs]


_PROJECTIONS: dict[type, Callable[[Log, list[set[Any]]], list[Log]]] = {
    ExclusiveChoiceCutUVCL: _project_xor,
    StrictSequenceCutUVCL: _project_sequence,
    SequenceCutUVCL: _project_sequence,
    ConcurrencyCutUVCL: _project_concurrency,
    LoopCutUVCL: _project_loop,
}


def _cuts(obj: IMDataStructureUVCL, inst: IMInstance, parameters: dict[str, Any]) -> list[type]:
    cuts = CutFactory.get_cuts(obj, inst, parameters)
    unknown = [c for c in cuts if c not in _PROJECTIONS]
    if unknown:
        raise RuntimeError(f"fastpm.inductive does not know pm4py cut(s) {unknown}")
    return cuts


def _find_cut(
    obj: IMDataStructureUVCL, inst: IMInstance, parameters: dict[str, Any]
) -> Split | None:
    """``CutFactory.find_cut`` with our projections."""
    for cut in _cuts(obj, inst, parameters):
        groups = cut.holds(obj, parameters)
        if groups is not None:
            logs = _PROJECTIONS[cut](obj.data_structure, groups)
            return cut.operator(), [_ds(log) for log in logs]
    return None


# --- fall-throughs ----------------------------------------------------------------------------


def _empty_traces(obj: IMDataStructureUVCL) -> tuple[ProcessTree, list[Any]] | None:
    """``EmptyTracesUVCL.apply``."""
    if not any(len(t) == 0 for t in obj.data_structure):
        return None
    data_structure = copy(obj.data_structure)
    del data_structure[()]
    if data_structure:
        return ProcessTree(operator=Operator.XOR), [_ds(Counter()), _ds(data_structure)]
    return ProcessTree(), []


def _alphabet(log: Log) -> list[Any]:
    return sorted({e for t in log for e in t})


def _once_per_trace_candidate(obj: IMDataStructureUVCL) -> Any | None:
    """``ActivityOncePerTraceUVCL._get_candidate``."""
    candidates = set(_alphabet(obj.data_structure))
    for t in obj.data_structure:
        counts = Counter(t)
        candidates &= {a for a, c in counts.items() if c == 1}
        if not candidates:
            return None
    ordered = sorted(candidates)
    return ordered[0] if ordered else None


def _concurrent_candidate(obj: IMDataStructureUVCL, parameters: dict[str, Any]) -> Any | None:
    """``ActivityConcurrentUVCL._get_candidate`` (sequential path), checking cuts by ``holds``.

    pm4py builds the candidate's log with ``l_alt[t'] = log[t]`` (assignment: when two variants
    collapse, the last count wins), so that quirk is kept for the DFG the cuts look at.
    """
    log = obj.data_structure
    for a in _alphabet(log):
        l_alt: Log = Counter()
        for t, n in log.items():
            l_alt[tuple(filter(partial(ne, a), t)) if a in t else t] = n
        alt = _ds(l_alt)
        for cut in CutFactory.get_cuts(alt, IMInstance.IM, parameters=parameters):
            if cut.holds(alt, parameters) is not None:
                return a
    return None


def _split_activity(obj: IMDataStructureUVCL, candidate: Any) -> Split:
    """``ActivityConcurrentUVCL.apply`` once the candidate is known."""
    log = obj.data_structure
    l_a: Log = Counter()
    l_other: Log = Counter()
    for t, n in log.items():
        l_a.update({tuple(e for e in t if e == candidate): n})
        l_other.update({tuple(e for e in t if e != candidate): n})
    return ProcessTree(operator=Operator.PARALLEL), [_ds(l_a), _ds(l_other)]


def _tau_loop(obj: IMDataStructureUVCL, projector: Callable[[Log], Log]) -> Split | None:
    """``StrictTauLoopUVCL.apply`` / ``TauLoopUVCL.apply`` (pm4py computes the projection)."""
    log = obj.data_structure
    proj = projector(log)
    if sum(proj.values()) > sum(log.values()):
        return ProcessTree(operator=Operator.LOOP), [_ds(proj), _ds(Counter())]
    return None


def _flower(obj: IMDataStructureUVCL) -> Split:
    """``FlowerModelUVCL.apply``."""
    redo: Log = Counter()
    for a in _alphabet(obj.data_structure):
        redo[(a,)] = 1
    return ProcessTree(operator=Operator.LOOP), [_ds(Counter()), _ds(redo)]


def _fall_through(
    obj: IMDataStructureUVCL, inst: IMInstance, parameters: dict[str, Any]
) -> tuple[ProcessTree, list[Any]] | None:
    """``FallThroughFactory.fall_through`` with the fast fall-throughs, in pm4py's order."""
    for ft in FallThroughFactory.get_fall_throughs(obj, inst, parameters):
        if ft is EmptyTracesUVCL:
            r = _empty_traces(obj)
        elif ft is ActivityOncePerTraceUVCL:
            c = _once_per_trace_candidate(obj)
            r = None if c is None else _split_activity(obj, c)
        elif ft is ActivityConcurrentUVCL:
            c = _concurrent_candidate(obj, parameters)
            r = None if c is None else _split_activity(obj, c)
        elif ft is StrictTauLoopUVCL:
            r = _tau_loop(obj, StrictTauLoopUVCL._get_projected_log)
        elif ft is TauLoopUVCL:
            r = _tau_loop(obj, TauLoopUVCL._get_projected_log)
        elif ft is FlowerModelUVCL:
            r = _flower(obj) if FlowerModelUVCL.holds(obj, parameters) else None
        else:
            raise RuntimeError(f"fastpm.inductive does not know pm4py fall-through {ft}")
        if r is not None:
            return r
    return None


# --- the recursion (InductiveMinerFramework + IMUVCL / IMFUVCL) -------------------------------


class _Miner:
    def __init__(self, noise_threshold: float) -> None:
        self.noise = noise_threshold
        self.inst = IMInstance.IMf if noise_threshold > 0 else IMInstance.IM
        self.parameters: dict[str, Any] = {
            "noise_threshold": noise_threshold,
            "multiprocessing": False,
            "disable_fallthroughs": False,
        }

    def _recurse(self, tree: ProcessTree, objs: list[IMDataStructureUVCL]) -> ProcessTree:
        children = [self.apply(o) for o in objs]
        for c in children:
            c.parent = tree
        tree.children.extend(children)
        return tree

    def apply(self, obj: IMDataStructureUVCL) -> ProcessTree:
        return self._apply_imf(obj) if self.inst is IMInstance.IMf else self._apply_im(obj)

    def _apply_im(self, obj: IMDataStructureUVCL) -> ProcessTree:
        """``IMUVCL.apply`` then ``InductiveMinerFramework.apply``."""
        empty = _empty_traces(obj)
        if empty is not None:
            return self._recurse(empty[0], empty[1])
        tree = BaseCaseFactory.apply_base_cases(obj, self.inst, self.parameters)
        if tree is None:
            cut = _find_cut(obj, self.inst, self.parameters)
            if cut is not None:
                tree = self._recurse(cut[0], cut[1])
        if tree is None:
            ft = _fall_through(obj, self.inst, self.parameters)
            tree = self._recurse(ft[0], ft[1])  # type: ignore[index]
        return tree

    def _apply_imf(
        self, obj: IMDataStructureUVCL, second_iteration: bool = False
    ) -> ProcessTree | None:
        """``IMFUVCL.apply``."""
        empty = _empty_traces(obj)
        if empty is not None and empty[1]:
            original = sum(y for y in obj.data_structure.values())
            filtered = sum(y for y in empty[1][1].data_structure.values())
            if original - filtered > self.noise * original:
                return self._recurse(empty[0], empty[1])
            obj = empty[1][1]
        tree = BaseCaseFactory.apply_base_cases(obj, self.inst, self.parameters)
        if tree is None:
            cut = _find_cut(obj, self.inst, self.parameters)
            if cut is not None:
                tree = self._recurse(cut[0], cut[1])
            if tree is None and not second_iteration:
                filtered_ds = _filter_dfg_noise(obj, self.noise)
                tree = self._apply_imf(filtered_ds, second_iteration=True)
                if tree is None:
                    ft = _fall_through(obj, self.inst, self.parameters)
                    tree = self._recurse(ft[0], ft[1])  # type: ignore[index]
        return tree


def _filter_dfg_noise(obj: IMDataStructureUVCL, noise_threshold: float) -> IMDataStructureUVCL:
    """``IMFUVCL.__filter_dfg_noise`` (same filtering, same key order)."""
    start_activities = copy(obj.dfg.start_activities)
    end_activities = copy(obj.dfg.end_activities)
    dfg = copy(obj.dfg.graph)
    outgoing_max_occ: dict[Any, int] = {}
    for x, y in dfg.items():
        act = x[0]
        if act not in outgoing_max_occ:
            outgoing_max_occ[act] = y
        else:
            outgoing_max_occ[act] = max(y, outgoing_max_occ[act])
        if act in end_activities:
            outgoing_max_occ[act] = max(outgoing_max_occ[act], end_activities[act])
    kept = {x for x, y in dfg.items() if y > noise_threshold * outgoing_max_occ[x[0]]}
    graph = {x: y for x, y in dfg.items() if x in kept}
    start_max_occ = max(start_activities.values())
    starts = {x: y for x, y in start_activities.items() if y >= start_max_occ * noise_threshold}
    new = DFG()
    for sa in starts:
        new.start_activities[sa] = starts[sa]
    for ea in end_activities:
        new.end_activities[ea] = end_activities[ea]
    for act in graph:
        new.graph[act] = graph[act]
    return IMDataStructureUVCL(obj.data_structure, new)


# --- public API -------------------------------------------------------------------------------


def _check_noise(noise_threshold: float) -> float:
    if not 0.0 <= noise_threshold <= 1.0:
        raise ValueError(f"noise_threshold must be within [0, 1], got {noise_threshold}")
    return float(noise_threshold)


def discover_process_tree_inductive(frame: pd.DataFrame, noise_threshold: float) -> ProcessTree:
    """``pm4py.discover_process_tree_inductive(frame, noise_threshold=...)`` (IMf if > 0)."""
    noise = _check_noise(noise_threshold)
    uvcl: Log = Counter(get_variants(frame))
    tree = _Miner(noise).apply(_ds(uvcl))
    tree = pt_util.fold(tree)
    tree_sort(tree)
    return tree


def discover_petri_net_inductive(
    frame: pd.DataFrame, noise_threshold: float
) -> tuple[PetriNet, Marking, Marking]:
    """``pm4py.discover_petri_net_inductive(frame, noise_threshold=...)``."""
    return to_petri_net.apply(discover_process_tree_inductive(frame, noise_threshold))
