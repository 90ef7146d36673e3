"""Evaluation job routes (validators): claim, heartbeat, result.

A claim runs in the transaction of the request's nonce (`run_signed`); it is the busiest of the three.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from quasar import schemas
from validator_api.auth import conflicted_hotkeys
from validator_api.deps import Context, RowId, SessionDep, Validator
from validator_api.errors import error_responses
from validator_api.services import jobs, results
from validator_api.signed import SignedCall, run_signed

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

_SIGNED = error_responses(400, 401, 403, 413, 422, 503)


@router.post(
    "/claim",
    response_model=schemas.Job,
    summary="Lease a lapsed job, else the oldest queued one, that this validator may take (204: none)",
    responses={204: {"description": "No job available"}, **_SIGNED},
)
async def claim(request: Request, ctx: Context) -> schemas.Job | Response:
    def lease(call: SignedCall) -> schemas.Job | None:
        conflicted = conflicted_hotkeys(call.hotkey, ctx.chain.metagraph())
        return jobs.claim(
            call.connection, validator=call.hotkey, settings=ctx.settings, conflicted=conflicted
        )

    job = await run_signed(request, ctx, "validator", lease)
    return Response(status_code=204) if job is None else job


@router.post(
    "/{job_id}/heartbeat",
    response_model=schemas.Heartbeat,
    summary="Extend the lease of a held job",
    responses={**_SIGNED, **error_responses(404, 409)},
)
async def heartbeat(
    job_id: RowId, validator: Validator, ctx: Context, session: SessionDep
) -> schemas.Heartbeat:
    return await run_in_threadpool(
        jobs.heartbeat, session, job_id, validator=validator.hotkey, settings=ctx.settings
    )


@router.post(
    "/{job_id}/result",
    response_model=schemas.JobResultAccepted,
    summary="Report a held job's verdict (identical retries are idempotent)",
    responses={**_SIGNED, **error_responses(404, 409)},
)
async def result(
    job_id: RowId, body: schemas.JobResult, validator: Validator, ctx: Context, session: SessionDep
) -> schemas.JobResultAccepted:
    conflicted = conflicted_hotkeys(validator.hotkey, await run_in_threadpool(ctx.chain.metagraph))
    return await run_in_threadpool(
        results.post_result, session, job_id, validator=validator.hotkey, result=body, settings=ctx.settings,
        conflicted=conflicted,
    )  # fmt: skip
