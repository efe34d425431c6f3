"""Structural equality of accepting Petri nets, independent of node names.

pm4py names silent transitions and places arbitrarily (uuids, counters), so two runs of the
same miner never give equal objects. Two nets are the *same model* when a bijection of their
nodes preserves transition labels (None for silent), arcs (with weights) and the tokens of
both markings; that is a labelled-digraph isomorphism, checked exactly with networkx.
:func:`net_differences` gives a readable reason for test failure messages.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import networkx as nx
from pm4py.objects.petri_net.obj import Marking, PetriNet

AcceptingNet = tuple[PetriNet, Marking, Marking]


def _graph(model: AcceptingNet) -> nx.DiGraph:
    net, im, fm = model
    g = nx.DiGraph()
    for t in net.transitions:
        g.add_node(("t", id(t)), kind=("t", t.label))
    for p in net.places:
        g.add_node(("p", id(p)), kind=("p", im.get(p, 0), fm.get(p, 0)))
    for arc in net.arcs:
        src, tgt = arc.source, arc.target
        s = ("t", id(src)) if isinstance(src, PetriNet.Transition) else ("p", id(src))
        d = ("t", id(tgt)) if isinstance(tgt, PetriNet.Transition) else ("p", id(tgt))
        g.add_edge(s, d, weight=arc.weight)
    return g


def _summary(model: AcceptingNet) -> dict[str, Any]:
    """Name-free invariants: label counts, place signatures (labels before/after), markings."""
    net, im, fm = model

    def labels(arcs: Any, end: str) -> tuple[str, ...]:
        return tuple(sorted(str(getattr(a, end).label) for a in arcs))

    places = Counter(
        (labels(p.in_arcs, "source"), labels(p.out_arcs, "target"), im.get(p, 0), fm.get(p, 0))
        for p in net.places
    )
    return {
        "transitions": Counter(str(t.label) for t in net.transitions),
        "places": places,
        "arcs": len(net.arcs),
        "initial": sum(im.values()),
        "final": sum(fm.values()),
    }


def net_differences(a: AcceptingNet, b: AcceptingNet) -> list[str]:
    """Empty list iff the nets are structurally identical; else what differs."""
    sa, sb = _summary(a), _summary(b)
    diffs = [f"{k}: {sa[k]!r} != {sb[k]!r}" for k in sa if sa[k] != sb[k]]
    if diffs:
        return diffs
    ga, gb = _graph(a), _graph(b)
    same = nx.is_isomorphic(
        ga,
        gb,
        node_match=lambda x, y: x["kind"] == y["kind"],
        edge_match=lambda x, y: x["weight"] == y["weight"],
    )
    return [] if same else ["same counts, but no label/marking-preserving isomorphism"]


def nets_equal(a: AcceptingNet, b: AcceptingNet) -> bool:
    return not net_differences(a, b)
