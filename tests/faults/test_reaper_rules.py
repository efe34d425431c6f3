"""The reaper's rules and the crash wording, as pure functions (no stack needed)."""

from __future__ import annotations

import uuid

import pytest

from api.jobs.status import failure_reason
from executors.reaper import (
    NODE_LOST,
    PROCESS_EXITED,
    Limits,
    ProcessView,
    RunView,
    decide,
    parse_infrastructure_pid,
)

NOW = 1_000_000.0
LIMITS = Limits()
ALIVE = ProcessView(alive=True, orphaned=False)
ORPHAN = ProcessView(alive=True, orphaned=True)
GONE = ProcessView(alive=False, orphaned=False)


def _run(state: str = "RUNNING", since: float = 60.0, pid: int | None = 42) -> RunView:
    return RunView(
        id=uuid.uuid4(),
        state=state,
        state_since=NOW - since,
        message="user stop",
        began=NOW - 120,
        pid=pid,
        local=True,
        node="node-1",
    )


def test_running_job_with_live_process_is_left_alone() -> None:
    assert decide(_run(), ALIVE, False, NOW, LIMITS) is None
    assert decide(_run(), None, False, NOW, LIMITS) is None  # not on this host, node fresh


def test_dead_process_crashes_the_run() -> None:
    action = decide(_run(), GONE, False, NOW, LIMITS)
    assert action is not None and (action.kind, action.message) == ("crash", PROCESS_EXITED)


def test_lost_node_crashes_and_kills_what_is_left() -> None:
    orphan = decide(_run(), ORPHAN, False, NOW, LIMITS)
    assert orphan is not None and (orphan.kind, orphan.message, orphan.kill) == (
        "crash",
        NODE_LOST,
        True,
    )
    stale = decide(_run(), None, True, NOW, LIMITS)
    assert stale is not None and (stale.message, stale.kill) == (NODE_LOST, False)
    dead = decide(_run(), GONE, True, NOW, LIMITS)
    assert dead is not None and dead.message == NODE_LOST


def test_cancelling_run_gets_time_then_is_killed_and_cancelled() -> None:
    assert decide(_run("CANCELLING", since=1), ALIVE, False, NOW, LIMITS) is None
    late = decide(
        _run("CANCELLING", since=LIMITS.cancel_grace_seconds + 1), ALIVE, False, NOW, LIMITS
    )
    assert late is not None and (late.kind, late.kill) == ("kill", True)
    # process gone: the worker may still be reporting, so wait before marking Cancelled
    assert decide(_run("CANCELLING", since=1), GONE, False, NOW, LIMITS) is None
    done = decide(_run("CANCELLING", since=LIMITS.settle_seconds + 1), GONE, False, NOW, LIMITS)
    assert done is not None and (done.kind, done.message) == ("cancel", "user stop")
    orphan = decide(_run("CANCELLING", since=1), ORPHAN, False, NOW, LIMITS)
    assert orphan is not None and orphan.kill


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("vm:123", ("vm", 123)), ("123", (None, 123)), (None, (None, None)), ("x:y", (None, None))],
)
def test_infrastructure_pid_forms(value: str | None, parsed: tuple[object, object]) -> None:
    assert parse_infrastructure_pid(value) == parsed


@pytest.mark.parametrize(
    ("state", "message", "reason"),
    [
        ("CRASHED", "crashed: node lost", "crashed: node lost"),
        (
            "CRASHED",
            "Process exited with status code: -9. Process exited due to a SIGKILL signal.",
            "crashed: job process exited (signal 9)",
        ),
        (
            "CRASHED",
            "Flow run infrastructure exited with non-zero status code 1. Unexpected.",
            "crashed: job process exited (exit code 1)",
        ),
        ("CRASHED", "Worker went away", "crashed: Worker went away"),
        ("FAILED", "Timed out after 1 minute(s)", "Timed out after 1 minute(s)"),
    ],
)
def test_failure_reason(state: str, message: str, reason: str) -> None:
    assert failure_reason(state, state.title(), message) == reason
