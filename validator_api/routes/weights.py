"""`GET /v1/weights`: the weights of the last finalized round (all to BURN_UID before any)."""

from __future__ import annotations

from fastapi import APIRouter

from quasar import schemas
from quasar.chain import ChainError, Metagraph
from validator_api.deps import Context, SessionDep
from validator_api.services.rounds import latest_weights

router = APIRouter(prefix="/v1", tags=["scores"])


def current_weights(ctx: Context, session: SessionDep) -> schemas.Weights:
    metagraph: Metagraph | None
    try:
        metagraph = ctx.chain.metagraph()
    except ChainError:
        metagraph = None  # only names the burn uid's hotkey; the weights themselves are in the DB
    return latest_weights(session, ctx.settings, metagraph)


@router.get("/weights", response_model=schemas.Weights, summary="Weights validators should set")
def weights(ctx: Context, session: SessionDep) -> schemas.Weights:
    return current_weights(ctx, session)
