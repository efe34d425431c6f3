"""Event-log ingestion: the single place where uploaded logs are read, validated and stored.

Every uploaded log (CSV, XES, XES.gz, Parquet) is turned into one canonical Parquet file whose
key columns carry the XES names and the dtypes ``pm4py.read_xes`` produces, so that every job can
load it back with :func:`load_events` and hand it to pm4py without knowing where it came from.
Rows are stored in the original file order; :func:`ordered` gives pm4py's event order.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import dataclasses
import gzip
import json
import logging
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

log = logging.getLogger("pmjobs.eventlog")

_META_KEY = b"pmjobs"
_HEAD_BYTES = 8192
_CHUNK = 1024 * 1024  # uploads are always read in chunks of this size, never whole
_CSV_SEPARATORS = (",", ";", "\t", "|")
# A value that is clearly a date-time: used to decide which extra CSV columns to parse as dates.
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


class EventLogError(ValueError):
    """Input that is not a usable event log; str(e) is a sentence a person understands."""


class InputTooLarge(EventLogError):
    """Input refused because it expands beyond a size limit (the API answers 413)."""


@dataclass(frozen=True)
class IngestLimits:
    """Bounds on what an upload may expand into, so that a small hostile file (gzip bomb, one
    gigabyte-long CSV line, thousands of columns) is refused before it costs memory.

    The API passes the ``PMJOBS_MAX_*`` settings; the defaults here are the same.
    """

    max_decompressed_bytes: int = 4 * 1024 * 1024 * 1024
    max_csv_line_bytes: int = 4 * 1024 * 1024
    max_columns: int = 5000


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


def ingest(
    source: Path,
    filename: str,
    mapping: ColumnMapping,
    dest: Path,
    limits: IngestLimits | None = None,
) -> DatasetStats:
    """Read, validate and normalise an uploaded log and store it as canonical Parquet at `dest`.

    `source` holds the uploaded bytes; `filename` is the client's name, used only for format
    detection and messages. Any problem with the input raises EventLogError (InputTooLarge past
    a limit) and leaves `dest` untouched: the file is written to a temporary name and renamed
    into place, and scratch copies (a decompressed XES.gz, a transcoded CSV) are removed.
    """
    source = Path(source)
    dest = Path(dest)
    limits = limits or IngestLimits()
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
    notes: list[dict[str, Any]] = []
    with _Scratch(dest.parent) as scratch:
        try:
            if fmt in ("xes", "xes.gz"):
                plain = _guard_xes(source, fmt, filename, limits, scratch)
                df = _read_xes(plain, "xes" if plain != source else fmt, filename)
                mapping = ColumnMapping()  # XES already uses the XES names
            elif fmt == "csv":
                df = _read_csv(source, head, filename, mapping, limits, scratch, notes)
            else:
                df = _read_parquet(source, filename, limits)
            _check_column_count(len(df.columns), filename, limits)
            df = _normalise(df, mapping, filename, fmt)
        except EventLogError:
            raise
        except MemoryError as exc:
            raise InputTooLarge(
                f"'{filename}' is too large to be processed in this server's memory."
            ) from exc
        except Exception as exc:  # an input no check foresaw: still the uploader's 422, not a 500
            log.warning("unexpected error reading %r", filename, exc_info=True)
            raise EventLogError(
                f"'{filename}' could not be read as an event log: "
                f"{type(exc).__name__}: {_reason(exc)}."
            ) from exc
    stats = _stats(df, fmt)
    if notes:
        stats = dataclasses.replace(stats, warnings=notes + stats.warnings)
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
# Guards: cheap streaming checks that run before any parser sees an upload.


class _Scratch:
    """A hidden folder next to `dest` for temporary copies, made on first use, always removed."""

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self._dir: Path | None = None

    def __enter__(self) -> _Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    def path(self, name: str) -> Path:
        if self._dir is None:
            self.parent.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=".ingest-", dir=self.parent))
        return self._dir / name


def _size(n: int) -> str:
    """Bytes for a message: '4 GiB', '1.5 MiB', '800 bytes'."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def _check_column_count(
    count: int, filename: str, limits: IngestLimits, *, at_least: bool = False
) -> None:
    if count > limits.max_columns:
        many = f"more than {count}" if at_least else str(count)
        raise EventLogError(
            f"'{filename}' has {many} columns; this server accepts at most "
            f"{limits.max_columns}. Keep the columns the analysis needs and upload it again."
        )


def _guard_xes(
    source: Path, fmt: str, filename: str, limits: IngestLimits, scratch: _Scratch
) -> Path:
    """Refuse XML and gzip bombs before an XML parser sees the file; return the plain XES.

    Parser-independent on purpose: pm4py's lxml importer, r4pm or any faster reader only ever
    get a file without entity declarations, DTDs or external references, and an XES.gz is
    decompressed here (streamed, counted against ``max_decompressed_bytes``) into a scratch
    file, so no reader decompresses anything itself.
    """
    guard = _XmlGuard(filename)
    if fmt != "xes.gz":
        with source.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                guard.feed(chunk)
        guard.close()
        return source
    plain = scratch.path("decompressed.xes")
    with plain.open("wb") as out:
        for chunk in _gunzip(source, filename, limits.max_decompressed_bytes):
            guard.feed(chunk)
            out.write(chunk)
    guard.close()
    return plain


def _gunzip(source: Path, filename: str, limit: int) -> Iterator[bytes]:
    """Decompress in chunks, refusing the file as soon as it passes `limit` bytes."""
    total = 0
    try:
        with gzip.open(source, "rb") as gz:
            while chunk := gz.read(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise InputTooLarge(
                        f"'{filename}' expands to more than {_size(limit)} when decompressed, "
                        "the most this server accepts (a file that expands this much is "
                        "refused as a possible 'gzip bomb'). Upload a smaller log."
                    )
                yield chunk
    except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise EventLogError(
            f"'{filename}' could not be read as XES.gz: the compressed data is truncated or "
            f"corrupt ({_reason(exc)})."
        ) from exc


# Encodings an XES may declare: all keep '<', '!' and letters as in ASCII (or are UTF-16,
# which is decoded here); anything else (UTF-7, UTF-32, EBCDIC...) could hide a declaration.
_XML_ENCODINGS = re.compile(
    r"(utf-?8|(us-)?ascii|iso[-_]?8859-\d{1,2}|latin-?1|(windows|cp)-?125\d|utf-?16(-?[lb]e)?)",
    re.IGNORECASE,
)
_XML_DECLARED_ENCODING = re.compile(
    r"""^\ufeff?\s*<\?xml[^>]*?\sencoding\s*=\s*["']([^"']{0,40})["']"""
)
_BARE_DOCTYPE = re.compile(rb"<!doctype\s+[\w:.\-]+\s*>", re.IGNORECASE)
_GUARD_TAIL = 256  # text kept between chunks so a marker split across two chunks is still seen
_GUARD_HEAD = 1024  # bytes read before the encoding (BOM, XML declaration) is decided


class _XmlGuard:
    """Streaming scan of an XES's text (lower-cased) for entity declarations and DTDs.

    XES never needs either; refusing them outright defeats billion laughs, quadratic blow-up
    and XXE whatever parser runs afterwards. A bare ``<!DOCTYPE log>`` is harmless and allowed.
    """

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._decoder: codecs.IncrementalDecoder | None = None
        self._head: bytes | None = b""  # the first bytes, until the encoding is known
        self._window = b""

    def feed(self, chunk: bytes) -> None:
        if self._head is not None:  # decide the encoding on a real prefix, however the
            self._head += chunk  # data was split (a gzip member can hold a single byte)
            if len(self._head) < _GUARD_HEAD:
                return
            chunk, self._head = self._head, None
            self._start(chunk)
        self._scan(self._window + self._ascii(chunk), final=False)

    def close(self) -> None:
        if self._head is not None:
            chunk, self._head = self._head, None
            self._start(chunk)
            self._window += self._ascii(chunk)
        tail = self._ascii(b"", final=True) if self._decoder is not None else b""
        self._scan(self._window + tail, final=True)

    def _ascii(self, chunk: bytes, final: bool = False) -> bytes:
        """The chunk in an ASCII-compatible form: as is, or UTF-16 decoded to UTF-8."""
        if self._decoder is None:
            return chunk
        return self._decoder.decode(chunk, final).encode("utf-8", "replace")

    def _start(self, head: bytes) -> None:
        if head[:4] in (
            b"\xff\xfe\x00\x00",
            b"\x00\x00\xfe\xff",
            b"<\x00\x00\x00",
            b"\x00\x00\x00<",
        ):
            self._refuse_encoding("UTF-32")
        if head[:4] == b"\x4c\x6f\xa7\x94":  # '<?xm' in EBCDIC
            self._refuse_encoding("EBCDIC")
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            codec = "utf-16"
        elif head.startswith(b"<\x00"):
            codec = "utf-16-le"
        elif head.startswith(b"\x00<"):
            codec = "utf-16-be"
        else:
            codec = None
        if codec:
            self._decoder = codecs.getincrementaldecoder(codec)(errors="replace")
            text = codecs.getincrementaldecoder(codec)(errors="replace").decode(head[:_GUARD_HEAD])
        else:
            text = head[:_GUARD_HEAD].decode("latin-1")
        declared = _XML_DECLARED_ENCODING.match(text)
        if declared and not _XML_ENCODINGS.fullmatch(declared.group(1).strip()):
            self._refuse_encoding(declared.group(1).strip())

    def _scan(self, data: bytes, final: bool) -> None:
        """Check every ``<!`` (rare in XES: comments, CDATA) for ENTITY or a non-bare DOCTYPE;
        one that is too close to the end to judge waits in the window for the next chunk."""
        at = data.find(b"<!")
        while at >= 0:
            if not final and len(data) - at < _GUARD_TAIL:
                break
            word = data[at + 2 : at + 9].lower()
            if word == b"doctype" and b"<!entity" in data[at : at + _CHUNK].lower():
                word = b"entity"  # name the real danger of this DTD
            if word.startswith(b"entity"):
                raise EventLogError(
                    f"'{self.filename}' was refused: it declares XML entities (<!ENTITY ...>). "
                    "XES logs never need them, and they can make a small file expand to "
                    "gigabytes in the parser (an 'XML bomb') or read files on the server (XXE). "
                    "Remove the DOCTYPE and ENTITY declarations and upload it again."
                )
            if word == b"doctype" and not _BARE_DOCTYPE.match(data, at):
                raise EventLogError(
                    f"'{self.filename}' was refused: it has a DOCTYPE with a DTD or an external "
                    "reference (SYSTEM/PUBLIC). XES logs do not use DTDs and this server never "
                    "fetches external documents. Remove the <!DOCTYPE ...> declaration and "
                    "upload it again."
                )
            at = data.find(b"<!", at + 2)
        self._window = data[-_GUARD_TAIL:] if at < 0 else data[at:]

    def _refuse_encoding(self, name: str) -> None:
        raise EventLogError(
            f"'{self.filename}' was refused: its XML encoding '{name}' is not accepted. Save the "
            "XES as UTF-8 (UTF-16, ISO-8859 and Windows-125x are accepted too) and upload it "
            "again."
        )


_ENCODING_NAMES = {
    "utf-8-sig": "UTF-8",
    "cp1252": "Windows-1252 (Western European)",
    "cp1254": "Windows-1254 (Turkish)",
}
_UTF8_SEQUENCE = re.compile(
    rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}"
)
_HIGH_BYTES = bytes(range(0x80, 0x100))
# Ğ İ Ş ğ ı ş in Windows-1254; in Windows-1252 the same bytes are the rare Ð Ý Þ ð ý þ.
_TURKISH_LETTERS = tuple(bytes([b]) for b in b"\xd0\xdd\xde\xf0\xfd\xfe")


@dataclass
class _CsvScan:
    """What one streaming pass over a CSV learnt (see :func:`_scan_csv`)."""

    header: bytes = b""
    utf8: bool = True
    bad_line: int = 0
    bad_byte: int = 0
    utf8_bytes: int = 0  # non-ASCII bytes that form valid UTF-8 sequences
    stray_bytes: int = 0  # non-ASCII bytes that do not
    turkish: int = 0


def _utf16_as_utf8(
    source: Path, head: bytes, filename: str, scratch: _Scratch
) -> tuple[Path, bytes]:
    """A CSV with a UTF-16 byte-order mark is transcoded (streamed) to a UTF-8 scratch copy."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        raise EventLogError(
            f"'{filename}' is UTF-32 text, which is not accepted; save it as UTF-8 "
            "(or UTF-16) and upload it again."
        )
    if not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return source, head
    plain = scratch.path("utf8.csv")
    decoder = codecs.getincrementaldecoder("utf-16")()
    try:
        with source.open("rb") as fh, plain.open("wb") as out:
            while chunk := fh.read(_CHUNK):
                out.write(decoder.decode(chunk).encode("utf-8"))
            out.write(decoder.decode(b"", final=True).encode("utf-8"))
    except UnicodeError as exc:
        raise EventLogError(
            f"'{filename}' starts with a UTF-16 byte-order mark but is not valid UTF-16 text "
            f"({_reason(exc)}); save it as UTF-8 and upload it again."
        ) from exc
    with plain.open("rb") as fh:
        return plain, fh.read(_HEAD_BYTES)


def _scan_csv(source: Path, filename: str, sep: str, limits: IngestLimits) -> _CsvScan:
    """One pass in chunks: no NUL bytes, no line over ``max_csv_line_bytes``, the header line,
    and whether the text is UTF-8 (or else how its non-ASCII bytes look)."""
    scan = _CsvScan()
    decoder = codecs.getincrementaldecoder("utf-8")()
    line, length, in_header = 1, 0, True  # line number, its length so far, still on line 1
    with source.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            if b"\x00" in chunk:
                at = line + _line_breaks(chunk[: chunk.index(b"\x00")])
                raise EventLogError(
                    f"'{filename}' could not be read as CSV: it contains binary data (a NUL "
                    f"byte on line {at}), not text. If it is UTF-16 text, save it with a "
                    "byte-order mark or as UTF-8."
                )
            parts = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            if in_header:
                scan.header += parts[0][: limits.max_csv_line_bytes + 1 - len(scan.header)]
                in_header = len(parts) == 1
            _scan_text(scan, decoder, chunk, line)
            lengths = [length + len(parts[0]), *map(len, parts[1:])]
            if max(lengths) > limits.max_csv_line_bytes:
                too_long = line + next(
                    i for i, n in enumerate(lengths) if n > limits.max_csv_line_bytes
                )
                _refuse_long_line(scan, too_long, filename, sep, limits)
            line += len(parts) - 1
            length = lengths[-1]
    if scan.utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            scan.utf8, scan.bad_line, scan.bad_byte = False, line, 0
    return scan


def _line_breaks(data: bytes) -> int:
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


def _scan_text(scan: _CsvScan, decoder: codecs.IncrementalDecoder, chunk: bytes, line: int) -> None:
    if chunk.isascii():
        return
    high = len(chunk) - len(chunk.translate(None, _HIGH_BYTES))
    if scan.utf8:
        try:
            decoder.decode(chunk)
            scan.utf8_bytes += high
            return
        except UnicodeDecodeError as exc:
            at = min(max(exc.start, 0), len(chunk) - 1)
            scan.utf8, scan.bad_byte = False, chunk[at]
            scan.bad_line = line + _line_breaks(chunk[:at])
    valid = sum(len(m) for m in _UTF8_SEQUENCE.findall(chunk))
    scan.utf8_bytes += valid
    scan.stray_bytes += high - valid
    scan.turkish += sum(chunk.count(b) for b in _TURKISH_LETTERS)


def _refuse_long_line(
    scan: _CsvScan, line: int, filename: str, sep: str, limits: IngestLimits
) -> None:
    if line == 1:  # a header that long is (almost always) one with far too many columns
        seen = scan.header.count(sep.encode())  # in the part of the header read so far
        _check_column_count(seen, filename, limits, at_least=True)
    raise EventLogError(
        f"'{filename}' could not be read as CSV: line {line} is longer than "
        f"{_size(limits.max_csv_line_bytes)}, the most this server accepts. An event log has "
        "one event per line; check the separator and the line breaks."
    )


def _check_header(header: bytes, sep: str, filename: str, limits: IngestLimits) -> None:
    text = header.decode("latin-1")  # separators and quotes are ASCII in every accepted encoding
    count = text.count(sep) + 1  # an upper bound, exact unless names are quoted
    if count > limits.max_columns and '"' in text:
        with contextlib.suppress(csv.Error):  # e.g. a name over csv's own field size limit
            count = len(next(csv.reader([text], delimiter=sep), []))
    _check_column_count(count, filename, limits)


def _choose_encoding(scan: _CsvScan, filename: str, notes: list[dict[str, Any]]) -> str:
    """UTF-8 when it is; a file that is mostly UTF-8 with stray bytes is broken (refused, since
    any guess would garble it); otherwise a Windows code page, Turkish when its letters occur."""
    if scan.utf8:
        return "utf-8-sig"
    if scan.utf8_bytes > scan.stray_bytes:
        raise EventLogError(
            f"'{filename}' is not valid UTF-8: line {scan.bad_line} has the byte "
            f"0x{scan.bad_byte:02X}, which is not UTF-8, while the rest of the file is UTF-8 "
            "text. Save the file as UTF-8 and upload it again."
        )
    encoding = "cp1254" if scan.turkish else "cp1252"
    notes.append(
        {
            "type": "encodingAssumed",
            "message": f"'{filename}' is not UTF-8; it was read as {_ENCODING_NAMES[encoding]}. "
            "Save it as UTF-8 to be sure every character is read as meant.",
            "count": scan.stray_bytes,
        }
    )
    return encoding


# --------------------------------------------------------------------------------------------
# Readers: each returns the raw frame or raises EventLogError.


def _read_xes(source: Path, fmt: str, filename: str) -> pd.DataFrame:
    """The frame pm4py's default (iterparse) importer gives: read by r4pm where that is provably
    the same frame, else by pm4py itself (always with ``PMJOBS_MINING_ENGINE=pm4py``)."""
    from flows.steps import mining_engine
    from flows.steps.fastpm import xes  # pm4py is heavy: only when a worker actually reads XES

    plain = mining_engine.current().name == mining_engine.PLAIN
    read = xes.read_xes_iterparse if plain else xes.read_xes
    kind = "XES.gz" if fmt == "xes.gz" else "XES"
    try:
        with _xes_path(source, fmt) as path:
            df = read(path)
    except xes.XesError as exc:
        raise EventLogError(f"'{filename}' could not be read as {kind}: {exc}") from exc
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


def _read_csv(
    source: Path,
    head: bytes,
    filename: str,
    mapping: ColumnMapping,
    limits: IngestLimits,
    scratch: _Scratch,
    notes: list[dict[str, Any]],
) -> pd.DataFrame:
    """Read a CSV with pandas; key columns as text so ids like "007" survive unchanged.

    A streaming pre-scan first refuses what would make pandas buffer unbounded data (a
    gigabyte-long line, millions of columns) or silently garble text (broken UTF-8), and picks
    the encoding; pandas only ever sees a file that passed it.
    """
    source, head = _utf16_as_utf8(source, head, filename, scratch)
    sep = _sniff_separator(head)
    scan = _scan_csv(source, filename, sep, limits)
    _check_header(scan.header, sep, filename, limits)
    encoding = _choose_encoding(scan, filename, notes)
    text_cols = [mapping.case, mapping.activity, mapping.timestamp]
    if mapping.resource:
        text_cols.append(mapping.resource)
    dtype = dict.fromkeys(text_cols, "str")
    try:
        return pd.read_csv(source, sep=sep, dtype=dtype, encoding=encoding, low_memory=False)
    except UnicodeDecodeError as exc:
        raise EventLogError(
            f"'{filename}' could not be read as CSV: it is neither UTF-8 nor "
            f"{_ENCODING_NAMES[encoding]} text. Save it as UTF-8 and upload it again."
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise EventLogError(f"'{filename}' contains no data (no header row).") from exc
    except (pd.errors.ParserError, ValueError, OverflowError) as exc:
        raise EventLogError(f"'{filename}' is not a valid CSV file: {_reason(exc)}.") from exc


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


def _read_parquet(source: Path, filename: str, limits: IngestLimits) -> pd.DataFrame:
    """Check the schema and sizes in the footer first: nested columns, thousands of columns or a
    few kilobytes that decode to gigabytes are refused before any row is read."""
    try:
        meta = pq.ParquetFile(source).metadata
        schema = meta.schema.to_arrow_schema()
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... on corrupt files
        raise EventLogError(f"'{filename}' could not be read as Parquet: {_reason(exc)}.") from exc
    _check_column_count(len(schema), filename, limits)
    names = [f.name for f in schema]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise EventLogError(
            f"'{filename}' has several columns named {_list_columns(pd.Index(duplicated))}; "
            "every column needs its own name."
        )
    nested = [f"'{f.name}' ({f.type})" for f in schema if _is_nested(f.type)][:10]
    if nested:
        raise EventLogError(
            f"'{filename}' has nested columns (lists, structs or maps): {', '.join(nested)}. "
            "An event log needs one plain value (text, number, date) per column; flatten these "
            "columns or drop them and upload again."
        )
    if meta.num_rows == 0:
        raise EventLogError(f"'{filename}' contains no events (the Parquet file has no rows).")
    expanded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if expanded > limits.max_decompressed_bytes:
        raise InputTooLarge(
            f"'{filename}' expands to {_size(expanded)} when decompressed, more than the "
            f"{_size(limits.max_decompressed_bytes)} this server accepts."
        )
    try:
        return pd.read_parquet(source, engine="pyarrow")
    except Exception as exc:
        raise EventLogError(f"'{filename}' could not be read as Parquet: {_reason(exc)}.") from exc


def _is_nested(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _is_nested(kind.value_type)
    return pa.types.is_nested(kind)


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
