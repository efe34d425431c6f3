"""Dependencies shared by the routers, as ``Annotated`` aliases."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth.tokens import Principal, TokenStore
from api.prefect_gateway import PrefectGateway
from api.problems import NotFound, Problem
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


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("Missing bearer token: send 'Authorization: Bearer <token>'.")
    principal = _tokens(request).verify(credentials.credentials)
    if principal is None:
        raise _unauthorized("The bearer token is not valid.")
    return principal


def _unauthorized(detail: str) -> Problem:
    problem = Problem(401, detail)
    problem.headers["WWW-Authenticate"] = "Bearer"
    return problem


CurrentPrincipal = Annotated[Principal, Depends(_principal)]

TenantId = Annotated[str, Path(description="Tenant identifier (GUID or slug).")]
ProjectId = Annotated[str, Path(description="Project identifier (GUID or slug).")]


def tenant_scope(tenant_id: TenantId, principal: CurrentPrincipal) -> Principal:
    """A tenant the token does not grant looks exactly like one that does not exist."""
    if not _ID_RE.match(tenant_id) or not principal.can_see(tenant_id):
        raise NotFound("Tenant")
    return principal


def project_scope(
    tenant_id: TenantId, project_id: ProjectId, principal: CurrentPrincipal
) -> Principal:
    if not _ID_RE.match(tenant_id) or not _ID_RE.match(project_id):
        raise NotFound("Project")
    if not principal.can_see(tenant_id, project_id):
        raise NotFound("Project")
    return principal


TenantScope = Annotated[Principal, Depends(tenant_scope)]
ProjectScope = Annotated[Principal, Depends(project_scope)]
