"""One small router per area of the HTTP contract (DESIGN §4)."""

from fastapi import APIRouter

from validator_api.routes import (
    dashboard,
    health,
    info,
    jobs,
    leaderboard,
    legacy,
    rounds,
    submissions,
    weights,
)

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    info.router,
    rounds.router,
    submissions.router,
    jobs.router,
    leaderboard.router,
    weights.router,
    legacy.router,
    dashboard.router,
)
