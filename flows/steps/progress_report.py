"""The progress report a running job publishes, and the API reads, through Prefect.

It travels as the ``metadata_`` of the job's Prefect *progress* artifact (whose ``data`` is the
percentage, so the Prefect UI draws a progress bar). Prefect metadata values are strings, so
this class is the single place that encodes and decodes them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class ProgressReport:
    stage: str = "Queued"
    percentage: float = 0.0
    records_processed: int | None = None
    total_records: int | None = None
    error_count: int = 0
    warning_count: int = 0
    node: str | None = None
    pid: int | None = None
    rss_bytes: int | None = None
    peak_rss_bytes: int | None = None
    cpu_ratio: float | None = None
    disk_written_bytes: int | None = None
    started_at: float | None = None  # epoch seconds, when the flow began working
    cancel_requested: bool = False

    def to_metadata(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_metadata(cls, meta: dict[str, str]) -> ProgressReport:
        report = cls()
        for f in fields(cls):
            raw = meta.get(f.name)
            if raw is None:
                continue
            kind = str(f.type)
            try:
                if "bool" in kind:
                    value: object = raw == "True"
                elif "int" in kind:
                    value = int(float(raw))
                elif "float" in kind:
                    value = float(raw)
                else:
                    value = raw
            except ValueError:
                continue
            setattr(report, f.name, value)
        return report
