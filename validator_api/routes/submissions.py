"""Commit–reveal routes: commit (miner), reveal (the committing miner), read (anyone)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from quasar import schemas
from validator_api.deps import Context, Miner, RowId, SessionDep
from validator_api.errors import error_responses
from validator_api.services import submissions as service
from validator_api.services.common import submission_out

router = APIRouter(prefix="/v1/submissions", tags=["submissions"])


@router.post(
    "/commit",
    response_model=schemas.CommitResponse,
    status_code=201,
    summary="Commit sha256(domain || salt || payload) (miner)",
    responses=error_responses(400, 401, 403, 409, 413, 422, 503),
)
async def commit(
    body: schemas.CommitRequest, miner: Miner, ctx: Context, session: SessionDep
) -> schemas.CommitResponse:
    block = await run_in_threadpool(ctx.chain.current_block)
    return await run_in_threadpool(
        service.commit,
        session,
        hotkey=miner.hotkey,
        commitment_hash=body.commitment_hash,
        block=block,
        settings=ctx.settings,
    )


@router.post(
    "/{submission_id}/reveal",
    response_model=schemas.Submission,
    summary="Reveal salt and payload of a commitment (the committing miner)",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503),
)
async def reveal(
    submission_id: RowId, body: schemas.RevealRequest, miner: Miner, ctx: Context, session: SessionDep
) -> schemas.Submission:
    block = await run_in_threadpool(ctx.chain.current_block)
    return await run_in_threadpool(
        service.reveal,
        session,
        submission_id,
        hotkey=miner.hotkey,
        request=body,
        block=block,
        settings=ctx.settings,
    )


@router.get(
    "/{submission_id}",
    response_model=schemas.Submission,
    summary="A submission and its status",
    responses=error_responses(404, 422),
)
def get_submission(submission_id: RowId, session: SessionDep) -> schemas.Submission:
    return submission_out(service.get_submission(session, submission_id))
