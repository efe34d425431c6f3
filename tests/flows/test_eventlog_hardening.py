"""Hostile and odd uploads at the ingestion layer: XML and gzip bombs, XXE, gigantic CSV lines
and headers, foreign encodings, weird Parquet schemas. Every case ends in EventLogError with a
message a person understands (or is read correctly), never another exception, never a
leftover file, and without loading the hostile part into memory."""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.steps import eventlog
from flows.steps.eventlog import (
    XES_ACTIVITY,
    XES_RESOURCE,
    ColumnMapping,
    DatasetStats,
    EventLogError,
    IngestLimits,
    InputTooLarge,
    ingest,
    load_events,
)

DATA = Path(__file__).resolve().parents[1] / "data"
ROAD = DATA / "roadtraffic100traces.xes"
SEPSIS = DATA / "Sepsis Cases - Event Log.xes.gz"
MiB = 1024 * 1024

XES_BODY = (
    '<log xes.version="1.0"><trace><string key="concept:name" value="c1"/>'
    '<event><string key="concept:name" value="&lol9;"/>'
    '<date key="time:timestamp" value="2020-01-01T10:00:00.000+00:00"/></event>'
    "</trace></log>\n"
)
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE log [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n"
    + XES_BODY
)
QUADRATIC = (
    '<?xml version="1.0"?>\n<!DOCTYPE log [<!ENTITY a "'
    + "a" * 100_000
    + '">]>\n'
    + XES_BODY.replace("&lol9;", "&a;" * 20_000)
)
XXE_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE log [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    + XES_BODY.replace("&lol9;", "&xxe;")
)
XXE_PARAMETER = (
    '<?xml version="1.0"?>\n<!DOCTYPE log [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>\n'
    + XES_BODY.replace("&lol9;", "A")
)
EXTERNAL_DTD = '<?xml version="1.0"?>\n<!DOCTYPE log SYSTEM "file:///etc/passwd">\n' + (
    XES_BODY.replace("&lol9;", "A")
)
PUBLIC_DTD = (
    '<?xml version="1.0"?>\n<!DOCTYPE log PUBLIC "-//X//Y" "http://127.0.0.1:9/x.dtd">\n'
    + XES_BODY.replace("&lol9;", "A")
)
LOWER_CASE = BILLION_LAUGHS.replace("<!DOCTYPE", "<!doctype").replace("<!ENTITY", "<!entity")


def run(tmp_path: Path, name: str, content: bytes, **kw: object) -> DatasetStats:
    src = tmp_path / "upload" / "original"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(content)
    return ingest(
        src, name, kw.pop("mapping", ColumnMapping()), tmp_path / "out" / "e.parquet", **kw
    )  # type: ignore[arg-type]


def refused(
    tmp_path: Path, name: str, content: bytes, *mentions: str, error: type = EventLogError, **kw
) -> str:
    """Ingest must fail with `error` naming the file and `mentions`, leaving nothing behind."""
    with pytest.raises(error) as err:
        run(tmp_path, name, content, **kw)
    message = str(err.value)
    assert name in message, message
    for word in mentions:
        assert word.lower() in message.lower(), (word, message)
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == [], list(out.iterdir())
    return message


def peak_memory(action: Callable[[], object]) -> int:
    """Peak Python-heap bytes allocated while `action` runs (its exception is swallowed)."""
    tracemalloc.start()
    try:
        action()
    except EventLogError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# -- XML: entity expansion and external references, refused before any parser --------------------


@pytest.mark.parametrize(
    ("document", "mentions"),
    [
        (BILLION_LAUGHS, ["ENTITY", "XML bomb"]),
        (QUADRATIC, ["ENTITY"]),
        (XXE_ENTITY, ["ENTITY", "XXE"]),
        (XXE_PARAMETER, ["ENTITY"]),
        (EXTERNAL_DTD, ["DOCTYPE", "external"]),
        (PUBLIC_DTD, ["DOCTYPE", "external"]),
        (LOWER_CASE, ["ENTITY"]),
    ],
    ids=["billion-laughs", "quadratic", "xxe", "xxe-parameter", "dtd-system", "dtd-public", "lc"],
)
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le"])
def test_xml_bombs_and_xxe_are_refused(
    tmp_path: Path, document: str, mentions: list[str], encoding: str
) -> None:
    refused(tmp_path, "bomb.xes", document.encode(encoding), *mentions)


def test_xml_bomb_inside_gzip_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, "bomb.xes.gz", gzip.compress(BILLION_LAUGHS.encode()), "ENTITY")


def test_unnamed_upload_is_sniffed_and_still_guarded(tmp_path: Path) -> None:
    refused(tmp_path, "upload", BILLION_LAUGHS.encode(), "ENTITY")


@pytest.mark.parametrize("marker", ["<!ENTITY", "<!DOCTYPE log SYSTEM"])
@pytest.mark.parametrize("shift", [1, 4, 8, 100])
def test_markers_split_across_read_chunks_are_found(
    tmp_path: Path, marker: str, shift: int
) -> None:
    """The guard reads in chunks; a declaration straddling two chunks must still be seen."""
    head = '<?xml version="1.0"?>\n<!-- '
    padding = "x" * (eventlog._CHUNK - len(head) - len(" -->\n") - shift)
    tail = ' "file:///etc/passwd">' if "SYSTEM" in marker else ' a "b">'
    document = head + padding + " -->\n" + marker + tail + "\n" + XES_BODY
    assert document.encode().index(marker.encode()) == eventlog._CHUNK - shift
    refused(tmp_path, "split.xes", document.encode(), "refused")


@pytest.mark.parametrize("declared", ["UTF-7", "UTF-32", "IBM037", "x-unknown"])
def test_encodings_that_could_hide_a_declaration_are_refused(tmp_path: Path, declared: str) -> None:
    # In UTF-7, "+ADw-!ENTITY" is "<!ENTITY": a byte scan cannot see it, so such files are refused.
    doc = f'<?xml version="1.0" encoding="{declared}"?>\n<log xes.version="1.0">+ADw-!ENTITY</log>'
    refused(tmp_path, "utf7.xes", doc.encode("ascii"), "encoding", declared)


@pytest.mark.parametrize(
    ("document", "mentions"),
    [
        (
            '<?xml version="1.0" encoding="UTF-7"?>\n<log xes.version="1.0">+ADw-!ENTITY</log>',
            ["encoding", "UTF-7"],
        ),
        (BILLION_LAUGHS, ["ENTITY"]),
        (EXTERNAL_DTD, ["DOCTYPE"]),
    ],
    ids=["utf7", "entities", "dtd"],
)
def test_guard_sees_through_any_split_of_the_stream(document: str, mentions: list[str]) -> None:
    """However the (decompressed) bytes arrive, even one at a time, the guard decides on the
    real prefix and sees markers across pieces."""
    guard = eventlog._XmlGuard("tiny.xes")
    with pytest.raises(EventLogError) as err:
        for byte in document.encode("ascii"):
            guard.feed(bytes([byte]))
        guard.close()
    for word in mentions:
        assert word in str(err.value)


@pytest.mark.parametrize("encoding", ["utf-32", "utf-32-le"])
def test_utf32_xes_is_refused(tmp_path: Path, encoding: str) -> None:
    refused(tmp_path, "wide.xes", BILLION_LAUGHS.encode(encoding), "UTF-32")


def test_a_bare_doctype_is_harmless_and_accepted(tmp_path: Path) -> None:
    original = ROAD.read_bytes()
    with_doctype = original.replace(b"?>", b"?>\n<!DOCTYPE log>", 1)
    assert with_doctype != original
    plain = run(tmp_path / "a", ROAD.name, original)
    doctype = run(tmp_path / "b", ROAD.name, with_doctype)
    assert (doctype.events, doctype.cases, doctype.activities) == (
        plain.events,
        plain.cases,
        plain.activities,
    )


# -- gzip bombs --------------------------------------------------------------------------------


def gzip_of_zeros(size: int) -> bytes:
    """A gzip member of `size` zero bytes, built in chunks (never `size` bytes in memory)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = io.BytesIO()
    block = bytes(MiB)
    for _ in range(size // MiB):
        out.write(packer.compress(block))
    out.write(packer.flush())
    return out.getvalue()


def test_gzip_bomb_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    bomb = gzip_of_zeros(512 * MiB)
    assert len(bomb) < MiB  # a small upload...
    limits = IngestLimits(max_decompressed_bytes=16 * MiB)  # ...that expands 512 MiB
    message = refused(
        tmp_path, "bomb.xes.gz", bomb, "decompressed", "16 MiB", error=InputTooLarge, limits=limits
    )
    assert "gzip bomb" in message
    peak = peak_memory(lambda: run(tmp_path / "again", "bomb.xes.gz", bomb, limits=limits))
    assert peak < 16 * MiB, peak  # streamed: far less than even the limit


def test_real_xes_gz_over_the_decompressed_limit(tmp_path: Path) -> None:
    limits = IngestLimits(max_decompressed_bytes=MiB)  # Sepsis expands to ~5 MiB
    refused(tmp_path, SEPSIS.name, SEPSIS.read_bytes(), "1 MiB", error=InputTooLarge, limits=limits)


def test_real_xes_gz_under_the_limit_is_read(tmp_path: Path) -> None:
    stats = run(tmp_path, SEPSIS.name, SEPSIS.read_bytes(), limits=IngestLimits())
    assert (stats.format, stats.events, stats.cases) == ("xes.gz", 15214, 1050)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["e.parquet"]


def test_multi_member_gzip_is_counted_as_a_whole(tmp_path: Path) -> None:
    bomb = gzip_of_zeros(6 * MiB) * 3  # three members, 18 MiB in all
    refused(
        tmp_path,
        "members.xes.gz",
        bomb,
        "decompressed",
        error=InputTooLarge,
        limits=IngestLimits(max_decompressed_bytes=16 * MiB),
    )


# -- CSV: long lines, many columns --------------------------------------------------------------


def write_long_line_csv(path: Path, line_bytes: int) -> None:
    """A header, then one line of `line_bytes` bytes, written in 1 MiB pieces."""
    with path.open("wb") as fh:
        fh.write(b"case:concept:name,concept:name,time:timestamp\n1,")
        left = line_bytes
        while left > 0:
            piece = min(left, MiB)
            fh.write(b"A" * piece)
            left -= piece
        fh.write(b",2024-01-01T00:00:00Z\n")


def test_gigantic_csv_line_is_refused_with_bounded_memory(tmp_path: Path) -> None:
    src = tmp_path / "upload" / "original"
    src.parent.mkdir()
    write_long_line_csv(src, 40 * MiB)
    limits = IngestLimits(max_csv_line_bytes=MiB)
    dest = tmp_path / "out" / "e.parquet"
    with pytest.raises(EventLogError, match=r"line 2 is longer than 1 MiB") as err:
        ingest(src, "long.csv", ColumnMapping(), dest, limits)
    assert "long.csv" in str(err.value)
    assert not dest.exists()
    peak = peak_memory(lambda: ingest(src, "long.csv", ColumnMapping(), dest, limits))
    assert peak < 12 * MiB, peak  # the 40 MiB line was never held in memory


def test_long_line_limit_is_configurable(tmp_path: Path) -> None:
    src = tmp_path / "upload" / "original"
    src.parent.mkdir()
    write_long_line_csv(src, 2 * MiB)
    stats = ingest(
        src,
        "long.csv",
        ColumnMapping(),
        tmp_path / "out" / "e.parquet",
        IngestLimits(max_csv_line_bytes=4 * MiB),
    )
    assert stats.events == 1


def test_crlf_file_with_a_long_line_names_the_right_line(tmp_path: Path) -> None:
    content = (
        b"case:concept:name,concept:name,time:timestamp\r\n"
        + (b"1,a,2024-01-01T00:00:00Z\r\n" * 3)
        + b"1,"
        + b"B" * 5000
        + b",2024-01-01T00:00:00Z\r\n"
    )
    refused(tmp_path, "crlf.csv", content, "line 5", limits=IngestLimits(max_csv_line_bytes=1024))


def test_millions_of_columns_are_refused(tmp_path: Path) -> None:
    header = b",".join(b"c%d" % i for i in range(2_000_000))
    content = header + b"\n" + b"," * 1_999_999 + b"\n"
    message = refused(tmp_path, "wide.csv", content, "columns")
    assert "5000" in message


def test_columns_limit_is_configurable_and_exact(tmp_path: Path) -> None:
    names = ["case:concept:name", "concept:name", "time:timestamp"] + [f"x{i}" for i in range(7)]
    row = ["1", "a", "2024-01-01T00:00:00Z"] + ["0"] * 7
    content = (",".join(names) + "\n" + ",".join(row) + "\n").encode()
    refused(tmp_path / "a", "ten.csv", content, "10 columns", limits=IngestLimits(max_columns=9))
    assert run(tmp_path / "b", "ten.csv", content, limits=IngestLimits(max_columns=10)).events == 1


def test_quoted_separators_in_names_are_not_counted(tmp_path: Path) -> None:
    content = b'case:concept:name,concept:name,time:timestamp,"a,b,c,d"\n1,a,2024-01-01,x\n'
    assert run(tmp_path, "q.csv", content, limits=IngestLimits(max_columns=4)).events == 1


# -- CSV: encodings ------------------------------------------------------------------------------

TURKISH = ["Başvuru alındı", "Değerlendirme", "İptal edildi", "Ödeme yapıldı"]
GERMAN = ["Prüfung", "Maße geändert", "Überweisung", "Café"]


def csv_of(activities: list[str], resources: list[str]) -> str:
    lines = ["case:concept:name;concept:name;time:timestamp;org:resource"]
    for i, (act, res) in enumerate(zip(activities, resources, strict=True)):
        lines.append(f"c{i % 2};{act};2024-01-0{i + 1}T10:00:00Z;{res}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "encoding", "assumed"),
    [
        (csv_of(TURKISH, ["Şükrü", "Ayşe", "Işık", "Gül"]), "cp1254", "Windows-1254"),
        (csv_of(TURKISH, ["Şükrü", "Ayşe", "Işık", "Gül"]), "iso-8859-9", "Windows-1254"),
        (csv_of(GERMAN, ["Jürgen", "Zoë", "Ana", "Bob"]), "latin-1", "Windows-1252"),
        (csv_of(GERMAN, ["Jürgen", "Zoë", "Ana", "Bob"]), "cp1252", "Windows-1252"),
        (csv_of(TURKISH, ["Şükrü", "Ayşe", "Işık", "Gül"]), "utf-16", None),
        (csv_of(TURKISH, ["Şükrü", "Ayşe", "Işık", "Gül"]), "utf-8-sig", None),
        (csv_of(GERMAN, ["Jürgen", "Zoë", "Ana", "Bob"]), "utf-8", None),
    ],
    ids=["cp1254", "latin5", "latin1", "cp1252", "utf16-bom", "utf8-bom", "utf8"],
)
def test_detectable_encodings_are_read_correctly(
    tmp_path: Path, text: str, encoding: str, assumed: str | None
) -> None:
    stats = run(tmp_path, "log.csv", text.encode(encoding))
    events = load_events(tmp_path / "out" / "e.parquet")
    expected = pd.read_csv(io.StringIO(text), sep=";")
    assert events[XES_ACTIVITY].tolist() == expected[XES_ACTIVITY].tolist()
    assert events[XES_RESOURCE].tolist() == expected[XES_RESOURCE].tolist()
    notes = [w for w in stats.warnings if w["type"] == "encodingAssumed"]
    if assumed:
        assert len(notes) == 1 and assumed in notes[0]["message"], stats.warnings
    else:
        assert notes == []


def test_utf16_big_endian_with_bom_is_read(tmp_path: Path) -> None:
    text = csv_of(TURKISH, ["Şükrü", "Ayşe", "Işık", "Gül"])
    run(tmp_path, "be.csv", b"\xfe\xff" + text.encode("utf-16-be"))
    assert load_events(tmp_path / "out" / "e.parquet")[XES_ACTIVITY].tolist() == TURKISH


def test_broken_utf8_is_refused_naming_line_and_byte(tmp_path: Path) -> None:
    good = csv_of(TURKISH, ["Şükrü", "Ayşe", "Işık", "Gül"]).encode("utf-8")
    lines = good.split(b"\n")
    lines[3] = lines[3] + b"\xff"
    refused(tmp_path, "broken.csv", b"\n".join(lines), "not valid UTF-8", "line 4", "0xFF")


def test_utf16_without_bom_is_refused_with_advice(tmp_path: Path) -> None:
    text = csv_of(GERMAN, ["Jürgen", "Zoë", "Ana", "Bob"])
    refused(tmp_path, "nobom.csv", text.encode("utf-16-le"), "binary", "UTF-16", "UTF-8")


def test_utf32_csv_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, "wide.csv", csv_of(GERMAN, ["a", "b", "c", "d"]).encode("utf-32"), "UTF-32")


def test_undecodable_single_byte_text_is_refused_saying_utf8_is_expected(tmp_path: Path) -> None:
    # 0x81 and 0x8D are unassigned in Windows-1252; no Turkish letters, so 1252 is tried
    content = b"case:concept:name,concept:name,time:timestamp\n1,a\x81\x8d,2024-01-01\n"
    refused(tmp_path, "odd.csv", content, "neither UTF-8 nor Windows-1252", "save it as UTF-8")


def test_nul_byte_deep_in_the_file_is_binary(tmp_path: Path) -> None:
    content = b"case:concept:name,concept:name,time:timestamp\n" + (
        b"1,a,2024-01-01T00:00:00Z\n" * 2000
    )
    refused(tmp_path, "nul.csv", content + b"1,\x00,2024\n", "binary", "line 2002")


@pytest.mark.parametrize(
    ("content", "mentions"),
    [
        (b"", ["empty"]),
        (b"case:concept:name,concept:name,time:timestamp\n", ["no events"]),
        (b"case:concept:name,concept:name,time:timestamp", ["no events"]),
        (b"\n\n\n", ["no data"]),
        (bytes(range(256)) * 64, ["binary"]),
    ],
    ids=["empty", "header-only", "header-no-newline", "blank-lines", "garbage"],
)
def test_empty_header_only_and_garbage_csv(
    tmp_path: Path, content: bytes, mentions: list[str]
) -> None:
    refused(tmp_path, "log.csv", content, *mentions)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.one_of(
        st.binary(max_size=3000),
        st.lists(
            st.text(alphabet=st.sampled_from('ab,;"\n\r\t=é€ğ1:-T'), max_size=40), max_size=30
        ).map(lambda rows: "\n".join(rows).encode("utf-8", errors="replace")),
    ),
    name=st.sampled_from(["f.csv", "f.parquet", "f.xes.gz"]),
)
def test_arbitrary_bytes_give_a_dataset_or_a_clear_error(
    tmp_path: Path, content: bytes, name: str
) -> None:
    """Whatever the bytes, ingestion answers with stats or EventLogError, nothing else."""
    folder = tmp_path / f"case-{abs(hash((content, name)))}"
    try:
        run(folder, name, content)
    except EventLogError as exc:
        assert name in str(exc) or "Column" in str(exc), str(exc)
        out = folder / "out"
        assert not out.exists() or list(out.iterdir()) == []


# -- Parquet: weird schemas ----------------------------------------------------------------------

KEYS = {
    "case:concept:name": ["1", "1"],
    "concept:name": ["a", "b"],
    "time:timestamp": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
}


def parquet_bytes(table: pa.Table, **kw: object) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **kw)  # type: ignore[arg-type]
    return buf.getvalue()


@pytest.mark.parametrize(
    "column",
    [
        pa.array([{"x": 1}, {"x": 2}]),
        pa.array([[1, 2], [3]]),
        pa.array([[("k", "v")], []], type=pa.map_(pa.string(), pa.string())),
        pa.array([[{"deep": [1]}], []]),
    ],
    ids=["struct", "list", "map", "list-of-struct"],
)
def test_nested_parquet_columns_are_refused(tmp_path: Path, column: pa.Array) -> None:
    table = pa.table({**{k: pa.array(v) for k, v in KEYS.items()}, "payload": column})
    refused(tmp_path, "nested.parquet", parquet_bytes(table), "nested", "'payload'", "flatten")


def test_nested_key_column_is_refused(tmp_path: Path) -> None:
    table = pa.table(
        {
            "case:concept:name": pa.array([{"id": 1}, {"id": 2}]),
            "concept:name": pa.array(["a", "b"]),
            "time:timestamp": pa.array(KEYS["time:timestamp"]),
        }
    )
    refused(tmp_path, "nested.parquet", parquet_bytes(table), "nested", "case:concept:name")


def test_parquet_without_rows_is_refused(tmp_path: Path) -> None:
    table = pa.table({k: pa.array(v) for k, v in KEYS.items()}).slice(0, 0)
    refused(tmp_path, "empty.parquet", parquet_bytes(table), "no events")


def test_parquet_with_ten_thousand_columns_is_refused(tmp_path: Path) -> None:
    extra = {f"c{i}": pa.array([0, 0], type=pa.int8()) for i in range(10_000)}
    table = pa.table({**{k: pa.array(v) for k, v in KEYS.items()}, **extra})
    refused(tmp_path, "wide.parquet", parquet_bytes(table), "10003 columns")


def test_parquet_with_duplicate_column_names_is_refused(tmp_path: Path) -> None:
    arrays = [pa.array(v) for v in KEYS.values()] + [pa.array(["x", "y"])]
    table = pa.Table.from_arrays(arrays, names=[*KEYS, "concept:name"])
    refused(tmp_path, "dup.parquet", parquet_bytes(table), "several columns named", "concept:name")


def test_parquet_that_decompresses_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    rows = 2_000_000
    table = pa.table(
        {
            "case:concept:name": pa.array(["1"] * rows).dictionary_encode(),
            "concept:name": pa.array(["a"] * rows).dictionary_encode(),
            "time:timestamp": pa.array([KEYS["time:timestamp"][0]] * rows),
            "zeros": pa.array([0] * rows, type=pa.int64()),
        }
    )
    data = parquet_bytes(table, compression="zstd", use_dictionary=["case:concept:name"])
    assert len(data) < MiB
    refused(
        tmp_path,
        "bomb.parquet",
        data,
        "decompressed",
        error=InputTooLarge,
        limits=IngestLimits(max_decompressed_bytes=4 * MiB),
    )


def test_dictionary_encoded_parquet_is_fine(tmp_path: Path) -> None:
    table = pa.table(
        {
            "case:concept:name": pa.array(KEYS["case:concept:name"]).dictionary_encode(),
            "concept:name": pa.array(KEYS["concept:name"]).dictionary_encode(),
            "time:timestamp": pa.array(KEYS["time:timestamp"]),
        }
    )
    assert run(tmp_path, "dict.parquet", parquet_bytes(table)).events == 2
