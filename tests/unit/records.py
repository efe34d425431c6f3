"""A ``JobRecord`` as the gateway builds one, for unit tests of the code that reads records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from api.prefect_gateway import JobRecord


def job_record(state_type: str = "COMPLETED", **fields: Any) -> JobRecord:
    """A finished-by-default Analysis run; any field can be given."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "name": "job",
        "job_type": "Analysis",
        "state_type": state_type,
        "state_name": state_type.title(),
        "state_message": None,
        "queue": "normal",
        "tags": ("pmjobs",),
        "parameters": {"parameters": {}, "job": {}},
        "deployment_id": None,
        "created": now,
        "updated": now,
        "expected_start": now,
        "start_time": now,
        "end_time": now,
        "total_run_time": 0.0,
        "idempotency_key": None,
    }
    return JobRecord(**(values | fields))
