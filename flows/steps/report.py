"""A self-contained HTML report (no external fetches) of a ProcessMiningResult."""

from __future__ import annotations

import html
from typing import Any


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    days, rest = divmod(float(value), 86400)
    hours = rest / 3600
    return f"{int(days)} d {hours:.1f} h" if days else f"{hours:.2f} h"


def render_html(title: str, result: dict[str, Any], svg: bytes) -> bytes:
    log = result.get("log", {})
    durations = result.get("caseDurations", {})
    fitness = result.get("fitness", {})
    variants = result.get("variants", [])[:20]
    total_cases = sum(v["count"] for v in result.get("variants", [])) or 1
    edges = sorted(result.get("dfg", []), key=lambda e: -e["frequency"])[:25]
    svg_text = svg.decode("utf-8")
    if svg_text.startswith("<?xml"):
        svg_text = svg_text.split("?>", 1)[1]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#222}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:left}th{background:#f3f3f3}"
        ".map{overflow:auto;border:1px solid #ddd;padding:8px}"
        ".kpi{display:inline-block;margin-right:2rem}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<section><h2>Log</h2>",
        f"<div class='kpi'><b>{log.get('events', 0):,}</b> events</div>",
        f"<div class='kpi'><b>{log.get('cases', 0):,}</b> cases</div>",
        f"<div class='kpi'><b>{log.get('activities', 0):,}</b> activities</div>",
        f"<div class='kpi'><b>{len(result.get('variants', [])):,}</b> variants</div></section>",
        "<section><h2>Process map</h2><div class='map' id='process-map'>",
        svg_text,
        "</div></section>",
        "<section><h2>Case durations</h2>",
        _table(
            ["min", "median", "mean", "max"],
            [[_seconds(durations.get(k)) for k in ("min", "median", "mean", "max")]],
        ),
        "</section><section><h2>Conformance (token-based replay)</h2>",
        _table(
            ["log fitness", "average trace fitness", "fitting traces", "precision"],
            [
                [
                    f"{fitness.get('logFitness', 0):.4f}",
                    f"{fitness.get('averageTraceFitness', 0):.4f}",
                    f"{fitness.get('percentageFitTraces', 0):.1f}%",
                    f"{result.get('precision', 0):.4f}",
                ]
            ],
        ),
        "</section><section><h2>Top variants</h2>",
        _table(
            ["#", "cases", "share", "activities"],
            [
                [
                    i + 1,
                    v["count"],
                    f"{100 * v['count'] / total_cases:.1f}%",
                    " → ".join(v["activities"]),
                ]
                for i, v in enumerate(variants)
            ],
        ),
        "</section><section><h2>Most frequent transitions</h2>",
        _table(
            ["from", "to", "frequency", "mean time"],
            [
                [e["source"], e["target"], e["frequency"], _seconds(e.get("meanSeconds"))]
                for e in edges
            ],
        ),
        "</section></body></html>",
    ]
    return "".join(parts).encode("utf-8")
