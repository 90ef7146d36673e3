"""The Validator API app: `create_app(settings)` builds it, `app` is what uvicorn serves.

`uvicorn validator_api.app:app` (and `quasar api`) serve the module-level `app`, built from the
process settings. Importing this module reads the settings but touches neither the database nor
the chain nor the wallet: those are opened in the lifespan, which also runs the background upkeep
(open/finalize rounds, expire commitments, prune nonces) once per block.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio.to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

import quasar
from quasar.config import InvalidSettings, Settings, get_settings
from quasar.limits import FixedWindowLimiter
from quasar.logging_setup import configure_logging
from validator_api.context import ApiContext
from validator_api.errors import install_error_handlers
from validator_api.metrics import Metrics
from validator_api.middleware import RequestContextMiddleware
from validator_api.migrate import DatabaseNotMigrated
from validator_api.ratelimit import IpRateLimitMiddleware
from validator_api.readcache import PublicReadCache
from validator_api.routes import ROUTERS
from validator_api.services.maintenance import tick

log = logging.getLogger("validator_api")

DESCRIPTION = """The shared service of the QUASAR subnet: rounds, commit–reveal submissions, evaluation
jobs, results and weights (HTTP contract v1). State-changing and validator/owner routes need a
btauth/1 signature (`bittensor.http_auth`) bound to the API's hotkey from `GET /v1/info`. Every
error is JSON `{"code", "detail", "request_id"}`."""

# Swagger UI (/docs) and ReDoc (/redoc) load their scripts and styles from here, not from a CDN, so
# the pages work on a host that reaches nothing: the files ship in the fastapi-offline package.
DOCS_ASSETS_URL = "/docs-assets"


def upkeep_interval(settings: Settings) -> float:
    """About one block, but at least a second and at most twelve."""
    return min(max(float(settings.block_time_seconds or 12.0), 1.0), 12.0)


async def _upkeep_loop(ctx: ApiContext) -> None:
    last_error: str | None = None
    while True:
        try:
            await run_in_threadpool(tick, ctx)
            if last_error is not None:
                log.info("background upkeep recovered")
            last_error = None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one bad tick (chain or database down) must not stop the loop
            message = f"{type(exc).__name__}: {exc}"
            if message != last_error:
                log.warning("background upkeep failed, retrying every block: %s", message)
            last_error = message
        await asyncio.sleep(upkeep_interval(ctx.settings))


def _configure_logging(settings: Settings) -> None:
    # uvicorn configures only its own loggers; without this the API's warnings (chain down,
    # refused start) would be lost. A host application that set up logging keeps its own.
    if not logging.getLogger().handlers:
        configure_logging(settings, "api")


def create_app(settings: Settings | None = None, *, upkeep: bool = True) -> FastAPI:
    """The FastAPI app for `settings` (default: the process settings, read at start-up).

    `upkeep=False` leaves out the background loop (tests that need a database nobody else writes).
    """
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or get_settings()
        _configure_logging(resolved)
        ctx = ApiContext.build(resolved, metrics)
        # Blocking work (database, signature checks) runs in anyio's thread pool. Its default of 40
        # threads thrashes the GIL under load: on 2 cores, 40 gave a p99 of 1.8 s where 2 to 8
        # gave 0.3 to 0.4 s at 1.6 times the signed writes per second (docs/benchmarks.md).
        anyio.to_thread.current_default_thread_limiter().total_tokens = resolved.api_threads
        try:
            await run_in_threadpool(ctx.start)
        except DatabaseNotMigrated as exc:
            log.critical("refusing to start: %s", exc)
            ctx.close()
            raise
        app.state.ctx = ctx
        task = asyncio.create_task(_upkeep_loop(ctx)) if upkeep else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            ctx.close()

    # FastAPI's own recipe for self-hosted docs assets (docs_url=None, StaticFiles at
    # DOCS_ASSETS_URL, get_swagger_ui_html/get_redoc_html pointing there), done by fastapi-offline.
    app = FastAPIOffline(
        title="QUASAR Validator API",
        version=quasar.__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url=DOCS_ASSETS_URL,
    )
    static = settings or get_settings()
    max_body = static.max_body_bytes
    # Innermost of the three: cached answers still pass the IP limit, request ids and metrics.
    app.add_middleware(PublicReadCache, ttl_seconds=static.public_cache_seconds)
    # Both are added before the request-context layer, so they run inside it: a 429 or a cached
    # answer still gets its request id and access-log line.
    app.add_middleware(IpRateLimitMiddleware, limiter=FixedWindowLimiter(static.rate_limit_per_ip_per_minute))
    app.add_middleware(RequestContextMiddleware, max_body_bytes=max_body, metrics=metrics)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


try:
    app = create_app()
except InvalidSettings as exc:  # `uvicorn validator_api.app:app` with a bad setting: one line, no traceback
    raise SystemExit(f"error: invalid settings: {exc}") from None
