"""Settings for every pmjobs process, read from the environment (prefix ``PMJOBS_``).

One class serves the API, the supervisor and the workers so that a value set once in the
environment means the same thing everywhere.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    max_upload_bytes: int = 512 * 1024 * 1024
    cancel_grace_seconds: float = Field(
        default=30.0, description="Graceful cancel: time a job has to reach a stage boundary."
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
