"""Settings for every pmjobs process, read from the environment (prefix ``PMJOBS_``).

One class serves the API, the supervisor and the workers so that a value set once in the
environment means the same thing everywhere.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PMJOBS_", extra="ignore")

    home: Path = Field(
        default=Path(".pmjobs"), description="Data folder: Prefect DB, datasets, artifacts, tokens."
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    prefect_host: str = "127.0.0.1"
    prefect_port: int = 4200
    prefect_api_url: str | None = Field(
        default=None, description="Use an existing Prefect server instead of starting one."
    )
    database_url: str | None = Field(
        default=None,
        description="Prefect database (postgresql+asyncpg://...); default SQLite in home.",
    )
    nodes: int = Field(
        default=1, ge=1, le=16, description="Execution nodes (Prefect workers) to start."
    )
    node_capacity: int = Field(default=2, ge=1, le=64, description="Concurrent jobs per node.")
    work_pool: str = "pmjobs"
    locale: str = Field(
        default="tr", description="Human-readable values: 'tr' (as documented) or 'en'."
    )
    public_url: str | None = Field(default=None, description="Base URL put into downloadUrl links.")
    max_upload_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1, description="Largest dataset upload (413 above it)."
    )
    max_decompressed_bytes: int = Field(
        default=4 * 1024 * 1024 * 1024,
        ge=1,
        description="Largest XES.gz after decompression (a gzip bomb is refused above it).",
    )
    max_csv_line_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1024, description="Longest line of an uploaded CSV."
    )
    max_columns: int = Field(
        default=5000, ge=4, description="Most columns (attributes) an uploaded log may have."
    )
    cancel_grace_seconds: float = Field(
        default=30.0, description="Graceful cancel: time a job has to reach a stage boundary."
    )
    mining_engine: Literal["fast", "pm4py"] = Field(
        default="fast",
        description="pm4py numbers from pmjobs' exact fast paths, or from pm4py itself (to check).",
    )

    rate_limit_per_minute: int = Field(
        default=3000,
        ge=0,
        description="Requests per minute per token (0: unlimited); enforced per API process. "
        "A token's own limit (`pmjobs token create --rate-limit`) replaces it.",
    )
    rate_limit_burst: int = Field(
        default=1000,
        ge=0,
        description="Requests a token may send at once before the rate applies (0: a minute's).",
    )

    smtp_host: str | None = Field(default=None, description="SMTP server for notifications.")
    smtp_port: int = 25
    smtp_security: str = Field(default="none", description="none, starttls or ssl.")
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_sender: str = "pmjobs@localhost"
    notify_poll_seconds: float = 2.0

    @property
    def resolved_home(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def prefect_url(self) -> str:
        return self.prefect_api_url or f"http://{self.prefect_host}:{self.prefect_port}/api"

    @property
    def api_base_url(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")


@lru_cache
def get_settings() -> Settings:
    return Settings()
