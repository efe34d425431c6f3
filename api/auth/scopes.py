"""Token scopes: what a token may do, separately from where (tenant, projects) it may do it.

``read`` sees jobs, results, datasets, notebooks, pipelines and the queue; ``write`` also
changes things (submit, cancel, retry, re-prioritise, upload). ``write`` implies ``read``, and a
token created without ``--scope`` gets ``write`` so that older tokens keep working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"


DEFAULT_SCOPE = Scope.WRITE
_IMPLIES: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.WRITE: frozenset({Scope.READ, Scope.WRITE}),
}
# the key an operation of the OpenAPI schema carries, naming the scope it requires
OPENAPI_KEY = "x-pmjobs-scope"


def parse_scope(value: str) -> Scope:
    """A scope from user input, with a message naming the valid ones."""
    try:
        return Scope(value.strip().lower())
    except ValueError:
        valid = ", ".join(s.value for s in Scope)
        raise ValueError(f"unknown scope {value!r}; valid scopes: {valid}") from None


def expand(scopes: Iterable[str]) -> frozenset[Scope]:
    """Every scope the given ones grant (``write`` grants ``read`` too)."""
    granted: set[Scope] = set()
    for value in scopes:
        granted |= _IMPLIES[parse_scope(value)]
    return frozenset(granted)


# dependency callables -> the scope they require; filled by api.deps where they are defined
_REQUIRES: dict[Callable[..., Any], Scope] = {}


def requires(scope: Scope) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a dependency as requiring ``scope`` (so the schema can declare it)."""

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        _REQUIRES[func] = scope
        return func

    return mark


def _required(dependant: Dependant) -> set[Scope]:
    found = {_REQUIRES[dependant.call]} if dependant.call in _REQUIRES else set()
    for sub in dependant.dependencies:
        found |= _required(sub)
    return found


def route_scope(route: APIRoute) -> Scope | None:
    """The strongest scope any dependency of the route requires (None: no token needed)."""
    found = _required(route.dependant)
    if Scope.WRITE in found:
        return Scope.WRITE
    return Scope.READ if found else None


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI >= 0.150 keeps them there)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (router := getattr(route, "original_router", None)) is not None:
            yield from _api_routes(router.routes)


def declare_in_openapi(app: FastAPI) -> None:
    """Put each operation's required scope into the schema (``x-pmjobs-scope``), read from the
    route's own dependencies, so the documentation cannot drift from what is enforced."""
    for route in _api_routes(app.routes):
        scope = route_scope(route)
        if scope is not None:
            route.openapi_extra = {**(route.openapi_extra or {}), OPENAPI_KEY: scope.value}
    app.openapi_schema = None
