"""Frequency process map (DFG) of a ProcessMiningResult, rendered to SVG by Graphviz ``dot``.

The DOT source is written by hand rather than with the ``graphviz`` package: activity names
are user data, and that package treats labels of the form ``<...>`` as HTML-like labels.
Nodes get synthetic ids (``a0``, ``a1``, ...), so names only ever appear inside quoted,
escaped labels and never in ids, comments or ``<title>`` elements of the SVG.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

DOT_NOT_FOUND = "Graphviz 'dot' not found; install the graphviz package (apt-get install graphviz)"
DOT_TIMEOUT_SECONDS = 120

_DOCTYPE = re.compile(rb"<!DOCTYPE[^>]*>\s*")


def render_svg(result: Mapping[str, Any], mode: str = "frequency") -> bytes:
    """Draw the DFG of ``result``: boxes = activities with counts; edges labelled with their
    frequency (``mode="frequency"``) or mean time between the two events (``"performance"``,
    slow edges drawn red)."""
    dot = shutil.which("dot")
    if dot is None:
        raise RuntimeError(DOT_NOT_FOUND)
    source = to_dot(result, mode)
    try:
        done = subprocess.run(
            [dot, "-Tsvg"],
            input=source.encode("utf-8"),
            capture_output=True,
            check=False,
            timeout=DOT_TIMEOUT_SECONDS,
        )
    except FileNotFoundError as exc:  # removed between which() and run()
        raise RuntimeError(DOT_NOT_FOUND) from exc
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip()
        raise RuntimeError(f"Graphviz 'dot' failed (exit {done.returncode}): {message}")
    # The DOCTYPE points at the W3C DTD on the web; drop it so the file has no external refs.
    return _DOCTYPE.sub(b"", done.stdout, count=1)


def to_dot(result: Mapping[str, Any], mode: str = "frequency") -> str:
    """DOT source of the map; exposed so tests can check it without ``dot``."""
    if mode not in ("frequency", "performance"):
        raise ValueError(f"unknown process map mode {mode!r}")
    dfg: list[Mapping[str, Any]] = list(result.get("dfg", []))
    start: Mapping[str, int] = result.get("startActivities", {})
    end: Mapping[str, int] = result.get("endActivities", {})
    counts = _activity_counts(result)

    endpoints = {e["source"] for e in dfg} | {e["target"] for e in dfg}
    names = sorted(set(counts) | endpoints | set(start) | set(end))
    ids = {name: f"a{i}" for i, name in enumerate(names)}
    top_node = max(counts.values(), default=1) or 1
    top_edge = max([int(e["frequency"]) for e in dfg] + [int(v) for v in start.values()] + [1])

    lines = [
        "digraph process_map {",
        '  graph [rankdir=TB, fontname="Helvetica", bgcolor="white"];',
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9, color="#5a6b7b", fontcolor="#333333"];',
        '  "start" [label="", shape=circle, width=0.3, style=filled, fillcolor="#2e7d32"];',
        '  "end" [label="", shape=doublecircle, width=0.25, style=filled, fillcolor="#c62828"];',
    ]
    for name in names:
        count = int(counts.get(name, 0))
        fill = _fill(count / top_node)
        lines.append(
            f'  {ids[name]} [shape=box, style="rounded,filled", fillcolor="{fill}", '
            f'label="{_label(name)}\\n{count}"];'
        )
    for name, count in start.items():
        lines.append(
            f'  "start" -> {ids[name]} [{_edge_attrs(int(count), top_edge, dashed=True)}];'
        )
    slowest = max([float(e.get("meanSeconds") or 0.0) for e in dfg] + [1.0])
    for e in dfg:
        attrs = _edge_attrs(int(e["frequency"]), top_edge)
        if mode == "performance":
            attrs = _performance_attrs(e, top_edge, slowest)
        lines.append(f"  {ids[e['source']]} -> {ids[e['target']]} [{attrs}];")
    for name, count in end.items():
        lines.append(f'  {ids[name]} -> "end" [{_edge_attrs(int(count), top_edge, dashed=True)}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _activity_counts(result: Mapping[str, Any]) -> dict[str, int]:
    """Occurrences per activity; derived (starts + incoming arcs) if the result lacks them."""
    if result.get("activities"):
        return {str(k): int(v) for k, v in result["activities"].items()}
    counts: dict[str, int] = {str(k): int(v) for k, v in result.get("startActivities", {}).items()}
    for e in result.get("dfg", []):
        counts[e["target"]] = counts.get(e["target"], 0) + int(e["frequency"])
        counts.setdefault(e["source"], 0)
    return counts


def _label(text: str) -> str:
    r"""Escape text for a double-quoted DOT label.

    Backslashes and quotes are DOT escapes; ``&`` becomes the entity ``&#38;`` because
    ``dot`` passes anything that looks like an entity (``&amp;``) through to the SVG
    unchanged, which would alter names that contain one. ``<``/``>`` and non-ASCII are
    escaped by ``dot`` itself. Newlines become ``\n`` (centred line breaks).
    """
    text = str(text).replace("\\", "\\\\").replace('"', '\\"').replace("&", "&#38;")
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def _fill(share: float) -> str:
    """Light-to-dark blue by relative frequency, so busy activities stand out."""
    light, dark = (0xE3, 0xF2, 0xFD), (0x64, 0xB5, 0xF6)
    rgb = [
        round(lo + (hi - lo) * max(0.0, min(1.0, share)))
        for lo, hi in zip(light, dark, strict=True)
    ]
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _edge_attrs(freq: int, top: int, dashed: bool = False) -> str:
    """Label with the frequency; width grows with log(frequency) so rare arcs stay visible."""
    width = 1.0 + 4.0 * math.log1p(freq) / math.log1p(max(top, 1))
    style = ', style="dashed"' if dashed else ""
    return f'label="{freq}", penwidth={width:.2f}{style}'


def _performance_attrs(edge: Mapping[str, Any], top: int, slowest: float) -> str:
    """Label with the mean time; the slower the arc, the redder (width still by frequency)."""
    seconds = float(edge.get("meanSeconds") or 0.0)
    share = math.log1p(seconds) / math.log1p(slowest)
    red = round(0x5A + (0xD3 - 0x5A) * share)
    colour = f"#{red:02x}{round(0x6B * (1 - share)):02x}{round(0x7B * (1 - share)):02x}"
    width = 1.0 + 4.0 * math.log1p(int(edge["frequency"])) / math.log1p(max(top, 1))
    return f'label="{human_duration(seconds)}", penwidth={width:.2f}, color="{colour}"'


def human_duration(seconds: float) -> str:
    """Compact duration for map labels: 45 s, 12 min, 3.5 h, 4.2 d."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
