"""Token store: hashing, scopes, expiry, revocation seen by another process, listings."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from api.auth.scopes import OPENAPI_KEY, Scope, expand, parse_scope
from api.auth.tokens import TokenRejected, TokenStore, parse_duration, parse_instant


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


def _reason(store: TokenStore, token: str, now: datetime | None = None) -> str:
    with pytest.raises(TokenRejected) as info:
        store.authenticate(token, now=now)
    return str(info.value)


def test_only_the_digest_is_stored_and_the_token_authenticates(home: Path) -> None:
    store = TokenStore(home)
    token = store.create("t1", "alice", ["p1"])
    stored = (home / "tokens.json").read_text()
    assert token not in stored and token[4:] not in stored
    principal = store.authenticate(token)
    assert (principal.tenant, principal.user, principal.projects) == ("t1", "alice", ("p1",))
    assert principal.scopes == {Scope.READ, Scope.WRITE}  # default: write, as before scopes
    assert principal.can_see("t1", "p1") and not principal.can_see("t1", "p2")
    assert (home / "tokens.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "forged",
    ["", "garbage", "pmj_", "pmj_" + "A" * 43, "x" + "pmj_abc", "pmj_" + "A" * 300],
)
def test_unknown_tokens_are_rejected(home: Path, forged: str) -> None:
    store = TokenStore(home)
    token = store.create("t1", "alice")
    assert _reason(store, forged) == "The bearer token is not valid."
    assert _reason(store, token[:-1] + ("A" if token[-1] != "A" else "B")).endswith("not valid.")
    assert store.verify(forged) is None and store.verify(token) is not None


def test_a_token_of_another_server_secret_is_rejected(tmp_path: Path) -> None:
    token = TokenStore(tmp_path / "one").create("t1", "alice")
    other = TokenStore(tmp_path / "two")
    other.create("t1", "alice")
    assert _reason(other, token) == "The bearer token is not valid."


def test_read_scope_is_read_only(home: Path) -> None:
    store = TokenStore(home)
    read = store.authenticate(store.create("t1", "r", scopes=["read"]))
    write = store.authenticate(store.create("t1", "w", scopes=["write"]))
    assert read.has_scope(Scope.READ) and not read.has_scope(Scope.WRITE)
    assert write.has_scope(Scope.READ) and write.has_scope(Scope.WRITE)


def test_scope_parsing() -> None:
    assert parse_scope(" Write ") is Scope.WRITE
    assert expand(["read"]) == {Scope.READ}
    assert expand(["write"]) == {Scope.READ, Scope.WRITE}
    with pytest.raises(ValueError, match="valid scopes: read, write"):
        parse_scope("admin")


def test_expiry(home: Path) -> None:
    store = TokenStore(home)
    at = datetime(2030, 1, 31, 12, 0, tzinfo=UTC)
    token = store.create("t1", "alice", expires_at=at)
    assert store.authenticate(token, now=at - timedelta(seconds=1)).user == "alice"
    reason = _reason(store, token, now=at)
    assert "expired on 2030-01-31T12:00:00+00:00" in reason and "pmjobs token create" in reason
    # a naive expiry is UTC
    naive = store.create("t1", "bob", expires_at=datetime(2030, 1, 31, 12, 0))
    assert "expired" in _reason(store, naive, now=at)


def test_revocation_is_seen_by_a_running_reader(home: Path) -> None:
    """The API process keeps its store; the CLI revokes through another one."""
    api_store = TokenStore(home)
    first = TokenStore(home).create("t1", "alice")
    second = TokenStore(home).create("t1", "bob")
    assert api_store.authenticate(first).user == "alice"
    token_id = api_store.authenticate(first).token_id
    listing = TokenStore(home).revoke(token_id)
    assert listing["tokenId"] == token_id and listing["revoked"]
    assert "revoked on" in _reason(api_store, first)
    assert api_store.authenticate(second).user == "bob"
    TokenStore(home).revoke(second)  # by the token itself
    assert "revoked" in _reason(api_store, second)
    # revoking twice keeps the first date
    assert TokenStore(home).revoke(token_id)["revoked"] == listing["revoked"]


def test_revoke_unknown_reference(home: Path) -> None:
    store = TokenStore(home)
    store.create("t1", "alice")
    with pytest.raises(LookupError, match="no token matches"):
        store.revoke("deadbeef")
    with pytest.raises(LookupError, match="no token matches"):
        store.revoke("pmj_not-a-token")


def test_listing_never_shows_a_token_or_its_digest(home: Path) -> None:
    store = TokenStore(home)
    tokens = [
        store.create("t1", "alice", ["p1", "p2"], scopes=["read"]),
        store.create("t2", "bob", expires_at=datetime(2031, 1, 1, tzinfo=UTC)),
    ]
    listing = store.list_tokens()
    text = json.dumps(listing)
    digests = json.loads((home / "tokens.json").read_text()).keys()
    for token in tokens:
        assert token not in text and token[:-4] not in text
    for digest in digests:
        assert digest not in text
    assert [t["last4"] for t in listing] == [t[-4:] for t in tokens]
    assert listing[0]["scopes"] == ["read"] and listing[0]["projects"] == ["p1", "p2"]
    assert listing[1]["scopes"] == ["read", "write"]
    assert listing[1]["expires"] == "2031-01-01T00:00:00+00:00"
    assert all(t["revoked"] is None for t in listing)


def test_records_written_before_scopes_existed_keep_working(home: Path) -> None:
    """tokens.json of an older pmjobs: no scopes, expiry, hint; those tokens keep write."""
    store = TokenStore(home)
    token = store.create("t1", "alice")
    raw = json.loads((home / "tokens.json").read_text())
    old = {
        digest: {k: record[k] for k in ("tenant", "user", "projects", "created", "token_id")}
        for digest, record in raw.items()
    }
    (home / "tokens.json").write_text(json.dumps(old))
    principal = TokenStore(home).authenticate(token)
    assert principal.has_scope(Scope.WRITE) and principal.rate_limit_per_minute is None


def test_concurrent_creates_lose_nothing(home: Path) -> None:
    tokens: list[str] = []

    def create(i: int) -> None:
        tokens.append(TokenStore(home).create("t1", f"user{i}"))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = TokenStore(home)
    assert sorted(store.authenticate(t).user for t in tokens) == sorted(
        f"user{i}" for i in range(12)
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 1209600)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["30", "d", "-1d", "0d", "1y", "30 days"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_instant() -> None:
    assert parse_instant("2030-01-31T12:00Z") == datetime(2030, 1, 31, 12, tzinfo=UTC)
    assert parse_instant("2030-01-31") == datetime(2030, 1, 31, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_instant("next tuesday")


def test_every_endpoint_declares_its_scope() -> None:
    """Changing endpoints need ``write``, reading ones ``read``: read from the routes' own
    dependencies, as the OpenAPI schema shows them."""
    from api.main import create_app

    schema = create_app().openapi()
    declared = {
        (method.upper(), path): op.get(OPENAPI_KEY)
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }
    assert declared.pop(("GET", "/health")) is None
    assert len(declared) >= 15, schema["paths"].keys()
    for (method, path), scope in declared.items():
        expected = "read" if method == "GET" else "write"
        assert scope == expected, (method, path, scope)
