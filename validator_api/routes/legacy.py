"""The original subnet's read-only flat paths, kept as aliases of the v1 routes (same JSON)."""

from __future__ import annotations

from fastapi import APIRouter

from quasar import schemas
from validator_api.deps import Context, SessionDep
from validator_api.errors import error_responses
from validator_api.routes.weights import current_weights
from validator_api.services.rounds import current_round

router = APIRouter(tags=["legacy"])


@router.get("/get_weights", response_model=schemas.Weights, summary="Alias of GET /v1/weights")
def get_weights(ctx: Context, session: SessionDep) -> schemas.Weights:
    return current_weights(ctx, session)


@router.get(
    "/get_current_round",
    response_model=schemas.Round,
    summary="Alias of GET /v1/rounds/current",
    responses=error_responses(404),
)
def get_current_round(session: SessionDep) -> schemas.Round:
    return current_round(session)
