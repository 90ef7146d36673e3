"""Liveness (`/health`), readiness (`/ready`) and Prometheus metrics (`/metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from quasar.chain import ChainError
from quasar.schemas import Health
from validator_api.deps import Context
from validator_api.errors import ApiError, error_responses
from validator_api.metrics import CONTENT_TYPE_LATEST

router = APIRouter(tags=["service"])


def _chain_status(ctx: Context) -> tuple[bool, int | None]:
    try:
        block = ctx.chain.current_block()
    except (ChainError, OSError):
        return False, None
    return ctx.chain.healthy and not ctx.chain.block_is_estimated, block


@router.get("/health", response_model=Health, summary="Liveness: 200 while the process serves")
async def health(ctx: Context) -> Health:
    database_ok = await run_in_threadpool(ctx.database_ok)
    chain_ok, block = await run_in_threadpool(_chain_status, ctx)
    return Health(
        status="ok" if database_ok and chain_ok else "degraded",
        database="ok" if database_ok else "unavailable",
        chain="ok" if chain_ok else "unavailable",
        block=block,
    )


@router.get(
    "/ready",
    response_model=Health,
    summary="Readiness: 503 while the database is unreachable or not migrated",
    responses=error_responses(503),
)
async def ready(ctx: Context) -> Health:
    if not await run_in_threadpool(ctx.database_ok):
        raise ApiError(
            503, "database_unavailable", "the database is unreachable or not migrated; see the API log"
        )
    chain_ok, block = await run_in_threadpool(_chain_status, ctx)
    return Health(
        status="ok" if chain_ok else "degraded",
        database="ok",
        chain="ok" if chain_ok else "unavailable",
        block=block,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
async def metrics(ctx: Context) -> Response:
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)
