"""A self-contained HTML report of a ProcessMiningResult, for a process analyst.

One file, opened from disk or e-mailed: CSS is inline, the process maps are the Graphviz SVGs
inlined, charts are SVG drawn here, and the only script is a few inline lines that record
script errors for automated checks (the map toggle is pure CSS).
Nothing references the network, so the report looks the same offline and leaks nothing.

Every section is optional except the summary: a section is rendered only when its part of
the result is present, so reports of basic analyses (only the ``mining.analyse`` keys) and
of comprehensive ones both read well. Every string from the data is HTML-escaped (activity,
resource and case names are user data).
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

TOP_VARIANTS = 20
TOP_ROWS = 20
MAX_ANOMALY_ROWS = 100
ANOMALY_ROWS_SHOWN = 20
MAX_VARIANT_STEPS = 40

Result = Mapping[str, Any]

# Colour-blind-safe pair (blue / orange) plus neutrals; contrast >= 4.5:1 on white for text.
_CSS = """
:root{--ink:#1f2933;--muted:#52606d;--line:#d9e2ec;--soft:#f5f7fa;--blue:#2f6fab;
--orange:#d9822b;--red:#b42318;--green:#2e7d32}
*{box-sizing:border-box}
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--ink);margin:0;background:#fff}
header.top{padding:1.5rem 2rem 1rem;border-bottom:1px solid var(--line);background:var(--soft)}
header.top h1{margin:0 0 .25rem;font-size:1.6rem}
header.top p{margin:0;color:var(--muted)}
nav.toc{padding:.5rem 2rem;border-bottom:1px solid var(--line);font-size:.9rem}
nav.toc a{margin-right:1rem;color:var(--blue);text-decoration:none;white-space:nowrap}
nav.toc a:hover,nav.toc a:focus{text-decoration:underline}
main{max-width:1200px;margin:0 auto;padding:0 2rem 3rem}
section{padding:1.25rem 0 .5rem;border-bottom:1px solid var(--line)}
section:last-of-type{border-bottom:0}
h2{font-size:1.25rem;margin:.25rem 0 .75rem}
h3{font-size:1rem;margin:1rem 0 .5rem}
p.note{color:var(--muted);margin:.25rem 0 .75rem;font-size:.9rem}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:.75rem}
.kpi{border:1px solid var(--line);border-radius:6px;padding:.6rem .8rem;background:#fff}
.kpi .value{display:block;font-size:1.35rem;font-weight:600}
.kpi .label{display:block;color:var(--muted);font-size:.85rem}
.insights{list-style:none;padding:0;margin:0;display:grid;gap:.6rem;
grid-template-columns:repeat(auto-fill,minmax(320px,1fr))}
.insights li{border-left:4px solid var(--blue);background:var(--soft);padding:.5rem .8rem;
border-radius:0 6px 6px 0}
.insights strong{display:block}
.insights span{color:var(--muted);font-size:.9rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem;width:100%}
th,td{border-bottom:1px solid var(--line);padding:.35rem .5rem;text-align:left;
vertical-align:top}
th{background:var(--soft);font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.barcell{width:22%;min-width:120px}
.bar{display:block;height:.8rem;background:var(--blue);border-radius:2px;min-width:1px}
.bar.warn{background:var(--orange)}
.steps{display:flex;flex-wrap:wrap;gap:.15rem .25rem;align-items:center}
.step{background:var(--soft);border:1px solid var(--line);border-radius:3px;padding:0 .3rem;
font-size:.82rem}
.arrow{color:var(--muted);font-size:.8rem}
.map-tabs{margin:.25rem 0 .5rem}
.map-tabs label{display:inline-block;padding:.3rem .8rem;border:1px solid var(--line);
cursor:pointer;border-radius:4px;margin-right:.25rem;background:#fff}
.map-switch>input{position:absolute;opacity:0;width:1px;height:1px}
#view-frequency:checked~.map-tabs label[for=view-frequency],
#view-performance:checked~.map-tabs label[for=view-performance]{background:var(--blue);
color:#fff;border-color:var(--blue)}
#view-frequency:focus-visible~.map-tabs label[for=view-frequency],
#view-performance:focus-visible~.map-tabs label[for=view-performance]{
outline:2px solid var(--blue);outline-offset:2px}
.map-caption{display:none;margin:0 0 .25rem;font-weight:600}
.map{overflow:auto;border:1px solid var(--line);border-radius:6px;padding:.5rem;
max-height:90vh;background:#fff}
.map svg{max-width:100%;height:auto;display:block;margin:0 auto}
.map-zoom{position:absolute;opacity:0;width:1px;height:1px}
.map-zoom:checked~.map svg{max-width:none}
.map-zoom:checked~.map-tabs label.zoom{background:var(--soft);border-color:var(--blue)}
.map-zoom:focus-visible~.map-tabs label.zoom{outline:2px solid var(--blue)}
.map-tabs label.zoom{margin-left:1rem}
.map-tabs label.zoom:first-child{margin-left:0}
#map-performance{display:none}
#view-performance:checked~#map-frequency{display:none}
#view-performance:checked~#map-performance{display:block}
.chart{max-width:100%;height:auto;display:block}
.chart text{font:11px system-ui,sans-serif;fill:var(--muted)}
.chart .axis{stroke:#9aa5b1;stroke-width:1}
.chart .grid{stroke:var(--line);stroke-width:1}
.chart .s0{fill:var(--blue)}
.chart .s1{fill:var(--orange)}
.chart .line{fill:none;stroke:var(--blue);stroke-width:2}
.chart .dot{fill:var(--blue)}
.gauge{display:flex;align-items:center;gap:.5rem}
.gauge .track{flex:0 0 160px;height:.7rem;background:var(--line);border-radius:4px;
overflow:hidden}
.gauge .fill{display:block;height:100%;background:var(--green)}
.gauge .fill.mid{background:var(--orange)}
.gauge .fill.low{background:var(--red)}
ul.reasons{margin:0;padding-left:1.1rem}
details summary{cursor:pointer;color:var(--blue);margin:.25rem 0}
.empty{color:var(--muted);font-style:italic}
#js-errors{display:none}
footer{color:var(--muted);font-size:.8rem;padding:1rem 2rem;border-top:1px solid var(--line)}
@media print{
 body{font-size:11pt}
 nav.toc,.map-tabs{display:none}
 header.top{background:none}
 main{max-width:none;padding:0}
 section{break-inside:auto;border:0}
 h2{break-after:avoid}
 tr,.kpi,.insights li,svg.chart{break-inside:avoid}
 .map{max-height:none;overflow:visible;border:0}
 #map-performance,#view-performance:checked~#map-frequency{display:block}
 .map-caption{display:block}
 .map+.map{margin-top:1rem}
}
"""

# Records script errors, failed loads and console.error calls into #js-errors and marks the
# page as scripted-OK, so a headless browser's --dump-dom shows whether anything went wrong;
# also opens collapsed tables before printing.
_SCRIPT = """
(function(){
  var errors=[];
  function show(){var el=document.getElementById('js-errors');
    if(el){el.textContent=errors.join('\\n');el.setAttribute('data-count',errors.length);}}
  function record(msg){errors.push(String(msg));show();}
  var original=console.error;
  console.error=function(){record(Array.prototype.join.call(arguments,' '));
    return original.apply(console,arguments);};
  window.addEventListener('error',function(e){
    var t=e.target;
    if(t&&t!==window&&(t.src||t.href)){record('failed to load '+(t.src||t.href));}
    else{record((e.message||'error')+(e.lineno?' (line '+e.lineno+')':''));}
  },true);
  window.addEventListener('unhandledrejection',function(e){record('unhandled: '+e.reason);});
  window.addEventListener('beforeprint',function(){
    document.querySelectorAll('details').forEach(function(d){d.open=true;});});
  document.addEventListener('DOMContentLoaded',function(){show();
    document.body.setAttribute('data-js-ok','1');});
})();
"""


# --------------------------------------------------------------------------------------------
# Public API


def render_html(
    title: str,
    result: dict[str, Any],
    svg: bytes,
    *,
    performance_svg: bytes | None = None,
) -> bytes:
    """The report as UTF-8 HTML bytes; ``svg`` (and ``performance_svg``) are the process maps.

    The SVGs are trusted input (``process_map.render_svg`` output, names already escaped);
    everything taken from ``result`` is escaped here.
    """
    sections: list[tuple[str, str, str | None]] = [
        ("summary", "Summary", _summary(result)),
        ("insights", "Key findings", _insights(result)),
        ("process-map", "Process map", _process_map(svg, performance_svg)),
        ("variants", "Variants", _variants(result)),
        ("durations", "Case durations", _durations(result)),
        ("throughput", "Throughput over time", _throughput(result)),
        ("bottlenecks", "Bottlenecks", _bottlenecks(result)),
        ("rework", "Rework", _rework(result)),
        ("resources", "Resources", _resources(result)),
        ("conformance", "Conformance", _conformance(result)),
        ("anomalies", "Anomalies", _anomalies(result)),
        ("data-quality", "Data quality", _data_quality(result)),
    ]
    present = [(sid, heading, body) for sid, heading, body in sections if body is not None]
    toc = "".join(f'<a href="#{sid}">{_e(heading)}</a>' for sid, heading, _ in present)
    body = "".join(
        f'<section id="{sid}" aria-labelledby="{sid}-h"><h2 id="{sid}-h">{_e(heading)}</h2>'
        f"{content}</section>"
        for sid, heading, content in present
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="generator" content="pmjobs">'
        f"<title>{_e(title)}</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>"
        f'<body><header class="top"><h1>{_e(title)}</h1><p>{_subtitle(result)}</p></header>'
        f'<nav class="toc" aria-label="Sections">{toc}</nav><main>{body}</main>'
        "<footer>Process mining report generated by pmjobs (pm4py). Self-contained: it loads "
        "nothing from the network.</footer>"
        '<pre id="js-errors" aria-hidden="true"></pre></body></html>'
    )
    return page.encode("utf-8")


def human_duration(seconds: float | None) -> str:
    """Durations for people: "45 s", "12 min", "3 h 10 min", "4.2 d", "310 d"."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    s = float(seconds)
    sign = "−" if s < 0 else ""
    s = abs(s)
    if s < 1:
        return f"{sign}{s:.1f} s" if s else "0 s"
    if s < 59.5:
        return f"{sign}{s:.0f} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{sign}{minutes} min"
    if s < 86400 - 30:
        hours, mins = divmod(minutes, 60)
        return f"{sign}{hours} h {mins} min" if mins else f"{sign}{hours} h"
    days = s / 86400
    return f"{sign}{days:.1f} d" if days < 100 else f"{sign}{days:,.0f} d"


# --------------------------------------------------------------------------------------------
# Sections (each returns inner HTML, or None when the result has nothing for it)


def _subtitle(result: Result) -> str:
    params = result.get("parameters") or {}
    bits = []
    if params.get("analysisType"):
        bits.append(f"{_e(str(params['analysisType']).capitalize())} analysis")
    noise = params.get("noiseThreshold", result.get("noiseThreshold"))
    if noise is not None:
        bits.append(f"inductive miner noise threshold {_e(_num(noise, 2))}")
    return " · ".join(bits) or "Process mining analysis"


def _log_counts(result: Result) -> dict[str, int | None]:
    """``log`` block, or the same figures derived from the other keys (``mining.analyse``)."""
    log = result.get("log") or {}
    activities = result.get("activities") or {}
    variants = result.get("variants") or []
    return {
        "events": log.get("events", sum(activities.values()) if activities else None),
        "cases": log.get(
            "cases",
            (result.get("caseDurations") or {}).get("count")
            or (sum(int(v["count"]) for v in variants) if variants else None),
        ),
        "activities": log.get("activities", len(activities) if activities else None),
    }


def _summary(result: Result) -> str:
    counts = _log_counts(result)
    durations = result.get("caseDurations") or {}
    fitness = result.get("fitness") or {}
    cards: list[tuple[str, str]] = [
        (_int(counts["events"]), "events"),
        (_int(counts["cases"]), "cases"),
        (_int(counts["activities"]), "activities"),
    ]
    if result.get("variants"):
        cards.append((_int(len(result["variants"])), "variants"))
    if durations:
        cards.append((human_duration(durations.get("median")), "median case duration"))
        cards.append((human_duration(durations.get("mean")), "mean case duration"))
    if fitness.get("logFitness") is not None:
        cards.append((_pct(fitness["logFitness"]), "log fitness (token replay)"))
    if result.get("precision") is not None:
        cards.append((_num(result["precision"], 2), "precision"))
    rework = result.get("rework") or {}
    if rework.get("share") is not None:
        cards.append((_pct(rework["share"]), "cases with rework"))
    anomalies = result.get("anomalies") or {}
    if anomalies.get("count") is not None:
        cards.append((_int(anomalies["count"]), "anomalous cases"))
    html_cards = "".join(
        f'<div class="kpi"><span class="value">{_e(v)}</span><span class="label">{_e(k)}</span>'
        "</div>"
        for v, k in cards
    )
    out = f'<div class="kpis">{html_cards}</div>'
    params = result.get("parameters") or {}
    if params:
        shown = ", ".join(f"{_e(k)} = {_e(_plain(v))}" for k, v in params.items())
        out += f'<p class="note">Parameters: {shown}</p>'
    return out


def _insights(result: Result) -> str | None:
    items = result.get("insights")
    if not items:
        return None
    lis = "".join(
        f"<li><strong>{_e(i.get('title', ''))}</strong><span>{_e(i.get('detail', ''))}</span></li>"
        for i in items
    )
    return f'<ul class="insights">{lis}</ul>'


def _process_map(svg: bytes, performance_svg: bytes | None) -> str:
    # Pure-CSS controls (work with scripts off; print shows both maps): the radios and the
    # zoom checkbox must be earlier siblings of the panels, the labels sit in their own bar.
    freq = _inline_svg(svg, "pf-")
    if performance_svg is None:
        return (
            '<p class="note">Boxes are activities with their number of occurrences; arrows are '
            "direct successions with their frequency (thicker = more frequent).</p>"
            '<div class="map-switch"><input type="checkbox" class="map-zoom" id="map-zoom">'
            '<div class="map-tabs"><label class="zoom" for="map-zoom">Actual size (scroll to '
            "pan)</label></div>"
            '<div class="map" id="map-frequency" role="img" aria-label="Process map">'
            f"{freq}</div></div>"
        )
    perf = _inline_svg(performance_svg, "pp-")
    return (
        '<p class="note">Frequency view: arrows labelled with how often one activity directly '
        "follows another. Performance view: arrows labelled with the mean time in between "
        "(redder = slower).</p>"
        '<div class="map-switch">'
        '<input type="radio" name="map-view" id="view-frequency" checked>'
        '<input type="radio" name="map-view" id="view-performance">'
        '<input type="checkbox" class="map-zoom" id="map-zoom">'
        '<div class="map-tabs"><label for="view-frequency">Frequency</label>'
        '<label for="view-performance">Performance (mean time)</label>'
        '<label class="zoom" for="map-zoom">Actual size (scroll to pan)</label></div>'
        '<div class="map" id="map-frequency" role="img" aria-label="Process map, frequency">'
        f'<p class="map-caption">Frequency</p>{freq}</div>'
        '<div class="map" id="map-performance" role="img" '
        'aria-label="Process map, mean time between activities">'
        f'<p class="map-caption">Performance (mean time between activities)</p>{perf}</div>'
        "</div>"
    )


def _variants(result: Result) -> str | None:
    variants = result.get("variants") or []
    if not variants:
        return None
    total = sum(int(v["count"]) for v in variants) or 1
    top = variants[:TOP_VARIANTS]
    covered = sum(int(v["count"]) for v in top)
    biggest = max(int(v["count"]) for v in top) or 1
    rows = []
    for i, v in enumerate(top, 1):
        count = int(v["count"])
        rows.append(
            [
                _td(str(i), num=True),
                _td(_int(count), num=True),
                _td(_pct(count / total), num=True),
                _bar_td(count / biggest),
                f"<td>{_steps(v['activities'])}</td>",
            ]
        )
    note = (
        f"{_int(len(variants))} distinct activity sequences; the {len(top)} most frequent "
        f"cover {_pct(covered / total)} of {_int(total)} cases."
    )
    return f'<p class="note">{_e(note)}</p>' + _table(
        ["#", "cases", "share", "", "activity sequence"], rows, num_cols={0, 1, 2}
    )


def _durations(result: Result) -> str | None:
    durations = result.get("caseDurations") or {}
    histogram = (result.get("performance") or {}).get("durationHistogram") or []
    if not durations and not histogram:
        return None
    out = ""
    if durations:
        out += _table(
            ["cases", "shortest", "median", "mean", "longest"],
            [
                [
                    _td(_int(durations.get("count")), num=True),
                    *(
                        _td(human_duration(durations.get(k)), num=True)
                        for k in ("min", "median", "mean", "max")
                    ),
                ]
            ],
            num_cols={0, 1, 2, 3, 4},
        )
    if histogram:
        out += _histogram_chart(histogram)
    return out


def _throughput(result: Result) -> str | None:
    months = (result.get("performance") or {}).get("throughput") or []
    if not months:
        return None
    labels = [str(m.get("period", "")) for m in months]
    started = [float(m.get("casesStarted") or 0) for m in months]
    completed = [float(m.get("casesCompleted") or 0) for m in months]
    chart = _bar_chart(
        labels,
        [("cases started", started), ("cases completed", completed)],
        title="Cases started and completed per month",
        value_fmt=_int,
    )
    medians = [m.get("medianCaseDurationSeconds") for m in months]
    line = ""
    if any(v is not None for v in medians):
        line = "<h3>Median duration of the cases completed each month</h3>" + _line_chart(
            labels, medians, title="Median case duration by month of completion"
        )
    rows = [
        [
            _td(m.get("period", "")),
            _td(_int(m.get("casesStarted")), num=True),
            _td(_int(m.get("casesCompleted")), num=True),
            _td(_int(m.get("events")), num=True),
            _td(human_duration(m.get("medianCaseDurationSeconds")), num=True),
        ]
        for m in months
    ]
    table = _table(
        ["month (UTC)", "cases started", "cases completed", "events", "median duration"],
        rows,
        num_cols={1, 2, 3, 4},
    )
    return (
        '<p class="note">A case counts as completed in the month of its last event.</p>'
        f"{chart}{line}<details><summary>All months as a table</summary>{table}</details>"
    )


def _bottlenecks(result: Result) -> str | None:
    perf = result.get("performance") or {}
    edges = perf.get("bottlenecks")
    cycle = perf.get("cycleTime") or []
    out = ""
    if edges:
        out += (
            '<p class="note">Direct successions with the longest mean time between the two '
            "events (waiting plus processing of the second activity).</p>"
        )
        slowest = max(float(e.get("meanSeconds") or 0) for e in edges) or 1.0
        rows = [
            [
                _td(e.get("source", "")),
                _td(e.get("target", "")),
                _td(_int(e.get("frequency")), num=True),
                _td(human_duration(e.get("meanSeconds")), num=True),
                _td(human_duration(e.get("medianSeconds")), num=True),
                _td(human_duration(e.get("maxSeconds")), num=True),
                _bar_td(float(e.get("meanSeconds") or 0) / slowest, warn=True),
            ]
            for e in edges
        ]
        out += _table(
            ["from", "to", "times", "mean", "median", "max", ""], rows, num_cols={2, 3, 4, 5}
        )
    elif result.get("dfg"):
        # Basic results have mean times on the DFG only: show the slowest arcs from there.
        dfg = sorted(result["dfg"], key=lambda e: -float(e.get("meanSeconds") or 0))[:10]
        if dfg and float(dfg[0].get("meanSeconds") or 0) > 0:
            slowest = float(dfg[0]["meanSeconds"])
            out += '<p class="note">Slowest direct successions (mean time in between).</p>'
            rows = [
                [
                    _td(e.get("source", "")),
                    _td(e.get("target", "")),
                    _td(_int(e.get("frequency")), num=True),
                    _td(human_duration(e.get("meanSeconds")), num=True),
                    _bar_td(float(e.get("meanSeconds") or 0) / slowest, warn=True),
                ]
                for e in dfg
            ]
            out += _table(["from", "to", "times", "mean", ""], rows, num_cols={2, 3})
    if cycle:
        slowest = max(float(c.get("meanSeconds") or 0) for c in cycle) or 1.0
        rows = [
            [
                _td(c.get("activity", "")),
                _td(human_duration(c.get("meanSeconds")), num=True),
                _td(human_duration(c.get("medianSeconds")), num=True),
                _bar_td(float(c.get("meanSeconds") or 0) / slowest, warn=True),
            ]
            for c in cycle[:TOP_ROWS]
        ]
        out += (
            "<h3>Time per activity</h3>"
            '<p class="note">Time from the previous event of the case to this activity '
            "(waiting plus processing), slowest first.</p>"
            + _table(["activity", "mean", "median", ""], rows, num_cols={1, 2})
        )
    return out or None


def _rework(result: Result) -> str | None:
    rework = result.get("rework")
    if not rework:
        return None
    out = (
        f'<p class="note">{_e(_int(rework.get("cases")))} cases '
        f"({_e(_pct(rework.get('share')))}) repeat at least one activity.</p>"
    )
    rows_in = rework.get("byActivity") or []
    if not rows_in:
        return out
    most = max(int(r.get("cases") or 0) for r in rows_in) or 1
    rows = [
        [
            _td(r.get("activity", "")),
            _td(_int(r.get("cases")), num=True),
            _td(_int(r.get("repetitions")), num=True),
            _bar_td(int(r.get("cases") or 0) / most, warn=True),
        ]
        for r in rows_in[:TOP_ROWS]
    ]
    return out + _table(
        ["activity", "cases repeating it", "extra executions", ""], rows, num_cols={1, 2}
    )


def _resources(result: Result) -> str | None:
    has_key = "resources" in result
    res = result.get("resources")
    utilization = (result.get("performance") or {}).get("resourceUtilization") or []
    if not has_key and not utilization:
        return None
    if not res and not utilization:
        return '<p class="empty">The log names no resources (no org:resource attribute).</p>'
    out = ""
    work = (res or {}).get("workload") or []
    util = {str(u.get("resource")): u for u in utilization}
    if work or utilization:
        base = work or [
            {"resource": u["resource"], "events": u["events"], "cases": u["cases"]}
            for u in utilization
        ]
        total = sum(int(w.get("events") or 0) for w in base) or 1
        most = max(int(w.get("events") or 0) for w in base) or 1
        rows = []
        for w in base[:TOP_ROWS]:
            u = util.get(str(w.get("resource")), {})
            rows.append(
                [
                    _td(w.get("resource", "")),
                    _td(_int(w.get("events")), num=True),
                    _td(_pct(int(w.get("events") or 0) / total), num=True),
                    _td(_int(w.get("cases")), num=True),
                    _td(_int(u.get("activeDays")), num=True),
                    _td(_num(u.get("eventsPerActiveDay"), 1), num=True),
                    _bar_td(int(w.get("events") or 0) / most),
                ]
            )
        more = f" (top {TOP_ROWS} of {_int(len(base))})" if len(base) > TOP_ROWS else ""
        out += f"<h3>Workload{_e(more)}</h3>" + _table(
            ["resource", "events", "share", "cases", "active days", "events / active day", ""],
            rows,
            num_cols={1, 2, 3, 4, 5},
        )
    handover = (res or {}).get("handover") or []
    if handover:
        most = max(int(h.get("count") or 0) for h in handover) or 1
        rows = [
            [
                _td(h.get("source", "")),
                _td(h.get("target", "")),
                _td(_int(h.get("count")), num=True),
                _bar_td(int(h.get("count") or 0) / most),
            ]
            for h in handover[:TOP_ROWS]
        ]
        out += (
            "<h3>Handover of work</h3>"
            '<p class="note">How often a case passes directly from one resource to another.</p>'
            + _table(["from", "to", "times", ""], rows, num_cols={2})
        )
    return out


def _conformance(result: Result) -> str | None:
    if "fitness" not in result and "precision" not in result and "alignments" not in result:
        return None
    fitness = result.get("fitness")
    precision = result.get("precision")
    out = ""
    if fitness:
        out += (
            "<h3>Token-based replay</h3>"
            '<p class="note">How well the discovered Petri net (inductive miner) reproduces '
            "the log; 100% means every case replays without missing or remaining tokens.</p>"
            + _gauges(
                [
                    ("log fitness", fitness.get("logFitness")),
                    ("average case fitness", fitness.get("averageTraceFitness")),
                    ("cases fitting perfectly", _share100(fitness.get("percentageFitTraces"))),
                    ("precision (ETConformance)", precision),
                ]
            )
        )
    elif precision is not None:
        out += _gauges([("precision (ETConformance)", precision)])
    else:
        out += (
            '<p class="empty">No process model was discovered for this analysis, so there is '
            "no conformance check (run a standard or comprehensive analysis).</p>"
        )
    alignments = result.get("alignments")
    if alignments:
        out += "<h3>Alignments</h3>"
        if alignments.get("computed"):
            reason = alignments.get("reason")
            out += (
                '<p class="note">Optimal alignments: the cheapest way to match each case to a '
                "run of the model (more exact than token replay).</p>"
                + (f'<p class="note">{_e(reason)}</p>' if reason else "")
                + _gauges(
                    [
                        ("log fitness", alignments.get("logFitness")),
                        ("average case fitness", alignments.get("averageTraceFitness")),
                        (
                            "cases fitting perfectly",
                            _share100(alignments.get("percentageFitTraces")),
                        ),
                    ]
                )
            )
        else:
            why = alignments.get("reason") or "not computed"
            out += f'<p class="empty">Alignments were skipped: {_e(why)}</p>'
    return out


def _anomalies(result: Result) -> str | None:
    an = result.get("anomalies")
    if not an:
        return None
    count = int(an.get("count") or 0)
    cases = an.get("cases") or []
    out = f'<p class="note">{_e(_int(count))} cases flagged. {_thresholds(an)}</p>'
    if not cases:
        return out
    listed = cases[:MAX_ANOMALY_ROWS]
    if count > len(listed):
        out += f'<p class="note">Listing the {_int(len(listed))} most anomalous.</p>'
    rows = [
        [
            _td(c.get("caseId", "")),
            _td(human_duration(c.get("durationSeconds")), num=True),
            _td(_int(c.get("events")), num=True),
            "<td><ul class='reasons'>"
            + "".join(f"<li>{_e(r)}</li>" for r in c.get("reasons") or [])
            + "</ul></td>",
        ]
        for c in listed
    ]
    headers = ["case", "duration", "events", "why"]
    out += _table(headers, rows[:ANOMALY_ROWS_SHOWN], num_cols={1, 2})
    if len(rows) > ANOMALY_ROWS_SHOWN:
        out += (
            f"<details><summary>{_int(len(rows) - ANOMALY_ROWS_SHOWN)} more</summary>"
            + _table(headers, rows[ANOMALY_ROWS_SHOWN:], num_cols={1, 2})
            + "</details>"
        )
    return out


def _thresholds(an: Mapping[str, Any]) -> str:
    th = an.get("thresholds") or {}
    bits = []
    duration = (th.get("durationSeconds") or {}).get("threshold")
    if duration is not None:
        bits.append(f"longer than {human_duration(duration)}")
    events = (th.get("events") or {}).get("threshold")
    if events is not None:
        bits.append(f"more than {_num(events, 1)} events")
    if (th.get("uniqueVariant") or {}).get("applied"):
        bits.append("following a path no other case follows")
    if not bits:
        return ""
    return _e("Rules: cases " + ", ".join(bits) + " (quartile-based limits).")


def _data_quality(result: Result) -> str | None:
    quality = result.get("quality")
    if not quality:
        return None
    v = quality.get("dataValidation") or {}
    out = ""
    if v:
        total = v.get("totalRecords")
        valid = v.get("validRecords")
        cards = [
            (_int(total), "records read"),
            (_int(valid), "valid records used"),
            (_int(v.get("invalidRecords")), "invalid records removed"),
            (_int(v.get("duplicatesRemoved")), "duplicates removed"),
        ]
        if total:
            cards.append((_pct((valid or 0) / total), "of records used"))
        out += (
            '<div class="kpis">'
            + "".join(
                f'<div class="kpi"><span class="value">{_e(a)}</span>'
                f'<span class="label">{_e(b)}</span></div>'
                for a, b in cards
            )
            + "</div>"
        )
    warnings = quality.get("warnings") or []
    if warnings:
        rows = [
            [
                _td(_words(str(w.get("type", "")))),
                _td(w.get("message", "")),
                _td(_int(w.get("count")), num=True),
            ]
            for w in warnings
        ]
        out += "<h3>Warnings</h3>" + _table(["check", "finding", "count"], rows, num_cols={2})
    else:
        out += '<p class="note">No data-quality warnings.</p>'
    return out


# --------------------------------------------------------------------------------------------
# Charts (inline SVG)

_W, _H = 760, 260
_ML, _MR, _MT, _MB = 64, 16, 28, 46


def _histogram_chart(bins: Sequence[Mapping[str, Any]]) -> str:
    counts = [float(b.get("cases") or 0) for b in bins]
    edges = [float(b.get("fromSeconds") or 0) for b in bins] + [
        float(bins[-1].get("toSeconds") or 0)
    ]
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    positive = [w for w in widths if w > 0]
    geometric = bool(positive) and max(positive) > 3 * min(positive)
    labels = [
        f"{human_duration(a)} – {human_duration(b)}"
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    note = (
        " Bins grow geometrically (log scale) because durations span several orders of magnitude."
        if geometric
        else ""
    )
    chart = _bar_chart(
        labels,
        [("cases", counts)],
        title="Number of cases by duration",
        value_fmt=_int,
        tick_labels=[human_duration(e) for e in edges],
    )
    return f'<p class="note">Cases by total duration (first to last event).{_e(note)}</p>{chart}'


def _bar_chart(
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    value_fmt: Callable[[Any], str],
    tick_labels: Sequence[str] | None = None,
) -> str:
    """Vertical (grouped) bars; ``tick_labels`` (n+1 values) label bin edges instead."""
    n = len(labels)
    top = max((v for _, values in series for v in values), default=0.0)
    ticks = _nice_ticks(top)
    y_max = ticks[-1] or 1.0
    plot_w, plot_h = _W - _ML - _MR, _H - _MT - _MB
    slot = plot_w / max(n, 1)
    gap = slot * (0.2 if n > 1 else 0.6)
    bar_w = (slot - gap) / len(series)
    parts = [_svg_open(title)]
    parts += _y_axis(ticks, y_max, value_fmt)
    for si, (name, values) in enumerate(series):
        for i, v in enumerate(values):
            h = plot_h * v / y_max
            x = _ML + i * slot + gap / 2 + si * bar_w
            parts.append(
                f'<rect class="s{si}" x="{x:.1f}" y="{_MT + plot_h - h:.1f}" '
                f'width="{max(bar_w - 0.5, 0.5):.1f}" height="{h:.1f}">'
                f"<title>{_e(labels[i])}: {_e(value_fmt(v))} {_e(name)}</title></rect>"
            )
    every = max(1, math.ceil(n / 10))
    base = _MT + plot_h
    if tick_labels is not None:
        for i in range(0, n + 1, every):
            x = _ML + i * slot
            parts.append(_x_label(x, base, tick_labels[i]))
    else:
        for i in range(0, n, every):
            parts.append(_x_label(_ML + (i + 0.5) * slot, base, labels[i]))
    if len(series) > 1:
        lx = _ML
        for si, (name, _) in enumerate(series):
            parts.append(
                f'<rect class="s{si}" x="{lx}" y="6" width="12" height="12"></rect>'
                f'<text x="{lx + 16}" y="16">{_e(name)}</text>'
            )
            lx += 24 + 7 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _line_chart(labels: Sequence[str], values: Sequence[float | None], *, title: str) -> str:
    """Durations over periods; gaps (None) break the line."""
    known = [float(v) for v in values if v is not None]
    ticks = _duration_ticks(max(known, default=0.0))
    y_max = ticks[-1] or 1.0
    n = len(labels)
    plot_w, plot_h = _W - _ML - _MR, _H - _MT - _MB
    slot = plot_w / max(n, 1)
    parts = [_svg_open(title)]
    parts += _y_axis(ticks, y_max, human_duration)
    path: list[str] = []
    dots: list[str] = []
    pen_up = True
    for i, v in enumerate(values):
        if v is None:
            pen_up = True
            continue
        x = _ML + (i + 0.5) * slot
        y = _MT + plot_h - plot_h * float(v) / y_max
        path.append(f"{'M' if pen_up else 'L'}{x:.1f},{y:.1f}")
        pen_up = False
        dots.append(
            f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
            f"<title>{_e(labels[i])}: {_e(human_duration(v))}</title></circle>"
        )
    if path:
        parts.append(f'<path class="line" d="{" ".join(path)}"></path>')
    parts += dots
    every = max(1, math.ceil(n / 10))
    for i in range(0, n, every):
        parts.append(_x_label(_ML + (i + 0.5) * slot, _MT + plot_h, labels[i]))
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(title: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
    )


def _y_axis(ticks: Sequence[float], y_max: float, fmt: Callable[[Any], str]) -> list[str]:
    plot_h = _H - _MT - _MB
    out = []
    for t in ticks:
        y = _MT + plot_h - plot_h * t / y_max
        out.append(
            f'<line class="grid" x1="{_ML}" x2="{_W - _MR}" y1="{y:.1f}" y2="{y:.1f}"></line>'
            f'<text x="{_ML - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(fmt(t))}</text>'
        )
    out.append(
        f'<line class="axis" x1="{_ML}" x2="{_W - _MR}" y1="{_MT + plot_h}" '
        f'y2="{_MT + plot_h}"></line>'
    )
    return out


def _x_label(x: float, base: float, text: str) -> str:
    return (
        f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}"></line>'
        f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle">{_e(text)}</text>'
    )


def _nice_ticks(top: float) -> list[float]:
    """0 and 4-6 round steps (1, 2, 5 × 10^k) up to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    step = max(step, 1.0)  # counts: integer ticks
    return [i * step for i in range(math.ceil(top / step) + 1)]


_DURATION_STEPS = [
    1, 5, 15, 30, 60, 300, 900, 1800, 3600, 2 * 3600, 6 * 3600, 12 * 3600, 86400,
    2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400, 60 * 86400, 90 * 86400, 180 * 86400,
    365 * 86400,
]  # fmt: skip


def _duration_ticks(top: float) -> list[float]:
    """Ticks on human steps (minutes, hours, days, weeks) so axis labels read naturally."""
    if top <= 0:
        return [0.0, 60.0]
    step = next((s for s in _DURATION_STEPS if top / s <= 5), None)
    if step is None:
        step = _nice_ticks(top / (365 * 86400))[1] * 365 * 86400
    return [float(i * step) for i in range(math.ceil(top / step) + 1)]


# --------------------------------------------------------------------------------------------
# Small HTML helpers

_SVG_PROLOGUE = re.compile(r"^\s*(<\?xml[^>]*\?>\s*)?(<!DOCTYPE[^>]*>\s*)?", re.IGNORECASE)
_SVG_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
# Graphviz titles hold node ids (a0, a1 -> a2): useless as tooltips, so they are dropped.
_SVG_TITLE = re.compile(r"<title>.*?</title>", re.DOTALL)
_SVG_ID = re.compile(r'\bid="([^"]*)"')
_SVG_REF = re.compile(r'(url\(#|href="#)([^")]*)')


def _inline_svg(svg: bytes, prefix: str) -> str:
    """SVG file → inline element: no XML prologue/comments, ids prefixed (two maps per page)."""
    text = svg.decode("utf-8")
    text = _SVG_PROLOGUE.sub("", text, count=1)
    text = _SVG_COMMENT.sub("", text)
    text = _SVG_TITLE.sub("", text)
    text = _SVG_ID.sub(lambda m: f'id="{prefix}{m.group(1)}"', text)
    return _SVG_REF.sub(lambda m: f"{m.group(1)}{prefix}{m.group(2)}", text)


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], num_cols: set[int]) -> str:
    """``rows`` hold ready-made ``<td>`` cells (built with :func:`_td` / :func:`_bar_td`)."""
    head = "".join(
        f'<th scope="col"{" class=num" if i in num_cols else ""}>{_e(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = "".join("<tr>" + "".join(cells) + "</tr>" for cells in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: Any, num: bool = False) -> str:
    return f"<td{' class=num' if num else ''}>{_e(value)}</td>"


def _bar_td(fraction: float, warn: bool = False) -> str:
    width = max(0.0, min(1.0, float(fraction))) * 100
    cls = "bar warn" if warn else "bar"
    return (
        f'<td class="barcell" aria-hidden="true"><span class="{cls}" style="width:{width:.1f}%">'
        "</span></td>"
    )


def _steps(activities: Sequence[Any]) -> str:
    names = [str(a) for a in activities]
    shown = names[:MAX_VARIANT_STEPS]
    arrow = '<span class="arrow" aria-hidden="true">→</span>'
    chips = arrow.join(f'<span class="step">{_e(a)}</span>' for a in shown)
    if len(names) > len(shown):
        chips += f'<span class="arrow">… +{len(names) - len(shown)} more</span>'
    return f'<div class="steps" title="{_e(" → ".join(names))}">{chips}</div>'


def _gauges(items: Sequence[tuple[str, float | None]]) -> str:
    rows = []
    for label, value in items:
        if value is None:
            continue
        v = max(0.0, min(1.0, float(value)))
        level = "" if v >= 0.8 else (" mid" if v >= 0.5 else " low")
        rows.append(
            [
                _td(label),
                _td(_pct(value) if "precision" not in label else _num(value, 3), num=True),
                f'<td><span class="gauge"><span class="track"><span class="fill{level}" '
                f'style="width:{v * 100:.1f}%"></span></span></span></td>',
            ]
        )
    return _table(["measure", "value", ""], rows, num_cols={1})


def _share100(value: float | None) -> float | None:
    """pm4py's percentageFitTraces is on a 0-100 scale; gauges want [0, 1]."""
    return None if value is None else float(value) / 100.0


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _int(value: Any) -> str:
    if value is None:
        return "—"
    return f"{int(round(float(value))):,}"


def _num(value: Any, digits: int) -> str:
    if value is None:
        return "—"
    return f"{float(value):,.{digits}f}"


def _pct(share: Any) -> str:
    if share is None:
        return "—"
    value = float(share) * 100
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.1f}%"


def _words(identifier: str) -> str:
    """camelCase warning types as words: "duplicateEvents" -> "duplicate events"."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", identifier).lower()


def _plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    return str(value)
