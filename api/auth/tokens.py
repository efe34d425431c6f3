"""Bearer tokens: issued by the CLI, stored hashed, checked in constant time.

A token is ``pmj_<random>``; only HMAC-SHA256(server secret, token) is stored, in
``$PMJOBS_HOME/tokens.json``, with the token's last four characters as a hint for listings.
Each token grants one tenant, optionally a set of projects, a set of scopes (``read``,
``write``), and names its user (the job's ``submittedBy``). It may expire and may be revoked;
the API re-reads the file whenever it changes, so a revocation holds on the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api.auth.scopes import DEFAULT_SCOPE, Scope, expand
from flows.steps.storage import write_bytes_atomic

try:  # serialises writers across processes (the CLI, the supervisor); POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows: in-process lock only
    fcntl = None  # type: ignore[assignment]

TOKEN_PREFIX = "pmj_"
_MAX_TOKEN_LENGTH = 200
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class TokenRejected(Exception):
    """The token is not accepted; the message says why in words a person understands."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, the projects (empty = all of the tenant's), the user, what
    the token may do and its own request-rate limit (None: the server's default)."""

    tenant: str
    user: str
    projects: tuple[str, ...] = ()
    token_id: str = ""
    scopes: frozenset[Scope] = frozenset({Scope.READ, Scope.WRITE})
    rate_limit_per_minute: int | None = None

    def can_see(self, tenant_id: str, project_id: str | None = None) -> bool:
        if tenant_id != self.tenant:
            return False
        return project_id is None or not self.projects or project_id in self.projects

    def has_scope(self, scope: Scope) -> bool:
        return scope in self.scopes


@dataclass
class _Record:
    tenant: str
    user: str
    projects: list[str] = field(default_factory=list)
    created: str = ""
    token_id: str = ""
    scopes: list[str] = field(default_factory=lambda: [DEFAULT_SCOPE.value])
    expires: str | None = None
    revoked: str | None = None
    hint: str = ""
    rate_limit_per_minute: int | None = None

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> _Record:
        """Tolerates keys a newer pmjobs may have written."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def public(self) -> dict[str, Any]:
        """What ``pmjobs token list`` shows: everything but the digest; of the token, at most
        its last four characters."""
        return {
            "tokenId": self.token_id,
            "tenant": self.tenant,
            "user": self.user,
            "projects": list(self.projects),
            "scopes": sorted(s.value for s in expand(self.scopes)),
            "created": self.created,
            "expires": self.expires,
            "revoked": self.revoked,
            "last4": self.hint,
            "rateLimitPerMinute": self.rate_limit_per_minute,
        }


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` -> a positive timedelta."""
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration; use a number and s, m, h, d or w (e.g. 30d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds <= 0:
        raise ValueError(f"{text!r}: the duration must be positive")
    return timedelta(seconds=seconds)


def parse_instant(text: str) -> datetime:
    """An ISO 8601 date or date-time; without a zone it is UTC."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date-time (e.g. 2030-01-31T12:00Z)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _instant(value: str | None) -> datetime | None:
    return parse_instant(value) if value else None


class TokenStore:
    """File-backed token registry; re-reads the file when another process (the CLI) changed it."""

    def __init__(self, home: Path) -> None:
        self._path = home / "tokens.json"
        self._lock_path = home / "tokens.lock"
        self._secret_path = home / "secret.key"
        self._lock = threading.Lock()
        self._version: tuple[int, int, int] | None = None
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

    def _refresh(self, force: bool = False) -> None:
        """Re-read the file when it is another file or another version than the one loaded:
        writers replace it atomically, so inode, size and mtime (ns) tell a change apart."""
        try:
            st = self._path.stat()
        except FileNotFoundError:
            self._records, self._version = {}, None
            return
        version = (st.st_ino, st.st_size, st.st_mtime_ns)
        if force or version != self._version:
            raw = json.loads(self._path.read_text() or "{}")
            self._records = {k: _Record.from_json(v) for k, v in raw.items()}
            self._version = version

    @contextmanager
    def _writing(self) -> Iterator[dict[str, _Record]]:
        """Read-modify-write under an exclusive lock shared with other processes."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, self._lock_path.open("a") as lock_file:
            if fcntl is not None:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                self._refresh(force=True)
                yield self._records
                payload = {k: asdict(v) for k, v in self._records.items()}
                write_bytes_atomic(self._path, json.dumps(payload, indent=2).encode())
                os.chmod(self._path, 0o600)
                self._version = None
            finally:
                if fcntl is not None:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def create(
        self,
        tenant: str,
        user: str,
        projects: list[str] | None = None,
        *,
        scopes: list[str] | None = None,
        expires_at: datetime | None = None,
        rate_limit_per_minute: int | None = None,
    ) -> str:
        granted = sorted(s.value for s in expand(scopes or [DEFAULT_SCOPE.value]))
        if expires_at is not None and expires_at.tzinfo is None:
            expires_at = expires_at.replace(tzinfo=UTC)
        if rate_limit_per_minute is not None and rate_limit_per_minute < 0:
            raise ValueError("the rate limit must be 0 (unlimited) or more requests per minute")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = _Record(
            tenant=tenant,
            user=user,
            projects=list(projects or []),
            created=datetime.now(UTC).isoformat(),
            token_id=secrets.token_hex(4),
            scopes=granted,
            expires=expires_at.astimezone(UTC).isoformat() if expires_at else None,
            hint=token[-4:],
            rate_limit_per_minute=rate_limit_per_minute,
        )
        with self._writing() as records:
            records[self._digest(token)] = record
        return token

    def list_tokens(self) -> list[dict[str, Any]]:
        with self._lock:
            self._refresh()
            records = list(self._records.values())
        return [r.public() for r in sorted(records, key=lambda r: r.created)]

    def revoke(self, ref: str) -> dict[str, Any]:
        """Revoke by token id or by the token itself; returns the revoked token's listing."""
        ref = ref.strip()
        with self._writing() as records:
            if ref.startswith(TOKEN_PREFIX):
                digest = self._digest(ref)
                matches = [r for d, r in records.items() if hmac.compare_digest(d, digest)]
            else:
                matches = [r for r in records.values() if r.token_id and r.token_id == ref]
            if not matches:
                raise LookupError(f"no token matches {ref[:12]!r}; `pmjobs token list` shows ids")
            if len(matches) > 1:
                raise LookupError(f"{len(matches)} tokens have id {ref!r}; revoke by the token")
            record = matches[0]
            if record.revoked is None:
                record.revoked = datetime.now(UTC).isoformat()
            return record.public()

    def authenticate(self, token: str, now: datetime | None = None) -> Principal:
        """The token's principal, or :class:`TokenRejected` saying why not."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN_LENGTH:
            raise TokenRejected("The bearer token is not valid.")
        digest = self._digest(token)
        with self._lock:
            self._refresh()
            record = self._records.get(digest)
            stored = digest if record is not None else "0" * len(digest)
        # the lookup is by a keyed digest; compare it again in constant time all the same
        if record is None or not hmac.compare_digest(stored, digest):
            raise TokenRejected("The bearer token is not valid.")
        if record.revoked:
            raise TokenRejected(
                f"The bearer token was revoked on {record.revoked}; ask for a new one."
            )
        expires = _instant(record.expires)
        if expires is not None and (now or datetime.now(UTC)) >= expires:
            raise TokenRejected(
                f"The bearer token expired on {expires.isoformat()}; create a new one with "
                "`pmjobs token create`."
            )
        return Principal(
            tenant=record.tenant,
            user=record.user,
            projects=tuple(record.projects),
            token_id=record.token_id,
            scopes=expand(record.scopes),
            rate_limit_per_minute=record.rate_limit_per_minute,
        )

    def verify(self, token: str) -> Principal | None:
        try:
            return self.authenticate(token)
        except TokenRejected:
            return None
