"""The one mapping between Prefect and the contract's vocabulary.

Job status is derived from the Prefect state type (CONTRACT.md "Points the original leaves
open"); priority is the work queue a run sits in; job type is the flow's name.
"""

from __future__ import annotations

import re
from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "Queued"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


class Priority(StrEnum):
    CRITICAL = "Critical"
    HIGH = "High"
    NORMAL = "Normal"
    LOW = "Low"

    @property
    def queue(self) -> str:
        return self.value.lower()

    @property
    def rank(self) -> int:
        """Work-queue priority in the pool: 1 is taken first."""
        return list(Priority).index(self) + 1

    @classmethod
    def from_queue(cls, queue_name: str | None) -> Priority:
        for priority in cls:
            if priority.queue == queue_name:
                return priority
        return cls.NORMAL


class JobType(StrEnum):
    PROCESS_MINING = "ProcessMining"
    DATA_ENRICHMENT = "DataEnrichment"
    NOTEBOOK = "Notebook"
    ANALYSIS = "Analysis"


_STATUS_BY_STATE_TYPE: dict[str, JobStatus] = {
    "SCHEDULED": JobStatus.QUEUED,
    "PENDING": JobStatus.QUEUED,
    "RUNNING": JobStatus.RUNNING,
    "CANCELLING": JobStatus.RUNNING,
    "PAUSED": JobStatus.RUNNING,
    "COMPLETED": JobStatus.COMPLETED,
    "FAILED": JobStatus.FAILED,
    "CRASHED": JobStatus.FAILED,
    "CANCELLED": JobStatus.CANCELLED,
}


def job_status(state_type: str | None) -> JobStatus:
    """Prefect state type -> job status. Late is a SCHEDULED state and TimedOut a FAILED one."""
    if state_type is None:
        return JobStatus.QUEUED
    key = state_type.value if hasattr(state_type, "value") else str(state_type)
    return _STATUS_BY_STATE_TYPE[key.upper()]


_EXIT_CODE = re.compile(r"exited with (?:non-zero )?status code:? (-?\d+)")


def failure_reason(state_type: str, state_name: str, message: str | None) -> str:
    """A failed job's ``error``: its state's message, except that a crash always reads
    "crashed: …". The reaper writes that itself; Prefect's worker words a killed process its
    own way ("Flow run infrastructure exited with non-zero status code -9. …", or "Process
    exited with status code: -9. …")."""
    reason = message or state_name
    if str(getattr(state_type, "value", state_type)).upper() != "CRASHED":
        return reason
    if reason.startswith("crashed:"):
        return reason
    code = _EXIT_CODE.search(reason)
    if code:
        number = int(code.group(1))
        how = f"signal {-number}" if number < 0 else f"exit code {number}"
        return f"crashed: job process exited ({how})"
    return f"crashed: {reason}"


def state_types(status: JobStatus) -> list[str]:
    """Job status -> the Prefect state types it covers (for server-side filters)."""
    return [t for t, s in _STATUS_BY_STATE_TYPE.items() if s is status]


TERMINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}


def is_finished(state_type: str | None) -> bool:
    """The run has ended (its progress report and outputs no longer change)."""
    return job_status(state_type) in TERMINAL
