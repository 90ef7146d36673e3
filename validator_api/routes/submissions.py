"""Commit–reveal routes: commit (miner), reveal (the committing miner), read by id or commitment hash (anyone).

Commit and reveal run their work in the transaction of the request's nonce (`run_signed`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from quasar import schemas
from validator_api.deps import Context, RowId, SessionDep
from validator_api.errors import error_responses
from validator_api.services import submissions as service
from validator_api.services.common import submission_out
from validator_api.signed import SignedCall, run_signed

router = APIRouter(prefix="/v1/submissions", tags=["submissions"])

CommitmentHash = Annotated[
    str, Path(pattern=r"^[0-9a-f]{64}$", description="The commitment hash (64 lowercase hex characters).")
]


@router.post(
    "/commit",
    response_model=schemas.CommitResponse,
    status_code=201,
    summary="Commit sha256(domain || salt || payload) (miner)",
    responses=error_responses(400, 401, 403, 409, 413, 422, 503),
)
async def commit(body: schemas.CommitRequest, request: Request, ctx: Context) -> schemas.CommitResponse:
    def record(call: SignedCall) -> schemas.CommitResponse:
        return service.commit(
            call.connection,
            hotkey=call.hotkey,
            commitment_hash=body.commitment_hash,
            block=call.current_block,
            settings=ctx.settings,
        )

    return await run_signed(request, ctx, "miner", record, with_block=True)


@router.post(
    "/{submission_id}/reveal",
    response_model=schemas.Submission,
    summary="Reveal salt and payload of a commitment (the committing miner)",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 503),
)
async def reveal(
    submission_id: RowId, body: schemas.RevealRequest, request: Request, ctx: Context
) -> schemas.Submission:
    def accept(call: SignedCall) -> schemas.Submission:
        return service.reveal(
            call.connection,
            submission_id,
            hotkey=call.hotkey,
            request=body,
            block=call.current_block,
            settings=ctx.settings,
        )

    return await run_signed(request, ctx, "miner", accept, with_block=True)


@router.get(
    "/by-commitment/{commitment_hash}",
    response_model=schemas.Submission,
    summary="The submission of a commitment hash (a restarted miner finds its commitment)",
    responses=error_responses(404, 422),
)
def submission_by_commitment(commitment_hash: CommitmentHash, session: SessionDep) -> schemas.Submission:
    return submission_out(service.submission_by_commitment(session, commitment_hash))


@router.get(
    "/{submission_id}",
    response_model=schemas.Submission,
    summary="A submission and its status",
    responses=error_responses(404, 422),
)
def get_submission(submission_id: RowId, session: SessionDep) -> schemas.Submission:
    return submission_out(service.get_submission(session, submission_id))


@router.get(
    "/{submission_id}/results",
    response_model=list[schemas.ValidatorResult],
    summary="Every validator's result on a submission, oldest first (outliers flagged)",
    responses=error_responses(404, 422),
)
def submission_results(submission_id: RowId, session: SessionDep) -> list[schemas.ValidatorResult]:
    return service.submission_results(session, submission_id)
