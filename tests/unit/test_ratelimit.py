"""Token-bucket rate limiter, on a controlled clock; and the 429 it makes the API answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api import problems
from api.auth.tokens import TokenStore
from api.deps import ProjectScope, ProjectWriteScope
from api.ratelimit import RateLimiter, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.hit("k") for _ in range(3)] == [None, None, None]
    wait = limiter.hit("k")
    assert wait == pytest.approx(1.0)  # 60/minute: one more request a second
    clock.now += 0.5
    assert limiter.hit("k") == pytest.approx(0.5)  # a refused request spends nothing
    clock.now += 0.5
    assert limiter.hit("k") is None
    assert limiter.hit("k") == pytest.approx(1.0)
    clock.now += 3600  # an idle hour refills to the burst, not beyond
    assert [limiter.hit("k") for _ in range(4)][-1] == pytest.approx(1.0)


def test_keys_are_independent() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=1, clock=clock)
    assert limiter.hit("a") is None
    assert limiter.hit("a") is not None
    assert limiter.hit("b") is None


def test_zero_disables() -> None:
    limiter = RateLimiter(per_minute=0, burst=0, clock=Clock())
    assert all(limiter.hit("k") is None for _ in range(10_000))
    limited = RateLimiter(per_minute=60, burst=1, clock=Clock())
    assert all(limited.hit("k", override=0) is None for _ in range(100))


def test_a_token_limit_replaces_the_default_and_caps_the_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=6000, burst=1000, clock=clock)
    assert limiter.limits(6) == (6, 6)
    assert limiter.limits(None) == (6000, 1000)
    assert [limiter.hit("k", override=6) for _ in range(6)] == [None] * 6
    assert limiter.hit("k", override=6) == pytest.approx(10.0)
    # a zero burst means one minute's worth
    assert RateLimiter(per_minute=120, burst=0).limits() == (120, 120)


def test_idle_buckets_are_pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    import api.ratelimit as module

    monkeypatch.setattr(module, "_PRUNE_ABOVE", 10)
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock)
    for i in range(10):
        limiter.hit(f"k{i}")
    clock.now += 60  # all full again
    limiter.hit("busy")
    assert list(limiter._buckets) == ["busy"]


def test_negative_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute=-1, burst=1)


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (59.9, "60")])
def test_retry_after_rounds_up(seconds: float, header: str) -> None:
    assert retry_after_header(seconds) == header


def _app(home: Path, limiter: RateLimiter) -> FastAPI:
    """The real dependencies on a minimal app (no Prefect needed for these routes)."""
    app = FastAPI()
    problems.install(app)
    app.state.tokens = TokenStore(home)
    app.state.ratelimiter = limiter

    @app.get("/api/{tenant_id}/{project_id}/ping")
    def ping(principal: ProjectScope) -> dict[str, str]:
        return {"user": principal.user}

    @app.post("/api/{tenant_id}/{project_id}/change")
    def change(reader: ProjectScope, writer: ProjectWriteScope) -> dict[str, str]:
        return {"user": writer.user}

    return app


def test_the_server_default_answers_429_with_retry_after(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token = store.create("t1", "alice")
    other = store.create("t1", "bob")
    client = TestClient(_app(tmp_path, RateLimiter(per_minute=2, burst=2, clock=Clock())))
    auth = {"Authorization": f"Bearer {token}"}
    assert [client.get("/api/t1/p/ping", headers=auth).status_code for _ in range(2)] == [200] * 2
    r = client.get("/api/t1/p/ping", headers=auth)
    assert r.status_code == 429
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["retry-after"] == "30"
    body = r.json()
    assert body["retryAfterSeconds"] == 30 and "2 a minute" in body["detail"], body
    assert token not in r.text
    # another token has its own bucket; a bad token is 401, not 429
    assert client.get("/api/t1/p/ping", headers={"Authorization": f"Bearer {other}"}).json() == {
        "user": "bob"
    }
    assert client.get("/api/t1/p/ping", headers={"Authorization": "Bearer x"}).status_code == 401


def test_a_token_with_its_own_limit(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    slow = store.create("t1", "slow", rate_limit_per_minute=1)
    free = store.create("t1", "free", rate_limit_per_minute=0)
    client = TestClient(_app(tmp_path, RateLimiter(per_minute=3, burst=3, clock=Clock())))
    slow_auth = {"Authorization": f"Bearer {slow}"}
    assert client.get("/api/t1/p/ping", headers=slow_auth).status_code == 200
    r = client.get("/api/t1/p/ping", headers=slow_auth)
    assert r.status_code == 429 and r.headers["retry-after"] == "60"
    free_auth = {"Authorization": f"Bearer {free}"}
    assert {client.get("/api/t1/p/ping", headers=free_auth).status_code for _ in range(20)} == {200}


def test_a_request_spends_one_unit_however_many_scopes_it_checks(tmp_path: Path) -> None:
    """The principal is resolved once per request, so the limiter is hit once."""
    store = TokenStore(tmp_path)
    token = store.create("t1", "alice")
    reader = store.create("t1", "reader", scopes=["read"])
    client = TestClient(_app(tmp_path, RateLimiter(per_minute=2, burst=2, clock=Clock())))
    auth = {"Authorization": f"Bearer {token}"}
    assert [client.post("/api/t1/p/change", headers=auth).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]
    r = client.post("/api/t1/p/change", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403 and r.json()["requiredScope"] == "write"
    # the wall comes first: another tenant's path is 404 even for the missing scope
    r = client.post("/api/t2/p/change", headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 404
