"""The dashboard at `/` (HTML for people) and `GET /v1/history` (the best time per round, as JSON).

Both are read-only and public, like the leaderboard they are built from. The page carries a strict
Content-Security-Policy: only its own inline style and script (by nonce) run, nothing is fetched
from elsewhere, so even a string that slipped past escaping could not load or run anything.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

import quasar
from quasar.chain import ChainError
from quasar.schemas import RoundHistory
from validator_api import dashboard
from validator_api.deps import Context, SessionDep
from validator_api.errors import error_responses

router = APIRouter(tags=["dashboard"])


def _current_block(ctx: Context) -> int | None:
    try:
        return ctx.chain.current_block()
    except (ChainError, OSError):
        return None


@router.get(
    "/v1/history",
    response_model=RoundHistory,
    summary="The newest rounds, oldest first, each with its best correct median time and baseline",
    responses=error_responses(422),
)
def history(session: SessionDep, limit: int = Query(dashboard.CHART_ROUNDS, ge=1, le=500)) -> RoundHistory:
    return RoundHistory(rounds=dashboard.round_history(session, limit))


@router.get("/", response_class=HTMLResponse, summary="Dashboard: current round, leaderboard, best times")
async def page(ctx: Context, session: SessionDep) -> HTMLResponse:
    block = await run_in_threadpool(_current_block, ctx)
    data = await run_in_threadpool(dashboard.gather, session, ctx.settings, block)
    nonce = secrets.token_urlsafe(16)
    body = dashboard.render(data, nonce=nonce, version=quasar.__version__)
    csp = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )
