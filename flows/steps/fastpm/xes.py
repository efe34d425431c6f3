"""XES import: r4pm's speed, pm4py's default (lxml iterparse) DataFrame.

``pm4py.read_xes(path, variant="iterparse")`` parses ~20k events/s; ``r4pm`` ~290k/s and gives
the same rows and values, but its column order changes from process to process and a few
dtypes differ (missing booleans are ``None``, not NaN). :func:`read_xes` reads with r4pm and
repairs that; where r4pm would read the file differently from iterparse it falls back to
pm4py's iterparse importer, so the result is always iterparse's frame:

* a DTD (``<!DOCTYPE``) is refused outright: no entity is ever expanded (billion laughs),
  and r4pm would not expand them either, so it could not match iterparse anyway;
* nested attributes, lists or containers inside traces, keys typed both as string and as
  something else (r4pm turns those into strings; iterparse keeps the Python objects), and
  int/float/boolean/date values outside conservative patterns (r4pm reads an unparseable int
  as 0, iterparse drops it) go to iterparse; so do string values with raw tabs/newlines (XML
  normalises them, r4pm does not);
* the column order is iterparse's: keys in order of first appearance over the events, each
  event's own attributes in document order followed by its trace's ``case:`` attributes.
  A short lxml scan from the start of the file stops as soon as every column was placed.
"""

from __future__ import annotations

import gzip
import importlib.util
import re
from collections.abc import Iterator
from contextlib import contextmanager
from copy import copy
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

TIMESTAMP_DTYPE = "datetime64[us, UTC]"
# What pm4py's iterparse importer puts in DataFrame.attrs (log.properties minus the case id).
ITERPARSE_ATTRS: dict[str, str] = {
    "pm4py:param:activity_key": "concept:name",
    "pm4py:param:attribute_key": "concept:name",
    "pm4py:param:timestamp_key": "time:timestamp",
    "pm4py:param:resource_key": "org:resource",
    "pm4py:param:transition_key": "lifecycle:transition",
    "pm4py:param:group_key": "org:group",
}
_CASE_PREFIX = "case:"
_PROLOG_LIMIT = 1 << 20
# Inside traces, any of these makes r4pm's frame differ from iterparse's: nested attributes
# (a closing tag), lists/containers, and values that r4pm and Python parse differently
# (r4pm turns an unparseable int/float/boolean into 0/0.0/False, and rejects ISO dates that
# Python accepts). Values must match conservative patterns both parse identically.
_VALUE = rb"<%s\s[^>]*?\bvalue\s*=\s*[\"'](?!%s\")"
_UNSAFE = re.compile(
    b"|".join(
        [
            rb"</(?:string|date|int|float|boolean|id|list|container)\s*>",
            rb"<(?:list|container)[\s/>]",
            _VALUE % (b"int", rb"[+-]?\d{1,18}"),
            _VALUE % (b"float", rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,3})?"),
            _VALUE % (b"boolean", rb"(?:true|false)"),
            _VALUE
            % (
                b"date",
                rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})?",
            ),
        ]
    )
)
_NON_STRING_TAGS = rb"(?:int|float|date|boolean)"
_RAW_WHITESPACE = re.compile(r"[\t\n\r]")


class XesError(ValueError):
    """The file cannot be read safely as XES (e.g. it declares a DTD)."""


class _Fallback(Exception):
    """r4pm would not give iterparse's frame for this file."""


def read_xes(path: str | Path) -> pd.DataFrame:
    """``pm4py.read_xes(path, variant="iterparse")``, fast when r4pm is installed.

    ``.gz`` in the file name means gzip, as in pm4py. Raises :class:`XesError` for a DTD.
    """
    path = Path(path)
    bare_doctype = refuse_dtd(path)
    if not bare_doctype and importlib.util.find_spec("r4pm") is not None:
        try:
            return _read_r4pm(path)
        except _Fallback:
            pass
    return read_xes_iterparse(path)


def read_xes_iterparse(path: str | Path) -> pd.DataFrame:
    """pm4py's default importer (lxml iterparse), forced even when r4pm is installed."""
    import pm4py

    refuse_dtd(Path(path))
    return pm4py.read_xes(str(path), variant="iterparse", show_progress_bar=False)


# --- safety ---------------------------------------------------------------------------------

_BARE_DOCTYPE = re.compile(rb"<!DOCTYPE\s+[A-Za-z_][\w.:-]*\s*>")


@contextmanager
def _open(path: Path) -> Iterator[IO[bytes]]:
    with gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb") as fh:
        yield fh


def refuse_dtd(path: Path) -> bool:
    """Raise :class:`XesError` if the prolog (before the root element) declares a DTD.

    A DTD can only appear before the first element, so reading up to it is enough; comments
    and processing instructions are skipped so "<!DOCTYPE" inside them does not count. A bare
    ``<!DOCTYPE log>`` (no internal subset, no external reference) declares nothing and is
    accepted: True is returned so the caller reads it with pm4py's own parser.
    """
    with _open(path) as fh:
        head = fh.read(_PROLOG_LIMIT)
    pos = 0
    bare = False
    while True:
        lt = head.find(b"<", pos)
        if lt < 0 or lt + 1 >= len(head):
            if len(head) >= _PROLOG_LIMIT:
                raise XesError("The XES prolog (before the <log> element) is longer than 1 MiB.")
            return bare  # no element at all: the parsers report the file as malformed
        nxt = head[lt + 1 : lt + 2]
        if head.startswith(b"<!--", lt):
            end = head.find(b"-->", lt + 4)
            pos = end + 3 if end >= 0 else len(head)
        elif nxt == b"?":
            end = head.find(b"?>", lt + 2)
            pos = end + 2 if end >= 0 else len(head)
        elif nxt == b"!" and (doctype := _BARE_DOCTYPE.match(head, lt)):
            pos, bare = doctype.end(), True
        elif nxt == b"!":
            raise XesError(
                "XES files with a DTD (<!DOCTYPE ...>) are not accepted: entity declarations "
                "could expand without bound."
            )
        else:
            return bare  # the root element: the prolog is over


# --- r4pm path --------------------------------------------------------------------------------


def _read_r4pm(path: Path) -> pd.DataFrame:
    from r4pm.df import import_xes

    try:
        raw, _meta = import_xes(str(path))
    except Exception as exc:  # r4pm's own parse errors: let iterparse report (or succeed)
        raise _Fallback from exc
    if raw.height == 0 or raw.width == 0:
        raise _Fallback
    df = raw.to_pandas()
    _check_file(path, [c for c in df.columns if _is_string(df[c])])
    for col in df.columns:
        series = df[col]
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            if series.dt.tz is None:
                series = series.dt.tz_localize("UTC")
            df[col] = series.dt.tz_convert("UTC").astype(TIMESTAMP_DTYPE)
        elif series.dtype == object:
            df[col] = series.where(series.notna(), np.nan)
        elif _is_string(series) and series.str.contains(_RAW_WHITESPACE, na=False).any():
            raise _Fallback
    df = df[column_order(path, list(df.columns))]
    df.attrs = copy(ITERPARSE_ATTRS)
    return df


def _is_string(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) and series.dtype != object


def _check_file(path: Path, string_columns: list[str]) -> None:
    """Full-file byte scans for what r4pm reads differently (see module docstring)."""
    with _open(path) as fh:
        data = fh.read()
    first_trace = data.find(b"<trace")
    if first_trace >= 0 and _UNSAFE.search(data, first_trace):
        raise _Fallback
    keys = {c.removeprefix(_CASE_PREFIX) for c in string_columns}
    if keys:
        alternatives = b"|".join(re.escape(_xml_escape(k)) for k in sorted(keys))
        typed = re.compile(
            rb"<" + _NON_STRING_TAGS + rb"\s+key\s*=\s*[\"'](?:" + alternatives + rb")[\"']"
        )
        if typed.search(data):
            raise _Fallback
        if any(_xml_escape(k) != k.encode() for k in keys):
            raise _Fallback  # escaped keys can be written several ways: don't guess


def _xml_escape(key: str) -> bytes:
    escaped = key.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    return escaped.replace("'", "&apos;").replace(">", "&gt;").encode()


# --- iterparse's column order -----------------------------------------------------------------

_VALUE_TAGS = ("string", "date", "int", "float", "boolean", "id", "list")


def _local(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _key_present(tag: str, value: str | None) -> bool:
    """Mirror iterparse: a date/int/float attribute that fails to parse is skipped."""
    if tag not in ("date", "int", "float"):
        return True
    if value is None:
        return False
    try:
        if tag == "int":
            int(value)
        elif tag == "float":
            float(value)
        else:
            from pm4py.util.dt_parsing import parser as dt_parser

            dt_parser.get().apply(value)
    except (TypeError, ValueError):
        return False
    return True


def column_order(path: Path, columns: list[str]) -> list[str]:
    """``columns`` in the order pandas gives iterparse's list of event dicts.

    Raises :class:`_Fallback` if the keys found are not exactly ``columns``.
    """
    from lxml import etree

    wanted = set(columns)
    seen: dict[str, None] = {}
    with _open(path) as fh:
        context = etree.iterparse(
            fh,
            events=("start", "end"),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
        )
        trace_keys: dict[str, None] | None = None
        events: list[list[str]] = []
        event_keys: list[str] | None = None
        depth_owner: list[str] = []  # tag of each open element
        for action, elem in context:
            tag = _local(elem.tag)
            if action == "start":
                parent = depth_owner[-1] if depth_owner else ""
                depth_owner.append(tag)
                if tag == "trace":
                    trace_keys, events = {}, []
                elif tag == "event" and trace_keys is not None:
                    event_keys = []
                elif tag in _VALUE_TAGS and parent in ("event", "trace"):
                    key = elem.get("key")
                    if _key_present(tag, elem.get("value")):
                        if parent == "event" and event_keys is not None:
                            event_keys.append(key)
                        elif parent == "trace" and trace_keys is not None:
                            trace_keys.setdefault(key, None)
                continue
            depth_owner.pop()
            if tag == "event" and event_keys is not None:
                events.append(event_keys)
                event_keys = None
            elif tag == "trace" and trace_keys is not None:
                case_keys = [_CASE_PREFIX + k for k in trace_keys]
                for keys in events:
                    for k in (*dict.fromkeys(keys), *case_keys):
                        seen.setdefault(k, None)
                trace_keys = None
                if len(seen) >= len(wanted) and seen.keys() >= wanted:
                    break
            if tag in ("event", "trace"):
                elem.clear()
                while elem.getprevious() is not None:
                    del elem.getparent()[0]
    order = list(seen)
    if set(order) != wanted:
        raise _Fallback
    return order
