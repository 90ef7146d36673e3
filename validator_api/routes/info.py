"""`GET /v1/info`: the API's hotkey (the receiver every signature must name) and protocol timings."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

import quasar
from quasar.chain import ChainError
from quasar.schemas import Info
from validator_api.deps import Context

router = APIRouter(prefix="/v1", tags=["service"])

MIN_CLIENT_VERSION = "0.1.0"


@router.get("/info", response_model=Info, summary="API identity and protocol parameters")
async def info(ctx: Context) -> Info:
    settings = ctx.settings
    try:
        block: int | None = await run_in_threadpool(ctx.chain.current_block)
    except ChainError:
        block = None
    assert settings.blocks_until_reveal is not None and settings.reveal_window_blocks is not None
    return Info(
        api_hotkey=ctx.api_hotkey,
        netuid=settings.netuid,
        network=settings.subtensor_network,
        version=quasar.__version__,
        min_client_version=MIN_CLIENT_VERSION,
        blocks_until_reveal=settings.blocks_until_reveal,
        reveal_window_blocks=settings.reveal_window_blocks,
        block_time_seconds=settings.block_time_seconds,
        current_block=block,
    )
