"""executors.child.preloaded_flow: when a forked child may use the flow its fork server
preloaded instead of loading the deployment's entrypoint afresh (pure code; no stack)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import flows.process_mining
from executors import child, forkserver_preload

ROOT = Path(__file__).resolve().parents[2]
PULL = "prefect.deployments.steps.set_working_directory"


def deployment(
    entrypoint: str = "flows/process_mining.py:process_mining",
    steps: list[dict[str, Any]] | None = None,
) -> SimpleNamespace:
    if steps is None:
        steps = [{PULL: {"directory": "{{ $PMJOBS_ROOT }}"}}]
    return SimpleNamespace(entrypoint=entrypoint, pull_steps=steps)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("PMJOBS_ROOT", str(ROOT))
    cwd = os.getcwd()
    os.chdir(tmp_path)
    yield
    os.chdir(cwd)


def test_prefect_yaml_deployments_use_the_preloaded_flow_in_their_directory() -> None:
    flow = child.preloaded_flow(deployment())
    assert flow is flows.process_mining.process_mining
    assert Path.cwd() == ROOT  # what the set_working_directory pull step would have done


@pytest.mark.parametrize(
    "dep",
    [
        deployment(steps=[]),  # no pull step: Prefect would download/import differently
        deployment(steps=[{PULL: {"directory": "{{ $PMJOBS_ROOT }}"}}, {PULL: {"directory": "/"}}]),
        deployment(steps=[{"prefect.deployments.steps.git_clone": {"repository": "x"}}]),
        deployment(steps=[{PULL: {"directory": "{{ prefect.variables.somewhere }}"}}]),
        deployment(steps=[{PULL: {"directory": "relative/dir"}}]),
        deployment(entrypoint="flows.process_mining:process_mining"),  # module path
        deployment(entrypoint="flows/other.py:process_mining"),  # not preloaded
        deployment(entrypoint="flows/process_mining.py:no_such_flow"),
        deployment(entrypoint="flows/process_mining.py:JobInputError"),  # not a flow
    ],
)
def test_anything_else_is_loaded_the_stock_way(dep: SimpleNamespace) -> None:
    assert child.preloaded_flow(dep) is None


def test_an_edited_flow_file_is_loaded_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    path = Path(flows.process_mining.__file__).resolve()
    module, (mtime, size) = forkserver_preload.PRELOADED_FLOWS[path]
    monkeypatch.setitem(forkserver_preload.PRELOADED_FLOWS, path, (module, (mtime - 1, size)))
    assert child.preloaded_flow(deployment()) is None


def test_every_flow_of_prefect_yaml_is_preloaded() -> None:
    import yaml

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for dep in spec["deployments"]:
        path, _, _ = dep["entrypoint"].rpartition(":")
        assert forkserver_preload.preloaded_module(ROOT / path) is not None, dep["entrypoint"]
        assert child.preloaded_flow(deployment(dep["entrypoint"])) is not None
