"""Event-log ingestion: the single place where uploaded logs are read, validated and stored.

Every uploaded log (CSV, XES, XES.gz, Parquet) is turned into one canonical Parquet file whose
key columns carry the XES names and the dtypes ``pm4py.read_xes`` produces, so that every job can
load it back with :func:`load_events` and hand it to pm4py without knowing where it came from.
Rows are stored in the original file order; :func:`ordered` gives pm4py's event order.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

MIXED_TIMESTAMPS = "mixed"  # timestampFormat that asks for per-value parsing and repair
XES_CASE, XES_ACTIVITY, XES_TIMESTAMP, XES_RESOURCE = (
    "case:concept:name",
    "concept:name",
    "time:timestamp",
    "org:resource",
)

FORMATS = ("csv", "xes", "xes.gz", "parquet")
SUPPORTED = "supported: CSV, XES, XES.gz, Parquet"

# Same dtypes as pm4py.read_xes gives under pandas 3 (pyarrow-backed `str`, UTC microseconds).
KEY_STRING_DTYPE = "str"
TIMESTAMP_DTYPE = "datetime64[us, UTC]"

# What pm4py.read_xes / format_dataframe put in DataFrame.attrs; some pm4py functions read them.
PM4PY_ATTRS = {
    "pm4py:param:activity_key": XES_ACTIVITY,
    "pm4py:param:attribute_key": XES_ACTIVITY,
    "pm4py:param:timestamp_key": XES_TIMESTAMP,
    "pm4py:param:resource_key": XES_RESOURCE,
    "pm4py:param:transition_key": "lifecycle:transition",
    "pm4py:param:group_key": "org:group",
    "pm4py:param:case_id_key": XES_CASE,
}

_META_KEY = b"pmjobs"
_HEAD_BYTES = 8192
_CSV_SEPARATORS = (",", ";", "\t", "|")
# A value that is clearly a date-time: used to decide which extra CSV columns to parse as dates.
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


class EventLogError(ValueError):
    """Input that is not a usable event log; str(e) is a sentence a person understands."""


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns of a tabular upload hold the case id, activity, timestamp and resource.

    ``resource`` is optional: if it is left at the default and the column is absent it is skipped;
    a column the user named explicitly must exist. ``timestamp_format`` is a strftime format
    (None = infer). XES uploads ignore the mapping: XES already uses these names.
    """

    case: str = XES_CASE
    activity: str = XES_ACTIVITY
    timestamp: str = XES_TIMESTAMP
    resource: str | None = XES_RESOURCE
    timestamp_format: str | None = None


@dataclass(frozen=True)
class DatasetStats:
    """Summary of an ingested log, returned to the uploader and stored with the dataset."""

    format: str
    events: int
    cases: int
    activities: int
    start_time: datetime | None
    end_time: datetime | None
    columns: list[str]
    warnings: list[dict[str, Any]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Format detection


def detect_format(filename: str, head: bytes) -> str:
    """Return "csv" | "xes" | "xes.gz" | "parquet" from the client's file name, else magic bytes.

    The extension wins because clients name files deliberately; magic bytes rescue uploads
    with no or an unknown extension (e.g. a blob saved as "upload").
    """
    name = filename.strip().lower()
    if name.endswith(".xes.gz"):
        return "xes.gz"
    if name.endswith(".xes"):
        return "xes"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv.gz", ".csv.zip", ".zip")):
        raise EventLogError(
            f"'{filename}' is a compressed CSV/ZIP archive, which is not supported; "
            f"upload the plain file ({SUPPORTED})."
        )
    if head.startswith(b"\x1f\x8b"):
        return "xes.gz"
    if head.startswith(b"PAR1"):
        return "parquet"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text.startswith((b"<?xml", b"<log")):
        return "xes"
    raise EventLogError(f"'{filename}' is not a recognised event-log file type ({SUPPORTED}).")


# --------------------------------------------------------------------------------------------
# Public entry points


def ingest(source: Path, filename: str, mapping: ColumnMapping, dest: Path) -> DatasetStats:
    """Read, validate and normalise an uploaded log and store it as canonical Parquet at `dest`.

    `source` holds the uploaded bytes; `filename` is the client's name, used only for format
    detection and messages. Any problem with the input raises EventLogError and leaves `dest`
    untouched (the file is written to a temporary name and renamed into place).
    """
    source = Path(source)
    dest = Path(dest)
    try:
        size = source.stat().st_size
        with source.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except OSError as exc:
        raise EventLogError(
            f"The uploaded file '{filename}' could not be opened: {_reason(exc)}."
        ) from exc
    if size == 0:
        raise EventLogError(f"The uploaded file '{filename}' is empty (0 bytes).")

    fmt = detect_format(filename, head)
    if fmt in ("xes", "xes.gz"):
        df = _read_xes(source, fmt, filename)
        mapping = ColumnMapping()  # XES already uses the XES names
    elif fmt == "csv":
        df = _read_csv(source, head, filename, mapping)
    else:
        df = _read_parquet(source, filename)

    df = _normalise(df, mapping, filename, fmt)
    stats = _stats(df, fmt)
    _write_parquet_atomic(df, dest, fmt, filename)
    return stats


def store_events(df: pd.DataFrame, dest: Path, fmt: str = "parquet") -> DatasetStats:
    """Store a frame that already has the XES key columns (e.g. a job's enriched events) as
    canonical Parquet at `dest`, atomically, and describe it."""
    df = _parquet_safe(df.reset_index(drop=True).copy())
    _write_parquet_atomic(df, Path(dest), fmt, Path(dest).name)
    return _stats(df, fmt)


def load_events(path: Path) -> pd.DataFrame:
    """Read the canonical Parquet back as the DataFrame pm4py expects.

    Rows come back in the original file order with a fresh RangeIndex; key columns have the
    dtypes of ``pm4py.read_xes`` (``str``, ``str``, ``datetime64[us, UTC]``) and ``attrs``
    name the XES keys, as pm4py's readers set them.
    """
    df = pd.read_parquet(Path(path), engine="pyarrow")
    for col in (XES_CASE, XES_ACTIVITY):
        if df[col].dtype != KEY_STRING_DTYPE:
            df[col] = df[col].astype(KEY_STRING_DTYPE)
    if df[XES_TIMESTAMP].dtype != TIMESTAMP_DTYPE:
        df[XES_TIMESTAMP] = _to_utc_us(df[XES_TIMESTAMP])
    df = df.reset_index(drop=True)
    df.attrs = dict(PM4PY_ATTRS)
    return df


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    """Return `df` in pm4py's event order: case, then timestamp, ties by original position.

    This is the order ``pm4py.format_dataframe`` produces. The index is kept, so after
    :func:`load_events` it still gives each event's position in the original file.
    """
    pos = "__pmjobs_pos__"
    out = df.assign(**{pos: np.arange(len(df))})
    out = out.sort_values([XES_CASE, XES_TIMESTAMP, pos]).drop(columns=pos)
    out.attrs = dict(df.attrs)
    return out


# --------------------------------------------------------------------------------------------
# Readers: each returns the raw frame or raises EventLogError.


def _read_xes(source: Path, fmt: str, filename: str) -> pd.DataFrame:
    """Read with pm4py's default importer, exactly as a user calling pm4py.read_xes would."""
    import pm4py  # heavy (and prints a banner), so only when a worker actually reads XES

    kind = "XES.gz" if fmt == "xes.gz" else "XES"
    try:
        # No warnings.catch_warnings() here: it is not thread-safe (the API calls this in a
        # thread) and pm4py's "install r4pm" hint is shown only once per process anyway.
        with _xes_path(source, fmt) as path:
            df = pm4py.read_xes(str(path), show_progress_bar=False)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise EventLogError(
            f"'{filename}' could not be read as {kind}: the compressed data is truncated or "
            f"corrupt ({_reason(exc)})."
        ) from exc
    except SyntaxError as exc:  # lxml.etree.XMLSyntaxError subclasses SyntaxError
        raise EventLogError(
            f"'{filename}' could not be read as {kind}: it is not well-formed XML ({_reason(exc)})."
        ) from exc
    except AttributeError as exc:  # pm4py's iterparse importer on XML without a <log> root
        raise EventLogError(
            f"'{filename}' could not be read as {kind}: it is XML but not an XES event log "
            f"(no <log> element)."
        ) from exc
    except Exception as exc:
        raise EventLogError(
            f"'{filename}' could not be read as {kind}: {type(exc).__name__}: {_reason(exc)}."
        ) from exc
    if not isinstance(df, pd.DataFrame):
        raise EventLogError(f"'{filename}' could not be read as {kind}.")
    return df


@contextlib.contextmanager
def _xes_path(source: Path, fmt: str) -> Iterator[Path]:
    """Yield a path whose suffix tells pm4py's importer whether to gunzip (it goes by name)."""
    want_gz = fmt == "xes.gz"
    if source.name.lower().endswith(".gz") == want_gz and (
        want_gz or source.name.lower().endswith(".xes")
    ):
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="pmjobs-xes-") as tmp:
        link = Path(tmp) / ("log.xes.gz" if want_gz else "log.xes")
        try:
            link.symlink_to(source.resolve())
        except OSError:
            shutil.copyfile(source, link)
        yield link


def _read_csv(source: Path, head: bytes, filename: str, mapping: ColumnMapping) -> pd.DataFrame:
    """Read a CSV with pandas; key columns as text so ids like "007" survive unchanged."""
    if b"\x00" in head:
        raise EventLogError(
            f"'{filename}' could not be read as CSV: it contains binary data, not text."
        )
    sep = _sniff_separator(head)
    text_cols = [mapping.case, mapping.activity, mapping.timestamp]
    if mapping.resource:
        text_cols.append(mapping.resource)
    dtype = dict.fromkeys(text_cols, "str")
    last_exc: Exception | None = None
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return pd.read_csv(source, sep=sep, dtype=dtype, encoding=encoding, low_memory=False)
        except UnicodeDecodeError as exc:
            last_exc = exc
        except pd.errors.EmptyDataError as exc:
            raise EventLogError(f"'{filename}' contains no data (no header row).") from exc
        except (pd.errors.ParserError, ValueError, OverflowError) as exc:
            raise EventLogError(f"'{filename}' is not a valid CSV file: {_reason(exc)}.") from exc
    raise EventLogError(
        f"'{filename}' could not be read as CSV: it is neither UTF-8 nor Windows-1252 text."
    ) from last_exc


def _reason(exc: BaseException) -> str:
    """An exception's text for a message: one line, without server-side file paths."""
    text = " ".join(str(exc).split())
    text = re.sub(r" \([^()]*, line \d+\)$", "", text)  # lxml appends "(<file>, line N)"
    text = re.sub(r"'/[^']*'", "the file", text)  # pyarrow / OSError quote the full path
    return text.rstrip(".") or type(exc).__name__


def _sniff_separator(head: bytes) -> str:
    """Pick the separator that occurs most often in the header line (default comma)."""
    first = head.decode("utf-8", errors="replace").splitlines()[0] if head else ""
    counts = {sep: first.count(sep) for sep in _CSV_SEPARATORS}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] > 0 else ","


def _read_parquet(source: Path, filename: str) -> pd.DataFrame:
    try:
        return pd.read_parquet(source, engine="pyarrow")
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... on corrupt files
        raise EventLogError(f"'{filename}' could not be read as Parquet: {_reason(exc)}.") from exc


# --------------------------------------------------------------------------------------------
# Normalisation and validation


def _normalise(df: pd.DataFrame, mapping: ColumnMapping, filename: str, fmt: str) -> pd.DataFrame:
    """Rename the mapped columns to XES names, type the key columns, make the rest Parquet-safe."""
    df.columns = [str(c) for c in df.columns]
    # pm4py's internal bookkeeping columns (@@index, @@case_index...) would be stale; drop them.
    df = df.drop(columns=[c for c in df.columns if c.startswith("@@")])
    if len(df) == 0:
        raise EventLogError(f"'{filename}' contains no events.")

    roles = {"case": mapping.case, "activity": mapping.activity, "timestamp": mapping.timestamp}
    resource = mapping.resource
    if resource is not None and resource not in df.columns and resource == XES_RESOURCE:
        resource = None  # the default resource column is optional
    if resource is not None:
        roles["resource"] = resource
    _check_mapping(roles, df, filename, fmt)

    targets = {
        "case": XES_CASE,
        "activity": XES_ACTIVITY,
        "timestamp": XES_TIMESTAMP,
        "resource": XES_RESOURCE,
    }
    rename = {roles[r]: targets[r] for r in roles if roles[r] != targets[r]}
    # A column that already has one of the target names but is not the mapped one is kept
    # under another name rather than silently dropped (pm4py.format_dataframe drops it).
    for target in list(rename.values()):
        if target in df.columns and target not in rename:
            rename[target] = _free_name(f"{target} (original)", df.columns)
    df = df.rename(columns=rename)

    ts_format = mapping.timestamp_format if fmt in ("csv", "parquet") else None
    repair = ts_format == MIXED_TIMESTAMPS
    for col in (XES_CASE, XES_ACTIVITY) if repair else (XES_CASE, XES_ACTIVITY, XES_TIMESTAMP):
        _check_no_missing(df, col, _source_name(col, rename), filename)
    if repair:
        df[XES_TIMESTAMP] = _repair_timestamps(df, _source_name(XES_TIMESTAMP, rename), filename)
    else:
        df[XES_TIMESTAMP] = _parse_timestamps(
            df[XES_TIMESTAMP], _source_name(XES_TIMESTAMP, rename), ts_format, filename
        )
    for col in (XES_CASE, XES_ACTIVITY):
        df[col] = df[col].astype(KEY_STRING_DTYPE)
    if XES_RESOURCE in df.columns and not pd.api.types.is_string_dtype(df[XES_RESOURCE].dtype):
        df[XES_RESOURCE] = _as_text(df[XES_RESOURCE])

    if fmt == "csv":
        df = _parse_other_datetimes(df)
    df = _parquet_safe(df)
    return df.reset_index(drop=True)


def _repair_timestamps(df: pd.DataFrame, shown: str, filename: str) -> pd.Series:
    """``timestampFormat=mixed``: parse each value in whichever known format it has and infer
    missing ones from their case (flows.steps.enrichment.repair_timestamps); what was repaired
    is reported as warnings stored with the dataset."""
    from flows.steps.enrichment import repair_timestamps

    repaired, report = repair_timestamps(df[XES_TIMESTAMP], df[XES_CASE])
    if int(report.get("uninferable", 0)):
        raise EventLogError(
            f"{report['uninferable']} timestamp(s) in column '{shown}' of '{filename}' could "
            "not be parsed or inferred (their case has no valid timestamp at all)."
        )
    df.attrs["pmjobs_warnings"] = list(report.get("warnings", []))
    return _to_utc_us(repaired)


def _check_mapping(roles: dict[str, str], df: pd.DataFrame, filename: str, fmt: str) -> None:
    seen: dict[str, str] = {}
    for role, col in roles.items():
        if col in seen:
            raise EventLogError(
                f"Column '{col}' is mapped to both the {seen[col]} and the {role}; "
                "each role needs its own column."
            )
        seen[col] = role
    missing = [(role, col) for role, col in roles.items() if col not in df.columns]
    if not missing:
        return
    what = ", ".join(f"'{col}' ({role})" for role, col in missing)
    noun = "attribute" if fmt.startswith("xes") else "column"
    plural = "s" if len(missing) > 1 else ""
    available = _list_columns(df.columns)
    raise EventLogError(
        f"'{filename}' has no {noun}{plural} {what}; available {noun}s: {available}."
        + ("" if fmt.startswith("xes") else " Set the column mapping to the right names.")
    )


def _list_columns(columns: pd.Index, limit: int = 30) -> str:
    names = [c if len(c) <= 60 else c[:57] + "..." for c in map(str, columns)]
    shown = ", ".join(repr(c) for c in names[:limit])
    return shown + (f", ... ({len(names)} in total)" if len(names) > limit else "") or "(none)"


def _free_name(name: str, columns: pd.Index) -> str:
    candidate, n = name, 2
    while candidate in columns:
        candidate, n = f"{name} {n}", n + 1
    return candidate


def _source_name(col: str, rename: dict[str, str]) -> str:
    """The user's name for a key column, for messages."""
    return next((src for src, dst in rename.items() if dst == col), col)


def _check_no_missing(df: pd.DataFrame, col: str, shown: str, filename: str) -> None:
    """Reject empty keys: pm4py would silently drop those events (format_dataframe does)."""
    missing = df[col].isna().to_numpy()
    if not missing.any():
        return
    count = int(missing.sum())
    first = int(np.flatnonzero(missing)[0]) + 1
    raise EventLogError(
        f"Column '{shown}' in '{filename}' is empty in {count} of {len(df)} events "
        f"(first at data row {first}); every event needs a case id, activity and timestamp."
    )


def _parse_timestamps(
    values: pd.Series, shown: str, ts_format: str | None, filename: str
) -> pd.Series:
    """Parse to tz-aware UTC microseconds, the dtype pm4py.read_xes produces.

    Offsets are honoured and naive values are taken as UTC, as pm4py does. Without a format,
    ISO 8601 is tried first (fast, unambiguous), then pandas' format inference (what
    pm4py.format_dataframe uses).
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _to_utc_us(values)
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        example = values.iloc[0]
        raise EventLogError(
            f"Column '{shown}' in '{filename}' holds numbers (e.g. {example!r}), not timestamps; "
            "map the timestamp column to date-time text such as 2011-10-11 13:45:40."
        )
    text = values.astype(KEY_STRING_DTYPE)
    attempts = [ts_format] if ts_format else ["ISO8601", None]
    worst: tuple[int, str] | None = None
    for fmt in attempts:
        try:
            return _to_utc_us(pd.to_datetime(text, utc=True, format=fmt))
        except (ValueError, TypeError, OverflowError):
            coerced = pd.to_datetime(text, utc=True, format=fmt, errors="coerce")
        bad = coerced.isna().to_numpy() & text.notna().to_numpy()
        count = int(bad.sum())
        if count == 0:  # e.g. out-of-bounds handled by coerce: report the raw failure
            count = 1
            bad = coerced.isna().to_numpy()
        example = str(text.to_numpy()[np.flatnonzero(bad)[0]]) if bad.any() else "?"
        if worst is None or count < worst[0]:
            worst = (count, example)
    assert worst is not None
    count, example = worst
    hint = (
        f"they do not match the format '{ts_format}'"
        if ts_format
        else "set timestamp_format (e.g. '%d/%m/%Y %H:%M') if the format is not ISO 8601"
    )
    raise EventLogError(
        f"Column '{shown}' in '{filename}' has {count} of {len(text)} values that are not valid "
        f"timestamps (e.g. {example!r}); {hint}."
    )


def _to_utc_us(values: pd.Series) -> pd.Series:
    if getattr(values.dt, "tz", None) is None:
        values = values.dt.tz_localize("UTC")
    else:
        values = values.dt.tz_convert("UTC")
    return values.dt.as_unit("us")


def _as_text(values: pd.Series) -> pd.Series:
    """Strings, keeping missing values missing (resource ids like 537 become "537")."""
    return values.where(values.isna(), values.astype(str)).astype(KEY_STRING_DTYPE)


def _parse_other_datetimes(df: pd.DataFrame) -> pd.DataFrame:
    """Parse extra CSV columns that are clearly ISO date-times (e.g. case:deadline) to UTC.

    pm4py.format_dataframe converts such columns too; only unambiguous ISO values qualify, so
    codes or numbers that merely look date-ish stay text.
    """
    for col in df.columns:
        if col == XES_TIMESTAMP or not pd.api.types.is_string_dtype(df[col].dtype):
            continue
        sample = df[col].dropna().head(50)
        if sample.empty or not all(_ISO_DATETIME.match(str(v)) for v in sample):
            continue
        try:
            df[col] = _to_utc_us(pd.to_datetime(df[col], utc=True, format="ISO8601"))
        except (ValueError, TypeError, OverflowError):
            continue
    return df


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Turn object columns pyarrow cannot store (mixed ints/strings...) into strings."""
    for col in df.columns:
        if df[col].dtype != object:
            continue
        try:
            pa.array(df[col], from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            df[col] = _as_text(df[col])
    return df


def _stats(df: pd.DataFrame, fmt: str) -> DatasetStats:
    ts = df[XES_TIMESTAMP]
    start, end = ts.min(), ts.max()
    return DatasetStats(
        format=fmt,
        events=len(df),
        cases=int(df[XES_CASE].nunique()),
        activities=int(df[XES_ACTIVITY].nunique()),
        start_time=None if pd.isna(start) else start.to_pydatetime(),
        end_time=None if pd.isna(end) else end.to_pydatetime(),
        columns=[str(c) for c in df.columns],
        warnings=list(df.attrs.get("pmjobs_warnings", [])),
    )


# --------------------------------------------------------------------------------------------
# Storage


def _write_parquet_atomic(df: pd.DataFrame, dest: Path, fmt: str, filename: str) -> None:
    """Write to a temporary file in dest's directory and rename it into place.

    os.replace is atomic on one filesystem, so readers see either no file or the whole file.
    """
    try:
        table = pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise EventLogError(
            f"'{filename}' has column values that cannot be stored: {_reason(exc)}."
        ) from exc
    meta = dict(table.schema.metadata or {})
    meta[_META_KEY] = json.dumps({"schema": 1, "source_format": fmt}).encode()
    table = table.replace_schema_metadata(meta)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tmp.open("wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
