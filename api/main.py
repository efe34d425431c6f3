"""The FastAPI app: wiring only. Routes live in their packages, Prefect behind the gateway."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from prefect.exceptions import PrefectHTTPStatusError

from api import problems
from api.auth.scopes import declare_in_openapi
from api.auth.tokens import TokenStore
from api.body_limit import BodyLimitMiddleware
from api.datasets.routes import router as datasets_router
from api.datasets.store import DatasetStore, warm_up
from api.jobs.estimates import Estimator
from api.jobs.routes import router as jobs_router
from api.jobs.service import JobService
from api.notebooks.routes import router as notebooks_router
from api.pipelines.routes import router as pipelines_router
from api.prefect_gateway import PrefectGateway
from api.ratelimit import RateLimiter
from api.settings import get_settings
from api.strict_query import reject_unknown_query
from api.system.routes import router as system_router
from api.system.service import SystemService

log = logging.getLogger("pmjobs.api")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    home = settings.resolved_home
    gateway = PrefectGateway(settings.prefect_url, settings.work_pool)
    await gateway.start()
    estimator = Estimator(gateway)
    datasets = DatasetStore(home)
    warm_up()
    app.state.gateway = gateway
    app.state.tokens = TokenStore(home)
    app.state.ratelimiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    app.state.datasets = datasets
    app.state.jobs = JobService(gateway, datasets, estimator)
    app.state.system = SystemService(gateway, estimator, home, settings.locale)
    try:
        yield
    finally:
        await gateway.close()


def create_app() -> FastAPI:
    app = FastAPI(
        title="pmjobs — Execution API",
        version="0.1.0",
        description="Submit, watch, cancel and retry process-mining jobs; download their results. "
        "Every job is a Prefect flow run.",
        lifespan=lifespan,
        dependencies=[Depends(reject_unknown_query)],
    )
    problems.install(app)
    app.add_middleware(BodyLimitMiddleware)  # JSON bodies only; uploads have their own limit

    @app.exception_handler(httpx.TransportError)
    async def _prefect_down(request: Request, exc: httpx.TransportError) -> JSONResponse:
        log.warning("Prefect unreachable: %s", exc)
        response = problems.problem_response(
            503,
            "The job engine (Prefect) is not reachable right now; try again shortly.",
            instance=request.url.path,
        )
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(PrefectHTTPStatusError)
    async def _prefect_error(request: Request, exc: PrefectHTTPStatusError) -> JSONResponse:
        status = exc.response.status_code
        log.warning(
            "Prefect answered %s on %s: %s", status, request.url.path, exc.response.text[:500]
        )
        if status >= 500:
            return problems.problem_response(
                503,
                "The job engine (Prefect) failed to answer; try again shortly.",
                instance=request.url.path,
            )
        return problems.problem_response(
            422 if status in (400, 409, 422) else 502,
            "The job engine refused the request.",
            instance=request.url.path,
        )

    @app.get("/health", tags=["health"], summary="200 once the API, Prefect and a node are ready")
    async def health(request: Request) -> Any:
        gateway: PrefectGateway = request.app.state.gateway
        checks: dict[str, Any] = {"api": "ok"}
        prefect_ok = await gateway.healthy()
        checks["prefect"] = "ok" if prefect_ok else "unreachable"
        online = 0
        if prefect_ok:
            try:
                online = sum(1 for n in await gateway.nodes() if n.online)
            except Exception:  # noqa: BLE001 - health reports, never raises
                online = 0
        checks["nodesOnline"] = online
        ready = prefect_ok and online > 0
        return JSONResponse(
            {"status": "ok" if ready else "starting", "checks": checks},
            status_code=200 if ready else 503,
        )

    app.include_router(jobs_router)
    app.include_router(datasets_router)
    app.include_router(pipelines_router)
    app.include_router(notebooks_router)
    app.include_router(system_router)
    declare_in_openapi(app)
    return app


app = create_app()
