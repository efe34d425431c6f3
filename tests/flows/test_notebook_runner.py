"""flows.steps.notebook_runner on small notebooks built here with nbformat (real kernels)."""

from __future__ import annotations

import json
import pickle
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from flows.steps.notebook_runner import (
    KERNEL_NAME,
    NotebookFailed,
    NotebookTimedOut,
    run_notebook,
    validate_notebook,
)


def _write(tmp_path: Path, *cells: nbformat.NotebookNode, **metadata: object) -> Path:
    path = tmp_path / "input.ipynb"
    nbformat.write(new_notebook(cells=list(cells), metadata=metadata), path)
    return path


def _parameters_cell(source: str) -> nbformat.NotebookNode:
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


def _stdout(nb: nbformat.NotebookNode, index: int) -> str:
    return "".join(o.get("text", "") for o in nb.cells[index].outputs if o.output_type == "stream")


class _RemoteRefs(HTMLParser):
    """Collects src/href attributes of tags that would make a browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.remote: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if (
                (tag, name) in {("script", "src"), ("link", "href")}
                and value
                and (value.strip().lower().startswith(("http:", "https:", "//")))
            ):
                self.remote.append(f"<{tag} {name}={value}>")


def test_parameters_override_defaults_and_outputs_are_captured(tmp_path: Path) -> None:
    source = _write(
        tmp_path,
        new_markdown_cell("# Report\n<script src='https://cdn.example.com/x.js'></script>"),
        _parameters_cell("alpha = 1\nlabel = 'default'"),
        new_code_cell("print(alpha * 2, label)"),
        new_code_cell("import os, sys\nprint(sys.executable)\nprint(os.getcwd())"),
        new_code_cell("from IPython.display import HTML\nHTML('<b>bold</b>')"),
        new_code_cell(""),  # empty cells are not executed and not counted
    )
    progress: list[tuple[int, int]] = []
    result = run_notebook(
        source,
        {"alpha": 21, "label": "given"},
        tmp_path / "work",
        60,
        on_cell=lambda done, total: progress.append((done, total)),
    )

    nb = nbformat.reads(result.notebook.decode(), as_version=4)
    nbformat.validate(nb)
    injected = nb.cells[2]
    assert "injected-parameters" in injected.metadata.tags
    assert "alpha = 21" in injected.source
    assert _stdout(nb, 3) == "42 given\n"
    executable, cwd = _stdout(nb, 4).splitlines()
    assert executable == sys.executable
    assert Path(cwd) == (tmp_path / "work").resolve()
    assert nb.cells[5].outputs[0].data["text/html"] == "<b>bold</b>"
    assert progress == [(0, 5), (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert (result.cells_executed, result.cells_total) == (5, 5)
    kernel = tmp_path / "work/.pmjobs-kernel/share/jupyter/kernels" / KERNEL_NAME / "kernel.json"
    assert json.loads(kernel.read_text())["argv"][0] == sys.executable

    page = result.html.decode()
    assert "42 given" in page and "<b>bold</b>" in page
    parser = _RemoteRefs()
    parser.feed(page)
    assert parser.remote == []
    assert "cdnjs" not in page and "cdn.example.com" not in page


def test_without_parameters_cell_injects_at_top(tmp_path: Path) -> None:
    source = _write(tmp_path, new_code_cell("print(value + 1)"))
    result = run_notebook(source, {"value": 41}, tmp_path / "work", 60)
    nb = nbformat.reads(result.notebook.decode(), as_version=4)
    assert nb.cells[0].metadata.tags == ["injected-parameters"]
    assert _stdout(nb, 1) == "42\n"


def test_failing_cell_raises_with_index_message_and_partial_notebook(tmp_path: Path) -> None:
    source = _write(
        tmp_path,
        new_markdown_cell("intro"),
        _parameters_cell("n = 1"),
        new_code_cell("print('before', n)"),
        new_code_cell("# divide\nx = 1/0"),
        new_code_cell("print('never')"),
    )
    with pytest.raises(NotebookFailed) as info:
        run_notebook(source, {"n": 7}, tmp_path / "work", 60)
    exc = info.value
    assert type(exc) is NotebookFailed
    # Index in the uploaded notebook; the injected cell shifts the executed one by one.
    assert (exc.cell_index, exc.executed_cell_index) == (3, 4)
    assert (exc.ename, exc.evalue) == ("ZeroDivisionError", "division by zero")
    assert str(exc) == "cell 3 failed: ZeroDivisionError: division by zero — `x = 1/0`"
    assert "ZeroDivisionError" in exc.traceback and "\x1b[" not in exc.traceback

    assert exc.notebook is not None
    partial = nbformat.reads(exc.notebook.decode(), as_version=4)
    assert _stdout(partial, 3) == "before 7\n"
    assert partial.cells[4].outputs[0].ename == "ZeroDivisionError"
    assert partial.cells[5].outputs == []

    copy = pickle.loads(pickle.dumps(exc))
    assert str(copy) == str(exc) and copy.notebook == exc.notebook


def test_sys_exit_zero_stops_successfully(tmp_path: Path) -> None:
    source = _write(
        tmp_path, new_code_cell("import sys\nsys.exit(0)"), new_code_cell("print('not run')")
    )
    result = run_notebook(source, {}, tmp_path / "work", 60)
    nb = nbformat.reads(result.notebook.decode(), as_version=4)
    assert nb.cells[1].outputs == []


def test_timeout_covers_the_whole_notebook(tmp_path: Path) -> None:
    source = _write(
        tmp_path,
        new_code_cell("import time\ntime.sleep(1.5)\nprint('first')"),
        new_code_cell("time.sleep(1.5)\nprint('second')"),
        new_code_cell("time.sleep(60)"),
    )
    started = time.monotonic()
    with pytest.raises(NotebookTimedOut) as info:
        run_notebook(source, {}, tmp_path / "work", 6)
    elapsed = time.monotonic() - started
    assert elapsed < 20, elapsed
    exc = info.value
    assert isinstance(exc, NotebookFailed)
    assert exc.cell_index == 2
    assert str(exc).startswith("cell 2 timed out: TimeoutError: notebook exceeded its time limit")
    assert str(exc).endswith("— `time.sleep(60)`")
    assert exc.notebook is not None
    partial = nbformat.reads(exc.notebook.decode(), as_version=4)
    assert _stdout(partial, 1) == "second\n"


def test_validate_notebook(tmp_path: Path) -> None:
    nb = new_notebook(
        cells=[_parameters_cell("a = 1"), new_code_cell("a")],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    data = nbformat.writes(nb).encode()
    assert validate_notebook(data) == {"cells": 2, "hasParametersCell": True, "kernel": "python3"}
    plain = nbformat.writes(new_notebook(cells=[new_code_cell("1")])).encode()
    assert validate_notebook(plain) == {"cells": 1, "hasParametersCell": False, "kernel": None}

    with pytest.raises(ValueError, match="invalid JSON"):
        validate_notebook(b"{not json")
    with pytest.raises(ValueError, match="not UTF-8"):
        validate_notebook(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="expected a JSON object with 'nbformat'"):
        validate_notebook(b'{"hello": "world"}')
    broken = json.loads(data)
    broken["cells"][0]["cell_type"] = "spreadsheet"
    with pytest.raises(ValueError, match="invalid Jupyter notebook"):
        validate_notebook(json.dumps(broken).encode())


def test_rejects_other_languages_and_bad_parameter_names(tmp_path: Path) -> None:
    r_notebook = _write(
        tmp_path,
        new_code_cell("1"),
        kernelspec={"name": "ir", "language": "R", "display_name": "R"},
    )
    with pytest.raises(ValueError, match="'R' is not supported"):
        run_notebook(r_notebook, {}, tmp_path / "work", 60)
    python = _write(tmp_path, new_code_cell("1"))
    with pytest.raises(ValueError, match="identifiers"):
        run_notebook(python, {"not-valid": 1}, tmp_path / "work", 60)
