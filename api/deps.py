"""Dependencies shared by the routers, as ``Annotated`` aliases."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth.scopes import Scope, requires
from api.auth.tokens import Principal, TokenRejected, TokenStore
from api.prefect_gateway import PrefectGateway
from api.problems import NotFound, Problem
from api.ratelimit import RateLimiter, retry_after_header
from api.settings import Settings, get_settings

_bearer = HTTPBearer(auto_error=False, description="A token from `pmjobs token create`.")

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)


def _gateway(request: Request) -> PrefectGateway:
    return request.app.state.gateway


def _tokens(request: Request) -> TokenStore:
    return request.app.state.tokens


SettingsDep = Annotated[Settings, Depends(get_settings)]
GatewayDep = Annotated[PrefectGateway, Depends(_gateway)]


_PRINCIPAL_KEY = "pmjobs.principal"


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller, once per request: 401 without a usable token, 429 over its rate limit."""
    cached = request.scope.get(_PRINCIPAL_KEY)
    if cached is not None:  # already checked (and counted) before the body was read
        return cached
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("Missing bearer token: send 'Authorization: Bearer <token>'.")
    try:
        principal = _tokens(request).authenticate(credentials.credentials)
    except TokenRejected as exc:
        raise _unauthorized(str(exc)) from None
    _spend(request, principal)
    request.scope[_PRINCIPAL_KEY] = principal
    return principal


def _spend(request: Request, principal: Principal) -> None:
    limiter: RateLimiter | None = getattr(request.app.state, "ratelimiter", None)
    if limiter is None:
        return
    wait = limiter.hit(f"token:{principal.token_id}", principal.rate_limit_per_minute)
    if wait is None:
        return
    per_minute, burst = limiter.limits(principal.rate_limit_per_minute)
    retry_after = retry_after_header(wait)
    problem = Problem(
        429,
        f"Too many requests with this token: it may send {per_minute} a minute "
        f"(bursts of {burst}); retry in {retry_after} s.",
        retryAfterSeconds=int(retry_after),
    )
    problem.headers["Retry-After"] = retry_after
    raise problem


def _unauthorized(detail: str) -> Problem:
    problem = Problem(401, detail)
    problem.headers["WWW-Authenticate"] = "Bearer"
    return problem


CurrentPrincipal = Annotated[Principal, Depends(_principal)]

TenantId = Annotated[str, Path(description="Tenant identifier (GUID or slug).")]
ProjectId = Annotated[str, Path(description="Project identifier (GUID or slug).")]


def _need(principal: Principal, scope: Scope, request: Request) -> None:
    """403 naming the missing scope; checked after the tenant wall, so it reveals nothing."""
    if principal.has_scope(scope):
        return
    granted = sorted(s.value for s in principal.scopes)
    raise Problem(
        403,
        f"This token lacks the '{scope.value}' scope that {request.method} "
        f"{request.url.path} needs (it has: {', '.join(granted) or 'none'}); use a token "
        f"created with `pmjobs token create --scope {scope.value}`.",
        requiredScope=scope.value,
        grantedScopes=granted,
    )


@requires(Scope.READ)
def tenant_scope(request: Request, tenant_id: TenantId, principal: CurrentPrincipal) -> Principal:
    """A tenant the token does not grant looks exactly like one that does not exist."""
    if not _ID_RE.match(tenant_id) or not principal.can_see(tenant_id):
        raise NotFound("Tenant")
    _need(principal, Scope.READ, request)
    return principal


@requires(Scope.READ)
def project_scope(
    request: Request, tenant_id: TenantId, project_id: ProjectId, principal: CurrentPrincipal
) -> Principal:
    if not _ID_RE.match(tenant_id) or not _ID_RE.match(project_id):
        raise NotFound("Project")
    if not principal.can_see(tenant_id, project_id):
        raise NotFound("Project")
    _need(principal, Scope.READ, request)
    return principal


TenantScope = Annotated[Principal, Depends(tenant_scope)]
ProjectScope = Annotated[Principal, Depends(project_scope)]


@requires(Scope.WRITE)
def project_write_scope(request: Request, principal: ProjectScope) -> Principal:
    """The project, for a token that may change it (submit, cancel, retry, upload...)."""
    _need(principal, Scope.WRITE, request)
    return principal


# Each endpoint declares what it needs by the alias it takes: ProjectScope (read) or
# ProjectWriteScope; the OpenAPI schema shows it as ``x-pmjobs-scope`` (api.auth.scopes).
ProjectReadScope = ProjectScope
ProjectWriteScope = Annotated[Principal, Depends(project_write_scope)]


async def authorize_before_body(request: Request) -> None:
    """Token, project wall and write scope checked before a large body is read, so that a
    client without the right to upload cannot make the server receive and store a file."""
    principal = _principal(request, await _bearer(request))
    params = request.path_params
    scoped = project_scope(request, params["tenant_id"], params["project_id"], principal)
    project_write_scope(request, scoped)
