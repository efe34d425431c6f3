"""Analytics stages of a pmjobs job: performance, rework, resources, anomalies, insights, quality.

Pure functions like :mod:`flows.steps.mining`: an event-log DataFrame with XES columns in, a
JSON-able dict of plain Python types out (no numpy scalars, no NaN: missing numbers are None).
Where pm4py has an equivalent, the numbers are pm4py's (same function, or the same formula on
rows in the same order), so they agree with the rest of the ``ProcessMiningResult``:

* durations are pm4py's "seconds" (``pandas_utils.get_total_seconds``: days, seconds and
  microseconds summed as floats, which can differ from ``Timedelta.total_seconds`` in the last
  bit);
* events are taken in :func:`mining.prepare`'s order (case, timestamp, file position), so
  "previous event" and "consecutive events" mean what they mean in pm4py's DFG.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from pm4py.util.pandas_utils import get_total_seconds

from flows.steps import mining, mining_engine
from flows.steps.eventlog import XES_ACTIVITY, XES_CASE, XES_RESOURCE, XES_TIMESTAMP

CASE, ACTIVITY, TIMESTAMP, RESOURCE = XES_CASE, XES_ACTIVITY, XES_TIMESTAMP, XES_RESOURCE

PERFORMANCE_METRICS = ("cycle_time", "waiting_time", "resource_utilization")
TOP_BOTTLENECKS = 10
HISTOGRAM_BINS = 20
# Durations spanning more than this factor (max / smallest positive) get log-scale bins.
LOG_BINS_SPREAD = 1000.0
MAX_HANDOVERS = 500
MAX_ANOMALOUS_CASES = 200
IQR_FACTOR = 3.0
RARE_VARIANT_MIN_CASES = 20
RARE_VARIANT_MAX_SHARE = 0.005
# If unique variants hold more than this share of cases, uniqueness is the norm, not an anomaly.
RARE_VARIANT_MAX_UNIQUE_SHARE = 0.10
MIN_PLAUSIBLE_TIMESTAMP = pd.Timestamp("1971-01-01", tz="UTC")


# --------------------------------------------------------------------------------------------
# Performance


def performance(df: pd.DataFrame, metrics: Sequence[str] = ()) -> dict[str, Any]:
    """Where time goes: slowest hand-offs, spread of case durations, monthly throughput.

    ``metrics`` selects the optional parts ("cycle_time" -> ``cycleTime``,
    "resource_utilization" -> ``resourceUtilization``, only if the log has resources); empty
    means all. Bottlenecks, the histogram and throughput are always returned: they are the
    waiting-time view ("waiting_time") every performance report needs.
    """
    unknown = sorted(set(metrics) - set(PERFORMANCE_METRICS))
    if unknown:
        raise ValueError(f"unknown performance metric(s) {unknown}; known: {PERFORMANCE_METRICS}")
    wanted = set(metrics) or set(PERFORMANCE_METRICS)
    frame = mining.prepare(df)
    durations = [float(d) for d in mining_engine.current().get_all_case_durations(_view(frame))]
    result: dict[str, Any] = {
        "bottlenecks": _bottlenecks(frame),
        "durationHistogram": _histogram(durations),
        "throughput": _throughput(frame),
    }
    if "cycle_time" in wanted:
        result["cycleTime"] = _cycle_time(frame)
    if "resource_utilization" in wanted:
        events = _resource_events(df, ordered=False)  # counts per resource: order is moot
        if events is not None:
            result["resourceUtilization"] = _utilization(events)
    return result


def _bottlenecks(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Top DFG edges by pm4py's mean waiting time (time between the two consecutive events)."""
    engine = mining_engine.current()
    frequency, _, _ = engine.discover_dfg(_view(frame))
    perf = engine.discover_performance_dfg_stats(_view(frame))
    edges = [
        {
            "source": str(source),
            "target": str(target),
            "frequency": int(count),
            "meanSeconds": float(perf[(source, target)]["mean"]),
            "medianSeconds": float(perf[(source, target)]["median"]),
            "maxSeconds": float(perf[(source, target)]["max"]),
        }
        for (source, target), count in frequency.items()
    ]
    edges.sort(key=lambda e: (-e["meanSeconds"], -e["frequency"], e["source"], e["target"]))
    return edges[:TOP_BOTTLENECKS]


def _histogram(durations: list[float]) -> list[dict[str, Any]]:
    """About 20 bins over case durations; bins are [from, to) except the last, which is closed.

    Linear bins, unless the largest duration exceeds 1000x the smallest positive one: then
    linear bins would put nearly every case in the first bin, so the bins are geometric
    between the smallest positive and the largest duration, preceded by a [0, smallest) bin
    that holds the zero-length (single-event) cases if there are any.
    """
    if not durations:
        return []
    values = np.asarray(durations, dtype=float)
    low, high = float(values.min()), float(values.max())
    if low == high:
        return [{"fromSeconds": low, "toSeconds": high, "cases": len(durations)}]
    positive = values[values > 0]
    smallest = float(positive.min())
    if high > LOG_BINS_SPREAD * smallest:
        if smallest > low:  # zero durations exist
            edges = np.concatenate(([low], np.geomspace(smallest, high, HISTOGRAM_BINS)))
        else:
            edges = np.geomspace(smallest, high, HISTOGRAM_BINS + 1)
        edges[-1] = high  # geomspace's end point may be off by one ulp
    else:
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    counts, edges = np.histogram(values, bins=edges)
    return [
        {"fromSeconds": float(edges[i]), "toSeconds": float(edges[i + 1]), "cases": int(c)}
        for i, c in enumerate(counts)
    ]


def _throughput(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per UTC calendar month: cases started / completed, events, median duration of completed.

    A case counts as completed in the month of its last event (a log extract cannot tell a
    finished case from a running one). Months without events inside the log's span are
    included with zeros so the series has no gaps; the median is None when no case completed.
    """
    month = _month_index(frame[TIMESTAMP])
    cases = frame.assign(_month=month).groupby(CASE, sort=False)
    first_month = cases["_month"].first()
    last_month = cases["_month"].last()
    duration = _case_durations(frame)
    started = first_month.value_counts()
    completed = last_month.value_counts()
    events = month.value_counts()
    medians = duration.groupby(last_month.reindex(duration.index)).median()
    rows = []
    for m in range(int(month.min()), int(month.max()) + 1):
        median = medians.get(m)
        rows.append(
            {
                "period": f"{m // 12:04d}-{m % 12 + 1:02d}",
                "casesStarted": int(started.get(m, 0)),
                "casesCompleted": int(completed.get(m, 0)),
                "events": int(events.get(m, 0)),
                "medianCaseDurationSeconds": None if median is None else float(median),
            }
        )
    return rows


def _cycle_time(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Per activity: time since the previous event of the same case (slowest first).

    With completion timestamps only, this is the activity's waiting plus processing time; it
    is the performance DFG aggregated by target activity. Events that start a case have no
    previous event and are not counted, so activities that only ever start cases are absent.
    """
    delta = _since_previous(frame)
    keep = delta.notna()
    seconds = delta[keep].groupby(frame.loc[keep, ACTIVITY], sort=False)
    stats = seconds.agg(["mean", "median", "size"])
    rows = [
        {
            "activity": str(activity),
            "meanSeconds": float(row["mean"]),
            "medianSeconds": float(row["median"]),
            "events": int(row["size"]),
        }
        for activity, row in stats.iterrows()
    ]
    rows.sort(key=lambda r: (-r["meanSeconds"], r["activity"]))
    return rows


def _utilization(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Per resource: events, cases, active days (UTC dates with an event), events per such day."""
    day = _utc(events[TIMESTAMP]).dt.floor("D")
    grouped = events.assign(_day=day).groupby(RESOURCE, sort=False)
    stats = grouped.agg(events=(CASE, "size"), cases=(CASE, "nunique"), days=("_day", "nunique"))
    rows = [
        {
            "resource": str(resource),
            "events": int(row["events"]),
            "cases": int(row["cases"]),
            "activeDays": int(row["days"]),
            "eventsPerActiveDay": float(row["events"] / row["days"]),
        }
        for resource, row in stats.iterrows()
    ]
    rows.sort(key=lambda r: (-r["events"], r["resource"]))
    return rows


# --------------------------------------------------------------------------------------------
# Rework


def rework(df: pd.DataFrame) -> dict[str, Any]:
    """Activities done more than once in a case: repeated work is a classic cost driver.

    ``byActivity[].cases`` is the number of cases in which the activity occurs at least twice
    (pm4py's ``get_rework_cases_per_activity``); ``repetitions`` counts the extra occurrences
    (occurrences minus one, summed over those cases). ``share`` is in [0, 1].
    """
    frame = mining.prepare(df)
    n_cases = int(frame[CASE].nunique())
    per_case = frame.groupby([ACTIVITY, CASE], sort=False).size()
    repeated = per_case[per_case > 1]
    by_activity = (repeated - 1).groupby(level=0, sort=False).agg(["size", "sum"])
    rows = [
        {"activity": str(activity), "cases": int(row["size"]), "repetitions": int(row["sum"])}
        for activity, row in by_activity.iterrows()
    ]
    rows.sort(key=lambda r: (-r["cases"], -r["repetitions"], r["activity"]))
    cases = int(repeated.index.get_level_values(1).nunique())
    return {"cases": cases, "share": cases / n_cases, "byActivity": rows}


# --------------------------------------------------------------------------------------------
# Resources


def resources(df: pd.DataFrame) -> dict[str, Any] | None:
    """Who does the work and who passes it to whom; None if the log names no resources.

    Events without a resource are left out, so a handover links consecutive *known* resources
    of a case. Self-handovers (same resource twice in a row) are not handovers and are not
    listed. ``handover`` holds the 500 most frequent pairs, most frequent first.
    pm4py's ``discover_handover_of_work_network`` (beta=0) gives the same pairs as shares:
    count / number of consecutive resource pairs *including* self-handovers.
    """
    events = _resource_events(df)
    if events is None:
        return None
    workload = events.groupby(RESOURCE, sort=False)[CASE].agg(["size", "nunique"])
    work = [
        {"resource": str(resource), "events": int(row["size"]), "cases": int(row["nunique"])}
        for resource, row in workload.iterrows()
    ]
    work.sort(key=lambda r: (-r["events"], r["resource"]))
    case, resource = events[CASE], events[RESOURCE]
    source = resource.shift()
    handed = case.eq(case.shift()) & resource.ne(source)
    pairs = pd.DataFrame({"source": source[handed], "target": resource[handed]})
    counts = pairs.groupby(["source", "target"], sort=False).size()
    handover = [
        {"source": str(s), "target": str(t), "count": int(c)} for (s, t), c in counts.items()
    ]
    handover.sort(key=lambda h: (-h["count"], h["source"], h["target"]))
    return {"workload": work, "handover": handover[:MAX_HANDOVERS]}


# --------------------------------------------------------------------------------------------
# Anomalies


def anomalies(df: pd.DataFrame, variants: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Cases worth a look: unusually long (time or events) or following a one-off path.

    Rules (robust to skew, unlike mean + k·sd):

    * duration > Q3 + 3·IQR of case durations (pm4py's last minus first timestamp);
    * number of events > Q3 + 3·max(IQR, 1) of case lengths (lengths are whole numbers: a
      log where most cases have the same length still flags a case 4+ events longer);
      quartiles are linear-interpolated (numpy's default); the duration rule is skipped
      (threshold None) when its IQR is 0 (most cases equally long, e.g. all instantaneous),
      since it would flag every case above that value;
    * unique variant: the case's activity sequence occurs in no other case, the log has at
      least 20 cases and one case is < 0.5% of them. Skipped when unique variants hold more
      than 10% of all cases: in such logs (e.g. Sepsis) uniqueness is the norm.

    ``variants`` (``mining.discover_variants`` output) only saves recounting variants.
    ``cases`` is sorted by number of reasons, then duration (both descending), capped at 200;
    ``count`` is the total number of anomalous cases.
    """
    frame = mining.prepare(df)
    duration = _case_durations(frame)
    paths = _case_paths(frame).reindex(duration.index)
    length = paths.map(len)
    n_cases = len(duration)

    duration_rule = _iqr_rule(duration.to_numpy(dtype=float))
    length_rule = _iqr_rule(length.to_numpy(dtype=float), min_spread=1.0)
    if variants is not None:
        variant_count = {tuple(v["activities"]): int(v["count"]) for v in variants}
        if any(p not in variant_count for p in set(paths)):
            variant_count = Counter(paths)
    else:
        variant_count = Counter(paths)
    unique_cases = sum(1 for c in variant_count.values() if c == 1)
    unique_share = unique_cases / n_cases
    rare_applies = (
        n_cases >= RARE_VARIANT_MIN_CASES
        and 1 / n_cases < RARE_VARIANT_MAX_SHARE
        and unique_share <= RARE_VARIANT_MAX_UNIQUE_SHARE
    )
    thresholds = {
        "durationSeconds": duration_rule,
        "events": length_rule,
        "uniqueVariant": {
            "applied": rare_applies,
            "minCases": RARE_VARIANT_MIN_CASES,
            "maxShare": RARE_VARIANT_MAX_SHARE,
            "maxUniqueShare": RARE_VARIANT_MAX_UNIQUE_SHARE,
            "uniqueVariantCases": unique_cases,
        },
    }

    found: list[dict[str, Any]] = []
    d_limit, l_limit = duration_rule["threshold"], length_rule["threshold"]
    for case_id, seconds, events, path in zip(
        duration.index, duration.to_numpy(), length.to_numpy(), paths.to_numpy(), strict=True
    ):
        reasons = []
        if d_limit is not None and seconds > d_limit:
            reasons.append(
                f"duration {_human_duration(seconds)} exceeds {_human_duration(d_limit)} "
                "(Q3 + 3·IQR of case durations)"
            )
        if l_limit is not None and events > l_limit:
            reasons.append(
                f"{int(events)} events, more than {l_limit:g} "
                + (
                    "(Q3 + 3·IQR of case lengths)"
                    if length_rule["iqr"] >= 1
                    else f"(3 more than the usual {length_rule['q3']:g} events per case)"
                )
            )
        if rare_applies and variant_count[path] == 1:
            reasons.append(
                f"unique variant: no other of the {n_cases:,} cases follows the same "
                f"sequence of {len(path)} activities"
            )
        if reasons:
            found.append(
                {
                    "caseId": str(case_id),
                    "reasons": reasons,
                    "durationSeconds": float(seconds),
                    "events": int(events),
                }
            )
    found.sort(key=lambda c: (-len(c["reasons"]), -c["durationSeconds"], c["caseId"]))
    return {
        "thresholds": thresholds,
        "cases": found[:MAX_ANOMALOUS_CASES],
        "count": len(found),
    }


def _iqr_rule(values: np.ndarray, min_spread: float = 0.0) -> dict[str, Any]:
    q1, q3 = (float(q) for q in np.percentile(values, [25, 75]))
    iqr = q3 - q1
    spread = max(iqr, min_spread)
    threshold = q3 + IQR_FACTOR * spread if spread > 0 else None
    return {"q1": q1, "q3": q3, "iqr": iqr, "threshold": threshold}


# --------------------------------------------------------------------------------------------
# Insights


def insights(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Plain-language findings from a ``ProcessMiningResult`` dict, most important first.

    Each finding is ``{title, detail, metric, value}``; ``value`` is the number the sentence
    is built on (shares in [0, 1], durations in seconds). Parts missing from ``result`` are
    skipped, so a partial result gives fewer findings; at most 8 are returned.
    """
    found: list[dict[str, Any]] = []
    for make in (
        _variant_insight,
        _duration_insight,
        _bottleneck_insight,
        _conformance_insight,
        _rework_insight,
        _anomaly_insight,
        _resource_insight,
        _start_end_insight,
        _throughput_insight,
    ):
        finding = make(result)
        if finding is not None:
            found.append(finding)
    return found[:8]


def _finding(title: str, detail: str, metric: str, value: float | int) -> dict[str, Any]:
    return {"title": title, "detail": detail, "metric": metric, "value": value}


def _variant_insight(result: dict[str, Any]) -> dict[str, Any] | None:
    variants = result.get("variants")
    if not variants:
        return None
    counts = sorted((int(v["count"]) for v in variants), reverse=True)
    total = sum(counts)
    top = min(3, len(counts))
    share = sum(counts[:top]) / total
    many = "" if top == 1 else f" {top}"
    return _finding(
        f"The top{many} variant{'s' if top > 1 else ''} cover{'' if top > 1 else 's'} "
        f"{_pct(share)} of cases",
        f"{len(counts):,} distinct activity sequences over {total:,} cases; the most frequent "
        f"one is followed by {counts[0]:,} cases ({_pct(counts[0] / total)}).",
        f"top{top}VariantShare",
        share,
    )


def _duration_insight(result: dict[str, Any]) -> dict[str, Any] | None:
    durations = result.get("caseDurations")
    if not durations or durations.get("median") is None:
        return None
    median, mean, longest = durations["median"], durations["mean"], durations["max"]
    skew = " — a few long cases pull the average up" if mean > 2 * median else ""
    return _finding(
        f"A typical case takes {_human_duration(median)}",
        f"Median case duration {_human_duration(median)}, mean {_human_duration(mean)}, "
        f"longest {_human_duration(longest)}{skew}.",
        "medianCaseDurationSeconds",
        float(median),
    )


def _bottleneck_insight(result: dict[str, Any]) -> dict[str, Any] | None:
    """Slowest transition among those seen often enough (>= 1% of cases, at least twice).

    The floor keeps a one-off transition from being reported as "the" bottleneck; the DFG
    (all edges) is searched when present, else the performance top-10.
    """
    bottlenecks = (result.get("performance") or {}).get("bottlenecks") or []
    edges = result.get("dfg") or bottlenecks
    if not edges:
        return None
    cases = _case_count(result)
    floor = max(2, math.ceil(0.01 * cases)) if cases else 2
    frequent = [e for e in edges if e["frequency"] >= floor] or list(edges)
    worst = max(frequent, key=lambda e: (e["meanSeconds"], e["frequency"]))
    detail = (
        f"'{worst['source']}' is followed by '{worst['target']}' {_times(worst['frequency'])} "
        f"with {_human_duration(worst['meanSeconds'])} in between on average"
    )
    median = next(
        (
            b["medianSeconds"]
            for b in bottlenecks
            if (b["source"], b["target"]) == (worst["source"], worst["target"])
        ),
        None,
    )
    if median is not None:
        detail += f" (median {_human_duration(median)})"
    if len(frequent) < len(edges):
        detail += f"; transitions seen fewer than {floor:,} times are not considered"
    return _finding(
        f"Waiting between '{worst['source']}' and '{worst['target']}' takes "
        f"{_human_duration(worst['meanSeconds'])} on average, the longest in the process",
        detail + ".",
        "bottleneckMeanSeconds",
        float(worst["meanSeconds"]),
    )


def _case_count(result: dict[str, Any]) -> int | None:
    durations = result.get("caseDurations") or {}
    if durations.get("count"):
        return int(durations["count"])
    variants = result.get("variants")
    return sum(int(v["count"]) for v in variants) if variants else None


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n:,} times"


def _conformance_insight(result: dict[str, Any]) -> dict[str, Any] | None:
    fitness = result.get("fitness")
    if not fitness or fitness.get("logFitness") is None:
        return None
    log_fitness = float(fitness["logFitness"])
    precision = result.get("precision")
    title = f"The model fits {log_fitness * 100:.1f}% of behaviour (log fitness)"
    if precision is not None:
        if precision < 0.5:
            verdict = "it allows much more than observed"
        elif precision < 0.8:
            verdict = "it allows some behaviour never observed"
        else:
            verdict = "it allows little beyond what was observed"
        title += f" with precision {precision:.2f} — {verdict}"
    detail = (
        f"{fitness.get('percentageFitTraces', 0.0):.1f}% of cases replay without any deviation; "
        f"average case fitness {fitness.get('averageTraceFitness', 0.0) * 100:.1f}%."
    )
    return _finding(title, detail, "logFitness", log_fitness)


def _rework_insight(result: dict[str, Any]) -> dict[str, Any] | None:
    rw = result.get("rework")
    if not rw or not rw.get("cases"):
        return None
    top = rw["byActivity"][0]
    return _finding(
        f"{_pct(rw['share'])} of cases repeat an activity; most often '{top['activity']}'",
        f"{rw['cases']:,} cases contain rework; '{top['activity']}' is repeated in "
        f"{top['cases']:,} cases ({top['repetitions']:,} extra executions).",
        "reworkShare",
        float(rw["share"]),
    )


def _anomaly_insight(result: dict[str, Any]) -> dict[str, Any] | None:
    an = result.get("anomalies")
    if not an or not an.get("count"):
        return None
    total = _case_count(result)
    share = f" ({_pct(an['count'] / total)} of cases)" if total else ""
    example = an["cases"][0] if an.get("cases") else None
    detail = "Unusually long, unusually many events, or a one-off path."
    if example:
        detail = f"For example case '{example['caseId']}': {'; '.join(example['reasons'])}."
    return _finding(
        f"{an['count']:,} cases{share} look anomalous", detail, "anomalousCases", an["count"]
    )


def _resource_insight(result: dict[str, Any]) -> dict[str, Any] | None:
    res = result.get("resources")
    if not res or not res.get("workload"):
        return None
    work = res["workload"]
    total = sum(r["events"] for r in work)
    busiest = work[0]
    share = busiest["events"] / total
    detail = f"{len(work):,} resources handle {total:,} events."
    if res.get("handover"):
        h = res["handover"][0]
        detail += (
            f" The most frequent handover is '{h['source']}' → '{h['target']}' "
            f"({h['count']:,} times)."
        )
    return _finding(
        f"'{busiest['resource']}' handles {_pct(share)} of the work, the most of "
        f"{len(work):,} resources",
        detail,
        "topResourceShare",
        share,
    )


def _start_end_insight(result: dict[str, Any]) -> dict[str, Any] | None:
    ends = result.get("endActivities")
    if not ends:
        return None
    total = sum(ends.values())
    name, count = max(ends.items(), key=lambda kv: (kv[1], kv[0]))
    starts = result.get("startActivities") or {}
    detail = f"Cases end in {_plural(len(ends), 'activity', 'different activities')}."
    if starts:
        s_name, s_count = max(starts.items(), key=lambda kv: (kv[1], kv[0]))
        detail += (
            f" They start with '{s_name}' in {_pct(s_count / sum(starts.values()))} of cases "
            f"({_plural(len(starts), 'start activity', 'start activities')})."
        )
    return _finding(
        f"{_pct(count / total)} of cases end with '{name}'",
        detail,
        "topEndActivityShare",
        count / total,
    )


def _throughput_insight(result: dict[str, Any]) -> dict[str, Any] | None:
    months = (result.get("performance") or {}).get("throughput")
    if not months:
        return None
    busiest = max(months, key=lambda m: (m["casesStarted"], m["period"]))
    active = sum(1 for m in months if m["events"])
    return _finding(
        f"Most cases started in {busiest['period']} ({busiest['casesStarted']:,})",
        f"The log spans {len(months):,} months, {active:,} of them with events.",
        "peakMonthCasesStarted",
        busiest["casesStarted"],
    )


# --------------------------------------------------------------------------------------------
# Data quality


def data_quality(df: pd.DataFrame, checks: dict[str, bool]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Optional clean-up and warnings before mining; only the checks asked for run.

    * ``validateActivities``: events with an empty / whitespace / missing activity are
      invalid and removed; activities occurring once in the whole log are reported.
    * ``checkDuplicates``: identical (case, activity, timestamp, resource if present) events
      are reported and all but the first removed (they inflate frequencies).
    * ``validateTimestamps``: events with a missing timestamp are invalid and removed; events
      earlier than the previous event of their case in file order, and timestamps in the
      future or before 1971 (epoch defaults), are reported.

    With no check enabled the input frame itself is returned, so results equal pm4py's.
    """
    validate_ts = bool(checks.get("validateTimestamps", False))
    duplicates = bool(checks.get("checkDuplicates", False))
    validate_act = bool(checks.get("validateActivities", False))
    total = len(df)
    warnings: list[dict[str, Any]] = []
    frame = df
    invalid = 0

    if validate_act or validate_ts:
        bad = np.zeros(len(frame), dtype=bool)
        if validate_act:
            names = frame[ACTIVITY].astype("string").str.strip()
            empty = names.eq("").fillna(True).to_numpy(dtype=bool)
            if empty.any():
                warnings.append(
                    _warning(
                        "invalidActivity",
                        f"{int(empty.sum()):,} events without an activity name were removed",
                        int(empty.sum()),
                    )
                )
            bad |= empty
        if validate_ts:
            missing = frame[TIMESTAMP].isna().to_numpy()
            if missing.any():
                warnings.append(
                    _warning(
                        "missingTimestamp",
                        f"{int(missing.sum()):,} events without a timestamp were removed",
                        int(missing.sum()),
                    )
                )
            bad |= missing
        if bad.any():
            invalid = int(bad.sum())
            frame = frame[~bad]

    removed_duplicates = 0
    if duplicates:
        key = [CASE, ACTIVITY, TIMESTAMP] + ([RESOURCE] if RESOURCE in frame.columns else [])
        dup = frame.duplicated(subset=key, keep="first").to_numpy()
        if dup.any():
            removed_duplicates = int(dup.sum())
            frame = frame[~dup]
            what = "case, activity, timestamp" + (" and resource" if len(key) == 4 else "")
            warnings.append(
                _warning(
                    "duplicateEvents",
                    f"{removed_duplicates:,} duplicate events (same {what}) were removed",
                    removed_duplicates,
                )
            )

    if validate_ts:
        warnings.extend(_timestamp_warnings(frame))
    if validate_act:
        counts = frame[ACTIVITY].value_counts()
        once = sorted(str(a) for a in counts.index[counts.to_numpy() == 1])
        if once:
            shown = ", ".join(f"'{a}'" for a in once[:5]) + (", ..." if len(once) > 5 else "")
            warnings.append(
                _warning(
                    "rareActivity",
                    f"{len(once):,} activities occur only once in the log: {shown}",
                    len(once),
                )
            )

    if frame is not df:
        frame = frame.reset_index(drop=True)
        frame.attrs = dict(df.attrs)
    report = {
        "dataValidation": {
            "totalRecords": total,
            "validRecords": len(frame),
            "duplicatesRemoved": removed_duplicates,
            "invalidRecords": invalid,
        },
        "warnings": warnings,
    }
    return frame, report


def _timestamp_warnings(frame: pd.DataFrame) -> list[dict[str, Any]]:
    ts = _utc(frame[TIMESTAMP])
    out = []
    previous = ts.groupby(frame[CASE], sort=False).shift()
    backwards = int(ts.lt(previous).sum())
    if backwards:
        out.append(
            _warning(
                "outOfOrder",
                f"{backwards:,} events are earlier than the previous event of their case in "
                "the file; they are ordered by timestamp for mining",
                backwards,
            )
        )
    future = int(ts.gt(pd.Timestamp(datetime.now(UTC))).sum())
    if future:
        out.append(
            _warning("futureTimestamp", f"{future:,} events are dated in the future", future)
        )
    early = int(ts.lt(MIN_PLAUSIBLE_TIMESTAMP).sum())
    if early:
        out.append(
            _warning(
                "implausibleTimestamp",
                f"{early:,} events are dated before 1971 (likely a missing date stored as 0)",
                early,
            )
        )
    return out


def _warning(kind: str, message: str, count: int) -> dict[str, Any]:
    return {"type": kind, "message": message, "count": count}


# --------------------------------------------------------------------------------------------
# Helpers


def _view(frame: pd.DataFrame) -> pd.DataFrame:
    """Shallow copy for pm4py calls that add columns (``start_timestamp``) to their input."""
    return frame.copy(deep=False)


def _utc(ts: pd.Series) -> pd.Series:
    """Timestamps in UTC; naive values are taken as UTC (as pm4py and ingestion do)."""
    if getattr(ts.dt, "tz", None) is None:
        return ts.dt.tz_localize("UTC")
    return ts.dt.tz_convert("UTC")


def _month_index(ts: pd.Series) -> pd.Series:
    utc = _utc(ts)
    return utc.dt.year * 12 + (utc.dt.month - 1)


def _case_durations(frame: pd.DataFrame) -> pd.Series:
    """Seconds from first to last event per case, computed exactly as pm4py does."""
    grouped = frame.groupby(CASE, sort=False)[TIMESTAMP]
    return get_total_seconds(grouped.last() - grouped.first()).astype(float)


def _case_paths(frame: pd.DataFrame) -> pd.Series:
    """Activity sequence (tuple of str) per case of a :func:`mining.prepare` frame.

    Built from the contiguous case blocks that ``prepare`` guarantees: ``groupby().agg(tuple)``
    is not used because on pyarrow-backed string columns pandas returns arrays, not tuples.
    """
    case = frame[CASE].to_numpy()
    acts = [str(a) for a in frame[ACTIVITY].to_numpy()]
    starts = np.flatnonzero(np.r_[True, case[1:] != case[:-1]])
    ends = np.r_[starts[1:], len(case)]
    paths = [tuple(acts[s:e]) for s, e in zip(starts, ends, strict=True)]
    return pd.Series(paths, index=pd.Index(case[starts], name=CASE), dtype=object)


def _since_previous(frame: pd.DataFrame) -> pd.Series:
    """Seconds since the previous event of the same case (NaN for a case's first event)."""
    ts = frame[TIMESTAMP]
    same = frame[CASE].eq(frame[CASE].shift())
    return get_total_seconds(ts - ts.shift()).where(same)


def _resource_events(df: pd.DataFrame, ordered: bool = True) -> pd.DataFrame | None:
    """Events with a resource (in pm4py's order within each case if ``ordered``); None if
    there are none."""
    if RESOURCE not in df.columns:
        return None
    frame = df[[CASE, ACTIVITY, TIMESTAMP, RESOURCE]]
    frame = frame[frame.notna().all(axis=1).to_numpy()]
    if frame.empty:
        return None
    if ordered:
        frame = frame.sort_values([CASE, TIMESTAMP], kind="stable")
    return frame.reset_index(drop=True)


def _plural(n: int, one: str, many: str) -> str:
    return f"1 {one}" if n == 1 else f"{n:,} {many}"


def _pct(share: float) -> str:
    value = share * 100
    return f"{value:.0f}%" if value >= 10 or value == 0 else f"{value:.1f}%"


def _human_duration(seconds: float) -> str:
    """Seconds as a short phrase in the largest sensible unit: "4.2 days", "35 minutes"."""
    if seconds is None or math.isnan(seconds):
        return "unknown"
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"
