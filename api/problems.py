"""Every error leaves the API as ``application/problem+json`` (RFC 9457) with a human detail."""

from __future__ import annotations

import logging
import re
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


# The errors every API operation may answer, as documented in the OpenAPI schema.
_ERRORS = {
    "400": "The body could not be read (e.g. malformed JSON).",
    "401": "Missing or invalid bearer token.",
    "403": "The token lacks the scope this operation needs.",
    "404": "Unknown here, or not visible to this token (tenant, project, job, file).",
    "413": "The request body is too large.",
    "422": "Invalid request; `errors` names each invalid field.",
    "429": "Too many requests with this token; see Retry-After.",
    "503": "The job engine is not reachable right now; see Retry-After.",
}
_BY_ID = {"409": "The object is not in a state that allows this (e.g. already finished)."}
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "field": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def _document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Every operation under /api answers its errors as problem+json; say so in the schema
    (FastAPI would document only a 422 with its own, different, body)."""
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        errors = {**_ERRORS, **(_BY_ID if "{job_id}" in path else {})}
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            for status, description in errors.items():
                documented = responses.get(status, {})
                responses[status] = {
                    "description": documented.get("description") or description,
                    "content": content,
                }
    return schema


def document(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _allowed_methods(request: Request) -> list[str]:
    """Every documented method of the path (Starlette's own ``Allow`` names only those of the
    first route that matched, e.g. GET but not DELETE and PATCH of a job)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods.update(m.upper() for m in operations if m.upper() in _METHODS)
    return sorted(methods)


_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def install(app: FastAPI) -> None:
    document(app)

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
        if exc.status_code == 405:
            allowed = _allowed_methods(request)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            500, "Internal error; it has been logged.", instance=request.url.path
        )
