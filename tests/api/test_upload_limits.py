"""Bad input on uploads gets a clear "no": size limits enforced while the body streams in, XML
and gzip bombs, hostile CSVs and odd Parquet files refused with problem+json, nothing left on
disk, the API still answering. And the CSVs pmjobs writes cannot run as spreadsheet formulas.

The upload route needs no Prefect, so most tests run the real FastAPI app in this process on a
real uvicorn server with small, configured limits (``PMJOBS_MAX_*``); the last ones use the
real stack (``stack`` fixture) with its default configuration.
"""

from __future__ import annotations

import csv
import gzip
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import DATA, ROOT, Api, Stack, free_port, new_tenant

PROBLEM = "application/problem+json"
MiB = 1024 * 1024
LIMIT = MiB  # PMJOBS_MAX_UPLOAD_BYTES of the in-process app
LIMITS = {
    "PMJOBS_MAX_UPLOAD_BYTES": str(LIMIT),
    "PMJOBS_MAX_DECOMPRESSED_BYTES": str(8 * MiB),
    "PMJOBS_MAX_CSV_LINE_BYTES": str(64 * 1024),
    "PMJOBS_MAX_COLUMNS": "50",
}
HEADER = b"case:concept:name,concept:name,time:timestamp\n"


@dataclass
class Local:
    """The API app served in-process on a real socket, with one tenant/project token."""

    port: int
    home: Path
    tenant: str
    project: str
    token: str
    http: httpx.Client

    @property
    def path(self) -> str:
        return f"/api/{self.tenant}/{self.project}/datasets"

    def upload(self, filename: str, content: bytes, **form: str) -> httpx.Response:
        return self.http.post(self.path, files={"file": (filename, content)}, data=form)

    def files(self) -> list[str]:
        """Everything under datasets/, the (empty) staging folder excluded."""
        root = self.home / "datasets"
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.name != ".staging" and ".staging" not in p.relative_to(root).parts[:1]
        )

    def staged(self) -> list[Path]:
        staging = self.home / "datasets" / ".staging"
        return list(staging.rglob("*")) if staging.is_dir() else []


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    from api.main import create_app
    from api.settings import Settings, get_settings

    home = tmp_path_factory.mktemp("upload-limits-home")
    env = {
        **LIMITS,
        "PMJOBS_HOME": str(home),
        # nothing listens there: uploads never talk to Prefect
        "PMJOBS_PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
    }
    tenant, project = "t-" + uuid.uuid4().hex[:8], "p-" + uuid.uuid4().hex[:8]
    out = subprocess.run(
        [sys.executable, "-m", "executors.cli", "token", "create", "--tenant", tenant]
        + ["--user", "alice", "--project", project],
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    token = out.stdout.strip().splitlines()[-1]
    port = free_port()
    # the environment only while the app starts (its lifespan reads the settings); the routes
    # get the same values through the dependency override, and the stack fixture (a separate
    # process, maybe started later in this session) never sees these small limits
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        settings = Settings()
        app = create_app()
        app.dependency_overrides[get_settings] = lambda: settings
        import uvicorn

        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 120
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "API did not start"
            time.sleep(0.05)
    get_settings.cache_clear()
    http = httpx.Client(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    try:
        yield Local(port, home, tenant, project, token, http)
    finally:
        http.close()
        server.should_exit = True
        thread.join(timeout=30)


def problem(r: httpx.Response | http.client.HTTPResponse, status: int, *mentions: str) -> str:
    """A problem document with ``status`` whose detail names every one of ``mentions``."""
    code = r.status_code if isinstance(r, httpx.Response) else r.status
    body = r.content if isinstance(r, httpx.Response) else r.read()
    assert code == status, (code, body[:500])
    content_type = (
        r.headers["content-type"] if isinstance(r, httpx.Response) else r.getheader("content-type")
    )
    assert content_type.split(";")[0] == PROBLEM, content_type
    doc = json.loads(body)
    assert doc["status"] == status and doc["title"], doc
    for word in mentions:
        assert word.lower() in doc["detail"].lower(), (word, doc["detail"])
    return doc["detail"]


def refused(local: Local, status: int, filename: str, content: bytes, *mentions: str) -> str:
    """Upload must be refused with ``status``, leave no file anywhere, and the API answers."""
    before = local.files()
    detail = problem(local.upload(filename, content), status, *mentions)
    assert local.files() == before
    assert local.staged() == []
    listing = local.http.get(local.path)
    assert listing.status_code == 200, listing.text
    return detail


# -- size limit: refused while streaming ----------------------------------------------------------


def raw_request(local: Local, headers: dict[str, str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", local.port), timeout=120)
    lines = [f"POST {local.path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_response(sock: socket.socket) -> http.client.HTTPResponse:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response


BOUNDARY = "pmjobs-test-boundary"
PART_HEAD = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
    "Content-Type: text/csv\r\n\r\n"
).encode()


def test_declared_oversize_is_refused_before_the_body_is_sent(local: Local) -> None:
    """Content-Length says 10 GiB and not one body byte is sent: the server must answer 413
    at once (if it waited for the body, this read would block until the socket timeout)."""
    before = local.files()
    with raw_request(
        local,
        {
            "Authorization": f"Bearer {local.token}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Content-Length": str(10 * 1024**3),
        },
    ) as sock:
        problem(read_response(sock), 413, "1 MiB")
    assert local.files() == before and local.staged() == []


def test_streamed_oversize_is_refused_while_it_arrives(local: Local) -> None:
    """A chunked body (no Content-Length) is counted as it arrives: after 3 MiB of a body that
    never ends, the answer is already 413, and nothing of it was kept."""
    before = local.files()
    with raw_request(
        local,
        {
            "Authorization": f"Bearer {local.token}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            "Transfer-Encoding": "chunked",
        },
    ) as sock:
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(PART_HEAD), PART_HEAD))
            sock.sendall(b"%x\r\n%s\r\n" % (len(HEADER), HEADER))
            row = b"1,a,2024-01-01T00:00:00Z\n" * 40_000  # ~1 MiB
            for _ in range(3):
                sock.sendall(b"%x\r\n%s\r\n" % (len(row), row))
        except OSError:
            pass  # the server may stop reading once it has answered
        # the body is not finished (no closing boundary, no last chunk): only a server that
        # enforces the limit while streaming can answer now
        problem(read_response(sock), 413, "larger than 1 MiB")
    assert local.files() == before
    assert local.staged() == []
    assert local.http.get(local.path).status_code == 200


def test_a_file_one_byte_over_the_limit_is_413(local: Local) -> None:
    content = HEADER + b"1,a,2024-01-01T00:00:00Z\n" * (LIMIT // 26)
    content += b"x" * (LIMIT + 1 - len(content))
    assert len(content) == LIMIT + 1
    refused(local, 413, "big.csv", content, "1 MiB")


def test_a_log_within_the_limit_is_accepted(local: Local) -> None:
    receipt = (DATA / "receipt.csv").read_bytes()
    content = receipt[: receipt.rindex(b"\n", 0, LIMIT) + 1]
    r = local.upload("receipt-part.csv", content)
    assert r.status_code == 201, r.text
    dataset = r.json()
    expected = pd.read_csv(io.BytesIO(content))
    assert dataset["events"] == len(expected)
    assert local.staged() == []
    folder = local.home / "datasets" / local.tenant / local.project / dataset["datasetId"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "dataset.json",
        "events.parquet",
        "original.csv",
    ]


# -- XML bombs, XXE, gzip bombs ------------------------------------------------------------------

XES_BODY = (
    '<log xes.version="1.0"><trace><string key="concept:name" value="c1"/>'
    '<event><string key="concept:name" value="&e;"/>'
    '<date key="time:timestamp" value="2020-01-01T10:00:00.000+00:00"/></event></trace></log>'
)
LAUGHS = "".join(
    f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
).replace("&l0;", "lol")
XML_ATTACKS = {
    "billion-laughs": f'<?xml version="1.0"?><!DOCTYPE log [{LAUGHS}<!ENTITY e "&l9;">]>'
    + XES_BODY,
    "quadratic": '<?xml version="1.0"?><!DOCTYPE log [<!ENTITY a "'
    + "a" * 50_000
    + '"><!ENTITY e "x">]>'
    + XES_BODY.replace("&e;", "&a;" * 10_000),
    "xxe-passwd": '<?xml version="1.0"?><!DOCTYPE log [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    + XES_BODY,
    "external-dtd": '<?xml version="1.0"?><!DOCTYPE log SYSTEM "file:///etc/passwd">'
    + XES_BODY.replace("&e;", "A"),
}


@pytest.mark.parametrize("attack", sorted(XML_ATTACKS))
@pytest.mark.parametrize("packing", ["xes", "xes.gz"])
def test_xml_attacks_are_422(local: Local, attack: str, packing: str) -> None:
    content = XML_ATTACKS[attack].encode()
    if packing == "xes.gz":
        content = gzip.compress(content)
    detail = refused(local, 422, f"{attack}.{packing}", content, "refused", attack)
    assert "root:" not in detail  # nothing of /etc/passwd leaks into the answer


def gzip_of_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = io.BytesIO()
    for _ in range(size // MiB):
        out.write(packer.compress(bytes(MiB)))
    out.write(packer.flush())
    return out.getvalue()


def test_gzip_bomb_is_413(local: Local) -> None:
    bomb = gzip_of_zeros(256 * MiB)  # ~250 KiB that expand to 256 MiB (limit: 8 MiB)
    assert len(bomb) < LIMIT
    refused(local, 413, "bomb.xes.gz", bomb, "decompressed", "8 MiB", "gzip bomb")


# -- CSV -----------------------------------------------------------------------------------------

TURKISH = (
    "case:concept:name;concept:name;time:timestamp;org:resource\n"
    "1;Başvuru alındı;2024-01-01T10:00:00Z;Şükrü\n"
    "1;Değerlendirme;2024-01-02T10:00:00Z;Ayşe\n"
    "2;İptal edildi;2024-01-03T10:00:00Z;Işık\n"
)


def stored_activities(local: Local, dataset: dict[str, Any]) -> list[str]:
    from flows.steps.eventlog import XES_ACTIVITY, load_events

    folder = local.home / "datasets" / local.tenant / local.project / dataset["datasetId"]
    return load_events(folder / "events.parquet")[XES_ACTIVITY].tolist()


@pytest.mark.parametrize(
    ("encoding", "warned"), [("cp1254", True), ("utf-16", False), ("utf-8", False)]
)
def test_turkish_csv_in_several_encodings_is_read_correctly(
    local: Local, encoding: str, warned: bool
) -> None:
    r = local.upload(f"turkish-{encoding}.csv", TURKISH.encode(encoding))
    assert r.status_code == 201, r.text
    dataset = r.json()
    assert stored_activities(local, dataset) == ["Başvuru alındı", "Değerlendirme", "İptal edildi"]
    notes = [w for w in dataset["warnings"] if w["type"] == "encodingAssumed"]
    assert bool(notes) == warned, dataset["warnings"]
    if warned:
        assert "Windows-1254" in notes[0]["message"]


@pytest.mark.parametrize(
    ("filename", "content", "mentions"),
    [
        ("empty.csv", b"", ["empty"]),
        ("header-only.csv", HEADER, ["no events"]),
        ("garbage.csv", bytes(range(256)) * 100, ["binary"]),
        (
            "broken-utf8.csv",
            TURKISH.encode("utf-8").replace("Ayşe".encode(), b"Ay\xfee"),
            ["not valid UTF-8", "line 3", "save the file as UTF-8"],
        ),
        ("long-line.csv", HEADER + b"1," + b"A" * 200_000 + b",2024-01-01\n", ["line 2"]),
        (
            "wide.csv",
            HEADER.rstrip() + b"," + b",".join(b"x%d" % i for i in range(60)) + b"\n",
            ["63 columns", "at most 50"],
        ),
        (
            "wider.csv",
            b",".join(b"c%d" % i for i in range(100_000)) + b"\n",
            ["has more than", "columns"],
        ),
        ("utf32.csv", TURKISH.encode("utf-32"), ["UTF-32"]),
    ],
)
def test_bad_csv_uploads_are_422(
    local: Local, filename: str, content: bytes, mentions: list[str]
) -> None:
    assert len(content) <= LIMIT
    refused(local, 422, filename, content, filename, *mentions)


# -- Parquet -------------------------------------------------------------------------------------


def parquet(**columns: pa.Array) -> bytes:
    keys = {
        "case:concept:name": pa.array(["1", "1"]),
        "concept:name": pa.array(["a", "b"]),
        "time:timestamp": pa.array(pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True)),
    }
    buf = io.BytesIO()
    pq.write_table(pa.table({**keys, **columns}), buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("filename", "content", "mentions"),
    [
        ("nested.parquet", parquet(payload=pa.array([{"x": 1}, {"x": 2}])), ["nested", "payload"]),
        ("lists.parquet", parquet(tags=pa.array([["a"], []])), ["nested", "tags"]),
        (
            "wide.parquet",
            parquet(**{f"c{i}": pa.array([0, 0], type=pa.int8()) for i in range(1_000)}),
            ["1003 columns", "at most 50"],
        ),
        ("garbage.parquet", b"PAR1" + bytes(range(256)) * 4, ["Parquet"]),
    ],
)
def test_bad_parquet_uploads_are_422(
    local: Local, filename: str, content: bytes, mentions: list[str]
) -> None:
    refused(local, 422, filename, content, filename, *mentions)


def test_parquet_without_rows_is_422(local: Local) -> None:
    table = pq.read_table(io.BytesIO(parquet())).slice(0, 0)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    refused(local, 422, "no-rows.parquet", buf.getvalue(), "no events")


def test_the_api_still_answers_after_all_that(local: Local) -> None:
    r = local.http.get(local.path)
    assert r.status_code == 200
    assert local.staged() == []
    ok = local.upload("ok.csv", HEADER + b"1,a,2024-01-01T00:00:00Z\n")
    assert ok.status_code == 201, ok.text


# -- the real stack, default configuration --------------------------------------------------------


def test_real_stack_refuses_an_xml_bomb_and_keeps_nothing(stack: Stack) -> None:
    api = new_tenant(stack)
    content = gzip.compress(XML_ATTACKS["billion-laughs"].encode())
    r = api.post("/datasets", files={"file": ("laughs.xes.gz", content)})
    problem(r, 422, "ENTITY", "XML bomb")
    assert not (stack.home / "datasets" / api.tenant).exists()
    staging = stack.home / "datasets" / ".staging"
    assert not staging.exists() or list(staging.iterdir()) == []
    assert api.get("/datasets").json()["totalCount"] == 0


FORMULA_LOG = (
    "case:concept:name,concept:name,time:timestamp,org:resource,amount,note\n"
    '1,"=HYPERLINK(""http://evil.example"",""x"")",2024-01-01T10:00:00Z,@admin,-5,-5\n'
    "1,+cmd|' /C calc'!A0,2024-01-01T11:00:00Z,-bob,3.2,=1+1\n"
    "2,Register,2024-01-02T10:00:00Z,alice,+7,plain\n"
    "2,-Pay,2024-01-02T12:00:00Z,\tcarol,-0.5,+3.2\n"
)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _formula_cells(rows: list[list[str]]) -> list[str]:
    return [
        cell
        for row in rows
        for cell in row
        if cell.startswith(("=", "+", "-", "@", "\t", "\r")) and not _NUMBER.fullmatch(cell)
    ]


def test_enriched_csv_download_cannot_run_formulas(stack: Stack) -> None:
    api: Api = new_tenant(stack)
    r = api.post("/datasets", files={"file": ("formulas.csv", FORMULA_LOG.encode())})
    assert r.status_code == 201, r.text
    job = api.wait(
        api.submit(
            {
                "jobName": "Enrich hostile log",
                "jobType": "DataEnrichment",
                "parameters": {"datasetId": r.json()["datasetId"]},
            }
        )["jobId"],
        timeout=300,
    )
    assert job["status"] == "Completed", job
    results = api.get(f"/execution/job/{job['jobId']}/results").json()
    outputs = [results["results"]["primaryOutput"], *results["results"]["additionalOutputs"]]
    enriched = next(o for o in outputs if o and o["name"] == "enriched.csv")
    download = api.get(enriched["downloadUrl"])
    assert download.status_code == 200
    rows = list(csv.reader(io.StringIO(download.content.decode("utf-8"))))
    header, body = rows[0], rows[1:]
    assert _formula_cells(rows) == [], _formula_cells(rows)
    activities = sorted(row[header.index("concept:name")] for row in body)
    assert activities == sorted(
        ['\'=HYPERLINK("http://evil.example","x")', "'+cmd|' /C calc'!A0", "Register", "'-Pay"]
    )
    resources = sorted(row[header.index("org:resource")] for row in body)
    assert resources == sorted(["'@admin", "'-bob", "alice", "'\tcarol"])
    # numbers stay numbers, in numeric and in text columns alike
    assert sorted(float(row[header.index("amount")]) for row in body) == [-5.0, -0.5, 3.2, 7.0]
    notes = sorted(row[header.index("note")] for row in body)
    assert notes == sorted(["-5", "'=1+1", "plain", "+3.2"])
    # the enriched log registered as a dataset keeps the same escaping in its events.csv
    new_id = results["summary"]["datasetId"]
    stored = stack.home / "datasets" / api.tenant / api.project / new_id / "events.csv"
    stored_rows = list(csv.reader(io.StringIO(stored.read_text("utf-8"))))
    assert _formula_cells(stored_rows) == []
    assert len(stored_rows) == len(rows)
