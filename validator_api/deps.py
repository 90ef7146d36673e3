"""FastAPI dependencies: settings, the API context, a database session, and the caller's identity.

Signed routes depend on `Miner`, `Validator` or `Owner`, which run `validator_api.signed.verify_signed`: verify the btauth/1 signature, record the nonce, check the role. The busiest writes
(commit, reveal, claim) call `run_signed` themselves, so their work shares the nonce's transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from quasar.chain.roles import Role, Roles
from quasar.config import Settings
from validator_api.context import ApiContext
from validator_api.errors import ApiError
from validator_api.signed import verify_signed

# Database ids are 32-bit integers; anything outside is refused as invalid rather than overflowing.
MAX_ID = 2_147_483_647
RowId = Annotated[int, Path(ge=1, le=MAX_ID, description="Row id (a positive 32-bit integer)")]


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext | None = getattr(request.app.state, "ctx", None)
    if ctx is None:  # only while the lifespan has not run (e.g. a bare TestClient without `with`)
        raise ApiError(503, "starting", "the API is still starting; retry in a moment")
    return ctx


Context = Annotated[ApiContext, Depends(get_context)]


def get_settings(ctx: Context) -> Settings:
    return ctx.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(ctx: Context) -> Iterator[Session]:
    """A session per request; services open their own transactions on it."""
    ctx.require_schema()
    with ctx.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _role_dependency(role: Role):  # type: ignore[no-untyped-def]
    async def require(request: Request, ctx: Context) -> Roles:
        # The nonce commits on its own here; routes with hot writes call run_signed with their work.
        return await verify_signed(request, ctx, role)

    return require


Miner = Annotated[Roles, Depends(_role_dependency("miner"))]
Validator = Annotated[Roles, Depends(_role_dependency("validator"))]
Owner = Annotated[Roles, Depends(_role_dependency("owner"))]
