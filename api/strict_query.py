"""Unknown query parameters are refused, as unknown body fields are (``RequestModel``).

A misspelt filter (``?staus=Failed``) would otherwise be ignored silently and the client would
get every job back; a 422 naming the parameter and the ones the endpoint takes says what to fix.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

_known: dict[int, frozenset[str]] = {}


def _query_names(dependant: Any) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _declared(route: APIRoute) -> frozenset[str]:
    key = id(route)
    if key not in _known:
        _known[key] = frozenset(_query_names(route.dependant))
    return _known[key]


def reject_unknown_query(request: Request) -> None:
    """An app-wide dependency: 422 for a query parameter the endpoint does not declare."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = _declared(route)
    unknown = sorted({name for name in request.query_params if name not in declared})
    if not unknown:
        return
    takes = ", ".join(sorted(declared)) or "none"
    raise RequestValidationError(
        [
            {
                "loc": ("query", name),
                "msg": f"unknown query parameter (this endpoint takes: {takes})",
                "type": "extra_forbidden",
            }
            for name in unknown
        ]
    )
