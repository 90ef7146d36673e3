"""`GET /v1/leaderboard`: a round's submissions, counted ones ranked first."""

from __future__ import annotations

from fastapi import APIRouter, Query

from quasar import schemas
from validator_api import models
from validator_api.deps import MAX_ID, SessionDep, SettingsDep
from validator_api.errors import error_responses
from validator_api.services.rounds import get_round, shown_round
from validator_api.services.scoring import leaderboard_entries, round_standings, round_validators

router = APIRouter(prefix="/v1", tags=["scores"])


@router.get(
    "/leaderboard",
    response_model=schemas.Leaderboard,
    summary="Ranked submissions of a round (default: the open round, else the latest)",
    responses=error_responses(404, 422),
)
def leaderboard(
    session: SessionDep, settings: SettingsDep, round_id: int | None = Query(None, ge=1, le=MAX_ID)
) -> schemas.Leaderboard:
    if round_id is not None:
        rnd: models.Round | None = get_round(session, round_id)
    else:
        rnd = shown_round(session)
    if rnd is None:
        return schemas.Leaderboard(round_id=None, entries=[])
    return schemas.Leaderboard(
        round_id=rnd.id,
        entries=leaderboard_entries(
            round_standings(session, rnd.id), settings, round_validators(session, rnd.id)
        ),
    )
