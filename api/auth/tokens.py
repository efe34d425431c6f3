"""Bearer tokens: issued by the CLI, stored hashed, checked in constant time.

A token is ``pmj_<random>``; only HMAC-SHA256(server secret, token) is stored, in
``$PMJOBS_HOME/tokens.json``. Each token grants one tenant, optionally a set of projects, and
names its user (the job's ``submittedBy``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from flows.steps.storage import write_bytes_atomic

TOKEN_PREFIX = "pmj_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, the projects (empty = all of the tenant's) and the user."""

    tenant: str
    user: str
    projects: tuple[str, ...] = ()
    token_id: str = ""

    def can_see(self, tenant_id: str, project_id: str | None = None) -> bool:
        if tenant_id != self.tenant:
            return False
        return project_id is None or not self.projects or project_id in self.projects


@dataclass
class _Record:
    tenant: str
    user: str
    projects: list[str] = field(default_factory=list)
    created: str = ""
    token_id: str = ""


class TokenStore:
    """File-backed token registry; re-reads the file when another process (the CLI) changed it."""

    def __init__(self, home: Path) -> None:
        self._path = home / "tokens.json"
        self._secret_path = home / "secret.key"
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._records: dict[str, _Record] = {}
        self._secret: bytes | None = None

    def _load_secret(self) -> bytes:
        if self._secret is None:
            if not self._secret_path.exists():
                self._secret_path.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(self._secret_path, secrets.token_bytes(32))
                os.chmod(self._secret_path, 0o600)
            self._secret = self._secret_path.read_bytes()
        return self._secret

    def _digest(self, token: str) -> str:
        return hmac.new(self._load_secret(), token.encode(), hashlib.sha256).hexdigest()

    def _refresh(self) -> None:
        try:
            mtime = self._path.stat().st_mtime
        except FileNotFoundError:
            self._records, self._mtime = {}, None
            return
        if mtime != self._mtime:
            raw = json.loads(self._path.read_text() or "{}")
            self._records = {k: _Record(**v) for k, v in raw.items()}
            self._mtime = mtime

    def create(self, tenant: str, user: str, projects: list[str] | None = None) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._lock:
            self._refresh()
            record = _Record(
                tenant=tenant,
                user=user,
                projects=list(projects or []),
                created=datetime.now(UTC).isoformat(),
                token_id=secrets.token_hex(4),
            )
            self._records[self._digest(token)] = record
            payload = {k: asdict(v) for k, v in self._records.items()}
            write_bytes_atomic(self._path, json.dumps(payload, indent=2).encode())
            os.chmod(self._path, 0o600)
            self._mtime = None
        return token

    def verify(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        digest = self._digest(token)
        with self._lock:
            self._refresh()
            for stored, record in self._records.items():
                if hmac.compare_digest(stored, digest):
                    return Principal(
                        tenant=record.tenant,
                        user=record.user,
                        projects=tuple(record.projects),
                        token_id=record.token_id,
                    )
        return None
