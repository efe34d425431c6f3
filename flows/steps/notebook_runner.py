"""Run a user's Jupyter notebook papermill-style and export it to self-contained HTML.

* Parameters are injected by papermill's own ``parameterize_notebook`` (a cell tagged
  ``injected-parameters`` after the cell tagged ``parameters``, or at the top), so notebooks
  written for papermill behave the same here.
* Execution uses an nbclient subclass rather than ``papermill.execute_notebook``: we need the
  partially executed notebook on failure and on timeout (papermill loses it on a timeout and
  adds banner cells on an error), a deadline for the whole notebook (papermill only has a
  per-cell timeout) and a progress callback.
* The kernel is the project's own interpreter (``sys.executable``), declared by a kernelspec
  named ``pmjobs-python3`` written under ``workdir``; connection file and IPython profile live
  there too, so a worker needs no global Jupyter setup and user startup scripts in
  ``~/.ipython`` cannot change the results.
* The HTML export uses nbconvert's ``lab`` template minus its CDN scripts (require.js,
  MathJax, mermaid, widgets); any remaining ``<script src=http…>`` / ``<link href=http…>``
  is removed, so opening the report never fetches anything.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from jinja2 import DictLoader
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from nbconvert import HTMLExporter
from nbformat import NotebookNode

KERNEL_NAME = "pmjobs-python3"
KERNEL_DISPLAY_NAME = "Python 3 (pmjobs)"
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
KERNEL_STARTUP_SECONDS = 60.0
EXCERPT_CHARS = 80

ProgressCallback = Callable[[int, int], None]

# The lab template with every block that loads JavaScript from a CDN emptied.
_OFFLINE_TEMPLATE = "pmjobs-offline.html.j2"
_OFFLINE_LOADER = DictLoader(
    {
        _OFFLINE_TEMPLATE: (
            "{%- extends 'lab/index.html.j2' -%}\n"
            "{%- block html_head_js -%}{%- endblock html_head_js -%}\n"
            "{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}\n"
            "{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}\n"
            "{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}\n"
        )
    }
)
_REMOTE = r"""\s*=\s*["']?\s*(?:https?:)?//"""
_REMOTE_SCRIPT = re.compile(
    rf"<script\b[^>]*\bsrc{_REMOTE}[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL
)
_REMOTE_LINK = re.compile(rf"<link\b[^>]*\bhref{_REMOTE}[^>]*>", re.IGNORECASE)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class NotebookResult:
    """An executed notebook: ``.ipynb`` bytes, its HTML export and some run figures."""

    notebook: bytes
    html: bytes
    cells_executed: int
    cells_total: int
    duration_seconds: float


class NotebookFailed(Exception):
    """A cell raised (or the kernel died); ``notebook`` holds the partially executed .ipynb.

    ``cell_index`` is the 0-based position in the *uploaded* notebook (the injected parameters
    cell is not counted; a failure inside it is reported at the ``parameters`` cell), which is
    what the notebook's author can find; ``executed_cell_index`` is the position in
    ``notebook``.
    """

    verb = "failed"

    def __init__(
        self,
        cell_index: int,
        cell_source_excerpt: str,
        ename: str,
        evalue: str,
        *,
        notebook: bytes | None = None,
        executed_cell_index: int | None = None,
        traceback: str = "",
    ) -> None:
        self.cell_index = cell_index
        self.cell_source_excerpt = cell_source_excerpt
        self.ename = ename
        self.evalue = evalue
        self.notebook = notebook
        self.executed_cell_index = (
            cell_index if executed_cell_index is None else executed_cell_index
        )
        self.traceback = _ANSI.sub("", traceback)  # IPython colours its tracebacks
        super().__init__(str(self))

    def __str__(self) -> str:
        error = f"{self.ename}: {self.evalue}" if self.evalue else self.ename
        excerpt = f" — `{self.cell_source_excerpt}`" if self.cell_source_excerpt else ""
        return f"cell {self.cell_index} {self.verb}: {error}{excerpt}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only state must survive pickling (Prefect/multiprocessing move exceptions).
        return (_rebuild, (type(self), self.__dict__))


class NotebookTimedOut(NotebookFailed):
    """The notebook ran past ``timeout_seconds``; ``cell_index`` is the cell that was running."""

    verb = "timed out"


def _rebuild(cls: type[NotebookFailed], state: dict[str, Any]) -> NotebookFailed:
    exc = cls.__new__(cls)
    exc.__dict__.update(state)
    Exception.__init__(exc, str(exc))
    return exc


def validate_notebook(data: bytes) -> dict[str, Any]:
    """Check an upload is a valid nbformat-4 notebook; summarise it for the API.

    Returns ``{"cells", "hasParametersCell", "kernel"}`` (``kernel`` is the kernelspec name in
    the notebook's metadata, or None). Raises ``ValueError`` with a readable reason otherwise.
    """
    nb = _read(data)
    kernelspec = nb.metadata.get("kernelspec") or {}
    return {
        "cells": len(nb.cells),
        "hasParametersCell": _tagged_index(nb, PARAMETERS_TAG) is not None,
        "kernel": kernelspec.get("name"),
    }


def run_notebook(
    source: Path,
    parameters: dict[str, Any],
    workdir: Path,
    timeout_seconds: float | None,
    on_cell: ProgressCallback | None = None,
) -> NotebookResult:
    """Execute ``source`` with ``parameters`` in ``workdir`` (the kernel's cwd).

    ``timeout_seconds`` bounds the whole run (kernel start-up included); None means no limit.
    ``on_cell(done, total)`` is called with ``(0, total)`` before the first cell and after every
    executed code cell. Raises ``NotebookFailed`` (or its subclass ``NotebookTimedOut``) with
    the partial notebook attached, or ``ValueError`` for an unusable notebook or parameters.
    """
    started = time.monotonic()
    deadline = None if timeout_seconds is None else started + float(timeout_seconds)
    nb = _read(Path(source).read_bytes())
    _check_language(nb)
    _check_parameters(parameters)
    nb = _parameterize(nb, parameters)
    injected = _tagged_index(nb, INJECTED_TAG)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    kernel_home = _prepare_kernel(workdir)

    total = sum(1 for c in nb.cells if c.cell_type == "code" and c.source.strip())
    client = _Client(
        nb,
        kernel_home=kernel_home,
        deadline=deadline,
        total=total,
        on_cell=on_cell,
        kernel_name=KERNEL_NAME,
        startup_timeout=int(_startup_timeout(deadline)),
        shutdown_kernel="immediate",
        record_timing=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    if on_cell is not None:
        on_cell(0, total)
    env = {**os.environ, "IPYTHONDIR": str(kernel_home / "ipython"), "PYTHONUNBUFFERED": "1"}
    try:
        client.execute(env=env)
    except CellTimeoutError as exc:
        raise _failure(
            NotebookTimedOut,
            nb,
            client.current,
            injected,
            "TimeoutError",
            f"notebook exceeded its time limit of {_fmt(timeout_seconds)} s",
        ) from exc
    except DeadKernelError as exc:
        raise _failure(
            NotebookFailed,
            nb,
            client.current,
            injected,
            "DeadKernelError",
            "the kernel died (out of memory, os._exit or a crash)",
        ) from exc
    except CellExecutionError as exc:
        if not (exc.ename == "SystemExit" and exc.evalue in ("", "0", "None")):
            raise _failure(
                NotebookFailed,
                nb,
                client.current,
                injected,
                exc.ename,
                exc.evalue,
                traceback=exc.traceback,
            ) from exc
        # papermill semantics: sys.exit() / sys.exit(0) stops the notebook successfully.
    except RuntimeError as exc:  # kernel did not start (nbclient raises a bare RuntimeError)
        if deadline is not None and time.monotonic() >= deadline:
            raise _failure(
                NotebookTimedOut,
                nb,
                None,
                injected,
                "TimeoutError",
                "the kernel did not start before the time limit",
            ) from exc
        raise
    notebook = nbformat.writes(nb).encode("utf-8")
    return NotebookResult(
        notebook=notebook,
        html=export_html(nb),
        cells_executed=client.done,
        cells_total=total,
        duration_seconds=time.monotonic() - started,
    )


def export_html(nb: NotebookNode) -> bytes:
    """HTML of ``nb`` (lab look, CSS inline, images embedded) that loads nothing remotely."""
    exporter = HTMLExporter(
        template_name="lab",
        template_file=_OFFLINE_TEMPLATE,
        extra_loaders=[_OFFLINE_LOADER],
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(nb)
    body = _REMOTE_SCRIPT.sub("", body)
    body = _REMOTE_LINK.sub("", body)
    return body.encode("utf-8")


class _Client(NotebookClient):
    """nbclient with our kernel manager, a whole-notebook deadline and progress reporting."""

    def __init__(
        self,
        nb: NotebookNode,
        *,
        kernel_home: Path,
        deadline: float | None,
        total: int,
        on_cell: ProgressCallback | None,
        **kw: Any,
    ) -> None:
        super().__init__(nb, **kw)
        self.kernel_home = kernel_home
        self.deadline = deadline
        self.total = total
        self.on_cell_progress = on_cell
        self.done = 0
        self.current: int | None = None
        self.on_cell_start = self._started
        self.on_cell_executed = self._executed
        # Remaining time, not a fixed per-cell limit: the deadline covers the whole notebook.
        self.timeout_func = self._remaining

    def create_kernel_manager(self) -> AsyncKernelManager:
        specs = KernelSpecManager(kernel_dirs=[str(self.kernel_home / "share/jupyter/kernels")])
        self.km = AsyncKernelManager(
            kernel_name=KERNEL_NAME,
            kernel_spec_manager=specs,
            connection_file=str(self.kernel_home / f"kernel-{uuid.uuid4().hex}.json"),
        )
        return self.km

    def _remaining(self, cell: NotebookNode) -> float | None:
        if self.deadline is None:
            return None
        # Never 0: nbclient reads a falsy timeout as "no timeout".
        return max(self.deadline - time.monotonic(), 0.001)

    def _started(self, cell: NotebookNode, cell_index: int) -> None:
        self.current = cell_index

    def _executed(self, cell: NotebookNode, cell_index: int, execute_reply: Any) -> None:
        self.done += 1
        if self.on_cell_progress is not None:
            self.on_cell_progress(self.done, self.total)


def _prepare_kernel(workdir: Path) -> Path:
    """Write the ``pmjobs-python3`` kernelspec (argv = this interpreter) under ``workdir``."""
    from ipykernel.kernelspec import install  # heavy import, only needed when running

    home = workdir / ".pmjobs-kernel"
    home.mkdir(parents=True, exist_ok=True)
    install(
        kernel_spec_manager=KernelSpecManager(),
        kernel_name=KERNEL_NAME,
        display_name=KERNEL_DISPLAY_NAME,
        prefix=str(home),
    )
    spec = home / "share/jupyter/kernels" / KERNEL_NAME / "kernel.json"
    argv = json.loads(spec.read_text())["argv"]
    if argv[0] != sys.executable:  # ipykernel uses sys.executable; make sure of it
        raise RuntimeError(f"kernelspec {spec} runs {argv[0]}, expected {sys.executable}")
    return home


def _read(data: bytes) -> NotebookNode:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not a Jupyter notebook: not UTF-8 text ({exc.reason})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a Jupyter notebook: invalid JSON ({exc})") from None
    if not isinstance(raw, dict) or "cells" not in raw or "nbformat" not in raw:
        raise ValueError(
            "not a Jupyter notebook: expected a JSON object with 'nbformat' and 'cells'"
        )
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises several unrelated types (schema, version, …)
        message = getattr(exc, "message", None) or str(exc).splitlines()[0]
        raise ValueError(f"invalid Jupyter notebook: {message}") from None
    return nb


def _check_language(nb: NotebookNode) -> None:
    language = (nb.metadata.get("kernelspec") or {}).get("language") or (
        nb.metadata.get("language_info") or {}
    ).get("name")
    if language and str(language).lower() != "python":
        raise ValueError(f"notebook language {language!r} is not supported; only Python runs")


def _check_parameters(parameters: dict[str, Any]) -> None:
    bad = [k for k in parameters if not str(k).isidentifier() or keyword.iskeyword(str(k))]
    if bad:
        raise ValueError(f"notebook parameter names must be Python identifiers: {bad}")


def _parameterize(nb: NotebookNode, parameters: dict[str, Any]) -> NotebookNode:
    """papermill's injection (only when there are parameters, as papermill does)."""
    nb.metadata.setdefault("papermill", {})
    if not parameters:
        return nb
    from papermill.parameterize import parameterize_notebook

    for cell in nb.cells:  # papermill's loader does this; its tag lookup relies on it
        cell.metadata.setdefault("tags", [])
    return parameterize_notebook(nb, parameters, kernel_name=KERNEL_NAME, language="python")


def _tagged_index(nb: NotebookNode, tag: str) -> int | None:
    for i, cell in enumerate(nb.cells):
        if tag in cell.get("metadata", {}).get("tags", []):
            return i
    return None


def _failure(
    cls: type[NotebookFailed],
    nb: NotebookNode,
    executed_index: int | None,
    injected: int | None,
    ename: str,
    evalue: str,
    traceback: str = "",
) -> NotebookFailed:
    index = executed_index if executed_index is not None else 0
    source_index = index
    if injected is not None and index >= injected:
        # Injected cell itself → report at the parameters cell just before it (or 0).
        source_index = max(index - 1, 0)
    excerpt = _excerpt(nb.cells[index].source) if index < len(nb.cells) else ""
    return cls(
        source_index,
        excerpt,
        ename,
        evalue,
        notebook=nbformat.writes(nb).encode("utf-8"),
        executed_cell_index=index,
        traceback=traceback,
    )


def _excerpt(source: str) -> str:
    """First non-blank, non-comment line of a cell, shortened: enough to recognise it."""
    lines = [ln.strip() for ln in source.splitlines() if ln.strip()]
    code = [ln for ln in lines if not ln.startswith("#")] or lines
    text = code[0] if code else ""
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


def _startup_timeout(deadline: float | None) -> float:
    if deadline is None:
        return KERNEL_STARTUP_SECONDS
    return max(1.0, min(KERNEL_STARTUP_SECONDS, deadline - time.monotonic()))


def _fmt(seconds: float | None) -> str:
    return "∞" if seconds is None else f"{seconds:g}"
