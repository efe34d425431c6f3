"""Case-level KPIs and a root-cause analysis for the Analysis job.

Everything starts from :func:`case_table` (one row per case), so KPIs by attribute, by period
and the root-cause tree all agree on what a case's throughput, rework and SLA status are.
Results are JSON-able (plain ints/floats/strings/None) and deterministic for a given log.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flows.steps.eventlog import XES_ACTIVITY, XES_CASE, XES_TIMESTAMP

CASE_COLUMNS = (
    "case_id",
    "start",
    "end",
    "throughput_seconds",
    "events",
    "rework",
    "sla_breached",
)
# Columns the enrichment adds that are constant per case but are outcomes (they restate the
# throughput), not attributes: using them would "explain" long cases by their own duration.
OUTCOME_COLUMNS = frozenset({"case_duration_seconds", "case_working_duration_seconds"})
MAX_CATEGORIES = 10  # one-hot columns per categorical attribute; rarer values -> "(other)"
MAX_NUMERIC_GROUPS = 10  # kpis_by_attribute: numeric attributes with more values are binned
FREQS = {"M": "M", "W": "W-SUN", "D": "D"}


def case_table(df: pd.DataFrame, sla_seconds: float | None = None) -> pd.DataFrame:
    """One row per case (in first-appearance order): timing, size, rework, SLA, attributes.

    ``rework``: some activity occurs more than once in the case. ``sla_breached``: throughput
    > `sla_seconds` (nullable boolean, all missing without an SLA). Case attributes are the
    remaining columns with at most one distinct non-missing value in every case (so an
    attribute recorded on only the first event, like Sepsis' Age, counts); their value is
    that one value. An attribute whose name clashes with the columns above gets " (attribute)".
    """
    if len(df) == 0:
        raise ValueError("The event log has no events.")
    case = df[XES_CASE]
    g = df.groupby(XES_CASE, sort=False)
    ts = g[XES_TIMESTAMP]
    out = pd.DataFrame(
        {
            "start": ts.min(),
            "end": ts.max(),
            "events": g.size(),
            "rework": g[XES_ACTIVITY].nunique() < g.size(),
        }
    )
    out["throughput_seconds"] = (out["end"] - out["start"]).dt.total_seconds()
    if sla_seconds is None:
        out["sla_breached"] = pd.array([pd.NA] * len(out), dtype="boolean")
    else:
        out["sla_breached"] = (out["throughput_seconds"] > float(sla_seconds)).astype("boolean")
    out = out.rename_axis("case_id").reset_index()
    out["case_id"] = out["case_id"].astype(case.dtype)

    candidates = [
        c
        for c in df.columns
        if c not in (XES_CASE, XES_ACTIVITY, XES_TIMESTAMP) and c not in OUTCOME_COLUMNS
    ]
    attrs: dict[str, pd.Series] = {}
    if candidates:
        distinct = g[candidates].nunique(dropna=True).max()
        present = df[candidates].notna().any()
        for col in candidates:
            if distinct[col] <= 1 and present[col]:
                name = f"{col} (attribute)" if col in CASE_COLUMNS else col
                attrs[name] = g[col].first().to_numpy()
    columns = [c for c in CASE_COLUMNS if c != "case_id"]
    table = pd.concat([out[["case_id", *columns]], pd.DataFrame(attrs, index=out.index)], axis=1)
    return table


def _rates(group: pd.DataFrame) -> dict[str, Any]:
    sla = group["sla_breached"]
    return {
        "cases": len(group),
        "meanThroughputSeconds": _num(group["throughput_seconds"].mean()),
        "medianThroughputSeconds": _num(group["throughput_seconds"].median()),
        "reworkRate": _num(group["rework"].mean()),
        "slaBreachRate": _num(sla.astype("Float64").mean()) if sla.notna().any() else None,
    }


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _json_value(value: Any) -> Any:
    """A cell as JSON: None for missing, ISO text for times, Python scalars otherwise."""
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, str | int | float | bool) else str(value)


def kpis_by_attribute(cases: pd.DataFrame, attribute: str) -> list[dict[str, Any]]:
    """KPIs per value of a case attribute.

    Missing values form their own group (value None). Numeric attributes with more than
    MAX_NUMERIC_GROUPS distinct values are cut into quartile bins (values "[min, q1]",
    "(q1, q2]", ..., in bin order), since one group per amount would be unreadable; other
    attributes are listed largest group first (ties by value).
    """
    if attribute not in cases.columns:
        raise ValueError(
            f"'{attribute}' is not a column of the case table; available: "
            f"{', '.join(map(str, cases.columns))}."
        )
    values = cases[attribute]
    numeric = _numeric_view(values, attribute)
    binned = numeric is not None and numeric.nunique() > MAX_NUMERIC_GROUPS
    if binned:
        assert numeric is not None
        codes, edges = pd.qcut(numeric, 4, labels=False, retbins=True, duplicates="drop")
        labels = [
            f"{'[' if i == 0 else '('}{_fmt(lo)}, {_fmt(hi)}]"
            for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))
        ]
        codes = codes.fillna(-1).astype(int).to_numpy()
        keys = pd.Series([labels[c] if c >= 0 else None for c in codes], index=cases.index)
    else:
        keys = values.astype(object).map(_json_value)
    rows = []
    for key, group in cases.groupby(keys.map(lambda v: "" if v is None else f"={v}")):
        rows.append(
            {"value": _json_value(keys.loc[group.index[0]]) if key else None, **_rates(group)}
        )
    if binned:
        rank = {label: i for i, label in enumerate(labels)}
        rows.sort(key=lambda r: rank.get(r["value"], len(rank)))
    else:
        rows.sort(key=lambda r: (-r["cases"], r["value"] is None, str(r["value"])))
    return rows


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _numeric_view(values: pd.Series, name: str) -> pd.Series | None:
    """The attribute as numbers if it is numeric or text holding only numbers (e.g. amounts
    that a CSV or XES delivered as strings); None otherwise.

    Identifier attributes (XES org:* and concept:* keys, e.g. resource "537") stay
    categorical even when they look numeric: their order means nothing.
    """
    if _is_identifier(name):
        return None
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_datetime64_any_dtype(
        values.dtype
    ):
        return None
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.astype(float)
    present = values.dropna()
    if present.empty or present.map(lambda v: isinstance(v, bool)).any():
        return None
    converted = pd.to_numeric(values.astype(object).where(values.notna()), errors="coerce")
    if converted.notna().sum() != len(present):
        return None
    return converted.astype(float)


def _is_identifier(name: str) -> bool:
    base = name.removeprefix("case:")
    return base.startswith(("org:", "concept:", "lifecycle:")) or base.endswith(":id")


def kpis_by_period(cases: pd.DataFrame, freq: str = "M") -> list[dict[str, Any]]:
    """KPIs of cases grouped by the (UTC) month, ISO week or day in which they started.

    Periods without cases in between are included (cases 0), so a chart shows the gap.
    ``period`` is "2011-10", "2011-W40" or "2011-10-03"; ``periodStart`` is the first day.
    """
    if freq not in FREQS:
        raise ValueError(
            f"freq must be one of {', '.join(FREQS)} (month, week, day), not {freq!r}."
        )
    start = cases["start"]
    if getattr(start.dt, "tz", None) is not None:
        start = start.dt.tz_convert("UTC").dt.tz_localize(None)
    periods = start.dt.to_period(FREQS[freq])
    if periods.isna().all():
        return []
    rows = []
    by_period = {p: g for p, g in cases.groupby(periods, sort=True)}
    for period in pd.period_range(periods.min(), periods.max(), freq=FREQS[freq]):
        first_day = period.start_time
        if freq == "M":
            label = period.strftime("%Y-%m")
        elif freq == "W":
            iso = first_day.isocalendar()
            label = f"{iso[0]}-W{iso[1]:02d}"
        else:
            label = period.strftime("%Y-%m-%d")
        group = by_period.get(period, cases.iloc[0:0])
        rows.append(
            {"period": label, "periodStart": first_day.strftime("%Y-%m-%d"), **_rates(group)}
        )
    return rows


# --------------------------------------------------------------------------------------------
# Root cause


def root_cause(cases: pd.DataFrame, target: str = "long", max_depth: int = 3) -> dict[str, Any]:
    """Which case attributes best separate long (or SLA-breaching) cases from the rest.

    Target: ``"long"`` = throughput above the 75th percentile of all cases; ``"sla"`` =
    ``sla_breached`` (the case table needs an SLA). A shallow decision tree is used because
    its splits read as rules a process owner can check, unlike a black-box score.

    Features (every column beyond CASE_COLUMNS, i.e. the case attributes): numbers, and
    text columns that hold only numbers (except identifiers such as org:resource), are used
    as numbers (missing -> the median plus a "<col> is missing" flag); booleans and other
    text are one-hot encoded,
    keeping the MAX_CATEGORIES most frequent values (ties by value) and pooling the rest as
    "(other)", missing as "(missing)"; date-times and enrichment outcomes are skipped, as are
    features with one value only. The tree is fitted on a 75 % stratified split (seed 0) and
    scored on the other 25 %; rules and importances come from that tree, and each rule's
    support / positive rate is counted over all cases.
    """
    if target not in ("long", "sla"):
        raise ValueError(f"target must be 'long' or 'sla', not {target!r}.")
    if not isinstance(max_depth, int) or not 1 <= max_depth <= 10:
        raise ValueError("max_depth must be an integer from 1 to 10.")
    if target == "sla":
        if "sla_breached" not in cases.columns or cases["sla_breached"].isna().all():
            raise ValueError("target 'sla' needs a case table built with an SLA (sla_seconds).")
        y = cases["sla_breached"].fillna(False).to_numpy(dtype=bool)
        threshold = None
    else:
        threshold = float(cases["throughput_seconds"].quantile(0.75))
        y = (cases["throughput_seconds"] > threshold).to_numpy()
    positives = int(y.sum())
    result: dict[str, Any] = {
        "target": target,
        "definition": (
            f"throughput > {threshold:.0f} s (75th percentile)"
            if threshold is not None
            else "SLA breached"
        ),
        "positives": positives,
        "cases": len(cases),
        "featureImportance": [],
        "rules": [],
        "heldOutAccuracy": None,
        "baselineAccuracy": None,
    }
    X, kinds = _features(cases)
    if X.shape[1] == 0 or positives == 0 or positives == len(cases) or len(cases) < 8:
        result["note"] = (
            "no usable case attributes"
            if X.shape[1] == 0
            else "too few cases or no contrast between positive and negative cases"
        )
        return result

    from sklearn.model_selection import train_test_split
    from sklearn.tree import DecisionTreeClassifier

    stratify = y if min(positives, len(y) - positives) >= 2 else None
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=0.25, random_state=0, stratify=stratify
    )
    tree = DecisionTreeClassifier(
        max_depth=max_depth,
        min_samples_leaf=max(5, len(idx_train) // 100),
        random_state=0,
    )
    values = X.to_numpy(dtype=float)
    tree.fit(values[idx_train], y[idx_train])
    majority = y[idx_train].mean() >= 0.5
    result["heldOutAccuracy"] = float((tree.predict(values[idx_test]) == y[idx_test]).mean())
    result["baselineAccuracy"] = float((y[idx_test] == majority).mean())
    result["featureImportance"] = [
        {"feature": name, "importance": round(float(imp), 6)}
        for imp, name in sorted(
            zip(tree.feature_importances_, X.columns, strict=True), key=lambda p: (-p[0], p[1])
        )
        if imp > 0
    ]
    result["rules"] = _rules(tree, kinds, values, y, target)
    return result


def _features(cases: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str, str]]]:
    """The documented feature matrix, and per feature (kind, attribute, value).

    kind is "number", "missing" (flag for a number) or "onehot"; column order follows the
    case table, so the result is deterministic.
    """
    columns: dict[str, np.ndarray] = {}
    kinds: list[tuple[str, str, str]] = []
    for col in cases.columns:
        if col in CASE_COLUMNS or col in OUTCOME_COLUMNS:
            continue
        values = cases[col]
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            continue
        numeric = _numeric_view(values, str(col))
        if numeric is not None:
            if numeric.nunique() < 2:
                continue
            missing = numeric.isna()
            columns[str(col)] = numeric.fillna(numeric.median()).to_numpy()
            kinds.append(("number", str(col), ""))
            if missing.any():
                columns[f"{col} is missing"] = missing.to_numpy(dtype=float)
                kinds.append(("missing", str(col), ""))
            continue
        text = values.astype(object).map(
            lambda v: "(missing)" if _json_value(v) is None else str(v)
        )
        counts = text.value_counts()
        if len(counts) < 2:
            continue
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        keep = [v for v, _ in ranked[:MAX_CATEGORIES]]
        if len(ranked) > MAX_CATEGORIES:
            text = text.where(text.isin(keep), "(other)")
            keep.append("(other)")
        for value in keep:
            columns[f"{col} = {value}"] = (text == value).to_numpy(dtype=float)
            kinds.append(("onehot", str(col), value))
    return pd.DataFrame(columns, index=cases.index), kinds


def _rules(
    tree: Any, kinds: list[tuple[str, str, str]], X: np.ndarray, y: np.ndarray, target: str
) -> list[dict[str, Any]]:
    """One plain-language rule per leaf, most positive first."""
    t = tree.tree_
    leaf_of = tree.apply(X)
    label = "long" if target == "long" else "SLA breached"
    rules: list[dict[str, Any]] = []

    def walk(node: int, conds: list[tuple[tuple[str, str, str], bool, float]]) -> None:
        if t.children_left[node] == -1:
            members = leaf_of == node
            n = int(members.sum())
            if n == 0:
                return
            pos = int(y[members].sum())
            phrases = _describe(conds)
            rate = pos / n
            rules.append(
                {
                    "rule": f"If {' and '.join(phrases) or 'any case'}: "
                    f"{rate:.0%} of {n} cases are {label}",
                    "conditions": phrases,
                    "cases": n,
                    "support": round(n / len(y), 6),
                    "positives": pos,
                    "positiveRate": round(rate, 6),
                }
            )
            return
        kind, thr = kinds[t.feature[node]], float(t.threshold[node])
        walk(t.children_left[node], [*conds, (kind, False, thr)])
        walk(t.children_right[node], [*conds, (kind, True, thr)])

    walk(0, [])
    rules.sort(key=lambda r: (-r["positiveRate"], -r["cases"], r["rule"]))
    return rules


def _describe(conds: list[tuple[tuple[str, str, str], bool, float]]) -> list[str]:
    """Conditions as phrases: "x is v", "x is not v", "x is missing", merged numeric bounds."""
    lower: dict[str, float] = {}
    upper: dict[str, float] = {}
    phrases: list[str] = []
    numbers: list[str] = []
    for (kind, col, value), above, thr in conds:
        if kind == "onehot" and value == "(missing)":
            phrases.append(f"{col} is missing" if above else f"{col} is present")
        elif kind == "onehot" and value == "(other)":
            rare = f"one of its rarer values (not the {MAX_CATEGORIES} most frequent)"
            phrases.append(f"{col} is {rare}" if above else f"{col} is not {rare}")
        elif kind == "onehot":
            phrases.append(f"{col} is {value}" if above else f"{col} is not {value}")
        elif kind == "missing":
            phrases.append(f"{col} is missing" if above else f"{col} is present")
        else:
            if col not in numbers:
                numbers.append(col)
            if above:
                lower[col] = max(lower.get(col, thr), thr)
            else:
                upper[col] = min(upper.get(col, thr), thr)
    for col in numbers:
        if col in lower and col in upper:
            phrases.append(f"{_fmt(lower[col])} < {col} <= {_fmt(upper[col])}")
        elif col in lower:
            phrases.append(f"{col} > {_fmt(lower[col])}")
        else:
            phrases.append(f"{col} <= {_fmt(upper[col])}")
    return phrases
