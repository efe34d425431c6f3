"""Upload size limits enforced while the body streams in (datasets and notebooks).

FastAPI reads a multipart form before the endpoint (or its dependencies) run; these routes check
the token first and count the body as it arrives, so neither an unauthorised nor an oversized
upload makes the server receive and store a whole file.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import Message, Receive

from api.deps import authorize_before_body
from api.settings import Settings, get_settings

_MULTIPART_SLACK = 64 * 1024  # multipart headers and the small form fields around the file


def _human_bytes(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


class UploadTooLarge(HTTPException):
    """An HTTPException, so FastAPI's form reader lets it through to the problem handler."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"The upload is larger than {_human_bytes(limit)}, the most this server accepts "
            "for one file.",
        )


def _settings(request: Request) -> Settings:
    """The settings the route's SettingsDep resolves to (honours dependency overrides)."""
    return request.app.dependency_overrides.get(get_settings, get_settings)()


def _counting(receive: Receive, limit: int) -> Receive:
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit + _MULTIPART_SLACK:
                raise UploadTooLarge(limit)
        return message

    return counted


class StreamLimitedRoute(APIRoute):
    """Enforces ``max_upload_bytes`` (or a subclass's :meth:`limit`) while the body streams in.

    FastAPI parses a multipart form (spooling the file to a temporary file) before the endpoint
    runs, so a check in the endpoint alone would come only after the whole body was received.
    Here a declared Content-Length over the limit is refused before anything is read, and a
    body without one is counted as it arrives and refused as soon as it passes the limit; the
    form parser then closes (and so deletes) its temporary file.
    """

    @staticmethod
    def limit(settings: Settings) -> int:
        return settings.max_upload_bytes

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def limited(request: Request) -> Response:
            if request.method == "POST":
                await authorize_before_body(request)
                limit = self.limit(_settings(request))
                declared = request.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit + _MULTIPART_SLACK:
                    raise UploadTooLarge(limit)
                request = Request(request.scope, _counting(request.receive, limit))
            return await handler(request)

        return limited
