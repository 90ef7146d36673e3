"""Rounds: list and read (anyone), open and finalize (owner)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from quasar import schemas
from validator_api.deps import MAX_ID, Context, Owner, RowId, SessionDep
from validator_api.errors import error_responses
from validator_api.services import rounds as service

router = APIRouter(prefix="/v1/rounds", tags=["rounds"])

_SIGNED = error_responses(400, 401, 403, 413, 422, 503)


@router.get(
    "", response_model=schemas.RoundPage, summary="Rounds, newest first", responses=error_responses(422)
)
def list_rounds(
    session: SessionDep,
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=MAX_ID),
) -> schemas.RoundPage:
    return service.list_rounds(session, limit=limit, offset=offset)


@router.get(
    "/current", response_model=schemas.Round, summary="The open round", responses=error_responses(404)
)
def current_round(session: SessionDep) -> schemas.Round:
    return service.current_round(session)


@router.get(
    "/{round_id}", response_model=schemas.Round, summary="One round", responses=error_responses(404, 422)
)
def get_round(round_id: RowId, session: SessionDep) -> schemas.Round:
    from validator_api.services.common import round_out

    return round_out(service.get_round(session, round_id))


@router.post(
    "",
    response_model=schemas.Round,
    status_code=201,
    summary="Open a round now (owner)",
    responses={**_SIGNED, **error_responses(409)},
)
async def create_round(
    body: schemas.RoundCreate, owner: Owner, ctx: Context, session: SessionDep
) -> schemas.Round:
    block = await run_in_threadpool(ctx.chain.current_block)
    shape = body.target_shape or service.default_target_shape(ctx.settings)
    return await run_in_threadpool(
        service.create_round,
        session,
        start_block=block,
        duration_blocks=body.duration_blocks,
        target_shape=shape,
    )


@router.post(
    "/{round_id}/finalize",
    response_model=schemas.Round,
    summary="Finalize a round and fix its weights (owner)",
    responses={**_SIGNED, **error_responses(404)},
)
async def finalize_round(round_id: RowId, owner: Owner, ctx: Context, session: SessionDep) -> schemas.Round:
    block = await run_in_threadpool(ctx.chain.current_block)
    metagraph = await run_in_threadpool(ctx.chain.metagraph)
    return await run_in_threadpool(
        service.finalize_round, session, round_id, block=block, metagraph=metagraph, settings=ctx.settings
    )
