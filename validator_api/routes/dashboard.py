"""The owner's dashboard (HTML for people) and `GET /v1/history` (the best time per round, as JSON).

Pages: `/` (the current round; `?round_id=N` any past one), `/miners/{hotkey}` and `/validators`.
All are read-only and public, like the leaderboard they are built from; their data comes from
`services/dashboard_queries/` and their HTML from `validator_api/dashboard/`. Every page
carries a strict Content-Security-Policy: only its own inline style and script (by nonce) run,
nothing is fetched from elsewhere, so even a string that slipped past escaping could not load or
run anything. A bad `round_id` or an unknown hotkey gets a 400 or 404 page in the same frame.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

import quasar
from quasar.chain import ChainError, Metagraph
from quasar.schemas import RoundHistory
from validator_api import dashboard
from validator_api.deps import MAX_ID, Context, SessionDep
from validator_api.errors import error_responses
from validator_api.services import dashboard_queries as queries

router = APIRouter(tags=["dashboard"])


def _current_block(ctx: Context) -> int | None:
    try:
        return ctx.chain.current_block()
    except (ChainError, OSError):
        return None


def _metagraph(ctx: Context) -> Metagraph | None:
    # Only names uids, hotkeys and roles on the pages; everything else is in the database.
    try:
        return ctx.chain.metagraph()
    except (ChainError, OSError):
        return None


def _html(render: Callable[[str], str], status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    csp = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return HTMLResponse(
        render(nonce),
        status_code=status,
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


def _error(status: int, title: str, message: str) -> HTMLResponse:
    return _html(
        lambda nonce: dashboard.render_error(status, title, message, nonce=nonce, version=quasar.__version__),
        status,
    )


@router.get(
    "/v1/history",
    response_model=RoundHistory,
    summary="The newest rounds, oldest first, each with its best correct median time and baseline",
    responses=error_responses(422),
)
def history(session: SessionDep, limit: int = Query(queries.CHART_ROUNDS, ge=1, le=500)) -> RoundHistory:
    return RoundHistory(rounds=queries.round_history(session, limit))


@router.get(
    "/",
    response_class=HTMLResponse,
    summary="Dashboard: a round (the current one, or ?round_id=N), its leaderboard, weights, best speed-ups",
    responses={400: {"description": "round_id is not a round id (HTML page)"},
               404: {"description": "No such round (HTML page)"}},
)  # fmt: skip
async def page(
    ctx: Context,
    session: SessionDep,
    # A string, parsed here: a bad value gets the dashboard's own 400 page, not a JSON 422.
    # The pattern is documented, not enforced by FastAPI, so the page can answer a bad value itself.
    round_id: str | None = Query(
        None, description="Show this round instead of the current one",
        json_schema_extra={"pattern": "^([1-9][0-9]*)?$"},
    ),  # fmt: skip
) -> HTMLResponse:
    picked: int | None = None
    if round_id is not None and round_id.strip() != "":
        text = round_id.strip()
        if not text.isascii() or not text.isdigit() or int(text) < 1:
            return _error(400, "Bad round id", f"round_id must be a positive whole number, not {round_id!r}.")
        # Ids are 32-bit: a longer number is no round, and is neither parsed (Python refuses very long
        # digit strings) nor sent to the database.
        if len(text) > len(str(MAX_ID)) or int(text) > MAX_ID:
            return _error(
                404, "No such round", f"There is no round #{text[:20]}{'…' if len(text) > 20 else ''}."
            )
        picked = int(text)
    block = await run_in_threadpool(_current_block, ctx)
    metagraph = await run_in_threadpool(_metagraph, ctx)
    try:
        data = await run_in_threadpool(
            queries.gather, session, ctx.settings, block, round_id=picked, metagraph=metagraph
        )
    except queries.NotFound as missing:
        return _error(404, "No such round", f"{missing} The round picker on / lists the recent ones.")
    return _html(lambda nonce: dashboard.render(data, nonce=nonce, version=quasar.__version__))


@router.get(
    "/miners/{hotkey}",
    response_class=HTMLResponse,
    summary="Dashboard: one miner's submissions across rounds, verdicts, speed-ups and logit checks",
    responses={404: {"description": "Unknown hotkey (HTML page)"}},
)
async def miner(hotkey: str, ctx: Context, session: SessionDep) -> HTMLResponse:
    metagraph = await run_in_threadpool(_metagraph, ctx)
    try:
        data = await run_in_threadpool(queries.miner_page, session, ctx.settings, hotkey, metagraph)
    except queries.NotFound as missing:
        return _error(404, "Unknown miner", str(missing))
    return _html(lambda nonce: dashboard.render_miner(data, nonce=nonce, version=quasar.__version__))


@router.get(
    "/validators",
    response_class=HTMLResponse,
    summary="Dashboard: active validators, the job queue, leases, results and sandboxes per validator",
)
async def validators(ctx: Context, session: SessionDep) -> HTMLResponse:
    metagraph = await run_in_threadpool(_metagraph, ctx)
    data = await run_in_threadpool(queries.validators_page, session, ctx.settings, metagraph)
    return _html(lambda nonce: dashboard.render_validators(data, nonce=nonce, version=quasar.__version__))
