"""Every error leaves the API as ``application/problem+json`` (RFC 9457) with a human detail."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic.alias_generators import to_camel
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("pmjobs.api")

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(self, status: int, detail: str, *, title: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.extra = extra
        self.headers: dict[str, str] = {}


class NotFound(Problem):
    def __init__(self, what: str = "Job") -> None:
        super().__init__(404, f"{what} not found.")


class Conflict(Problem):
    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(409, detail, **extra)


class Unprocessable(Problem):
    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(422, detail, **({"field": field} if field else {}))


class ServiceUnavailable(Problem):
    def __init__(self, detail: str) -> None:
        super().__init__(503, detail)
        self.headers["Retry-After"] = "5"


def problem_response(
    status: int, detail: str, *, title: str | None = None, instance: str | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _field_name(loc: tuple[Any, ...] | list[Any]) -> str:
    """The field as the client spells it: path parameters are camelCase (``jobId``)."""
    in_path = bool(loc) and loc[0] == "path"
    parts = [
        to_camel(str(p)) if in_path else str(p)
        for p in loc
        if p not in ("body", "query", "path", "header")
    ]
    return ".".join(parts) or "request"


def validation_problem(request: Request, errors: list[dict[str, Any]]) -> JSONResponse:
    """422 naming every invalid field, from pydantic/FastAPI error dicts."""
    fields = [
        {"field": _field_name(e.get("loc", ())), "message": e.get("msg", "invalid value")}
        for e in errors
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in fields) or "Invalid request."
    return problem_response(
        422, detail, title="Invalid request", instance=request.url.path, errors=fields
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        response = problem_response(
            exc.status, exc.detail, title=exc.title, instance=request.url.path, **exc.extra
        )
        response.headers.update(exc.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_problem(request, list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No endpoint at {request.url.path}."
        if exc.status_code == 405:
            detail = f"Method {request.method} is not allowed on {request.url.path}."
        response = problem_response(exc.status_code, detail, instance=request.url.path)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "Internal error; it has been logged.", instance=request.url.path
        )
