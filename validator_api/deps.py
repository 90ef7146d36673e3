"""FastAPI dependencies: settings, the API context, a database session, and the caller's identity.

Signed routes depend on `Miner`, `Validator` or `Owner`: each verifies the btauth/1 signature
(recording the nonce), then checks the role against the metagraph. The body is read raw for the
signature before FastAPI parses it, so the hash covers exactly the bytes received.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from quasar.config import Settings
from quasar.signing import asgi_request_target
from validator_api.auth import Role, Roles, authenticate
from validator_api.context import ApiContext
from validator_api.errors import ApiError
from validator_api.ratelimit import FixedWindowLimiter, rate_limited

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


async def signed_hotkey(request: Request, ctx: Context) -> str:
    """The hotkey that signed this request (401 with a stable code otherwise)."""
    body = await request.body()

    def check_schema_then_verify() -> str:
        # One hop into the thread pool per signed request, not one per step.
        ctx.require_schema()
        return authenticate(
            request.headers,
            body,
            method=request.method,
            target=asgi_request_target(request.scope),
            api_hotkey=ctx.api_hotkey,
            nonce_store=ctx.nonce_store,
            settings=ctx.settings,
        )

    hotkey = await run_in_threadpool(check_schema_then_verify)
    # Counted after the signature verifies, so nobody can spend another hotkey's budget.
    limiter: FixedWindowLimiter | None = getattr(request.app.state, "hotkey_limiter", None)
    if limiter is not None and (wait := limiter.hit(hotkey)) is not None:
        raise rate_limited(wait, "hotkey", "RATE_LIMIT_PER_HOTKEY_PER_MINUTE", limiter.limit)
    return hotkey


SignedHotkey = Annotated[str, Depends(signed_hotkey)]


def _role_dependency(role: Role):  # type: ignore[no-untyped-def]
    async def require(ctx: Context, hotkey: SignedHotkey) -> Roles:
        settings = ctx.settings
        if role == "owner" and settings.owner_hotkey and hotkey == settings.owner_hotkey:
            # The configured owner needs no chain lookup (owner actions work while the chain is down).
            return Roles(hotkey=hotkey, registered=True, validator=False, owner=True, uid=None)
        metagraph = await run_in_threadpool(ctx.chain.metagraph)
        roles = Roles.of(hotkey, metagraph, settings)
        roles.require(role, settings)
        return roles

    return require


Miner = Annotated[Roles, Depends(_role_dependency("miner"))]
Validator = Annotated[Roles, Depends(_role_dependency("validator"))]
Owner = Annotated[Roles, Depends(_role_dependency("owner"))]
