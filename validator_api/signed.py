"""Signed requests, end to end: verify, record the nonce, check the role, do the work, commit.

Every signed route goes through `run_signed`, or `verify_signed` when its work happens afterwards in
a session of its own (steps 1 and 2 only). Either makes one hop into the thread pool and opens one
database transaction, in this order:

1. verify the btauth/1 signature and insert its nonce (a replay conflicts with the stored nonce);
2. count the request against the per-hotkey limit, then check the caller's role on the metagraph
   (steps 1 and 2 are the signed-request gate, `quasar.gate`, its refusals mapped by `api_error`);
3. read the chain's block, for routes that need it;
4. run the route's work under a SAVEPOINT;
5. commit.

A refusal (`ApiError`) at steps 2 to 4 rolls the savepoint back and still commits the nonce, so the
request leaves nothing behind but its nonce record, and a replay of it is refused as a replay
(DESIGN §4). A route's body is parsed by FastAPI before the route runs, so a malformed body is
refused (400/422) before the signature is looked at and leaves no nonce. Putting the nonce in the
write's own transaction, instead of committing it first in a transaction of its own, is what makes
a signed write cheap: one connection checkout, one commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from quasar.chain.roles import Role, Roles
from quasar.gate import Refusal
from quasar.signing import asgi_request_target
from validator_api.auth import api_error
from validator_api.context import ApiContext
from validator_api.errors import ApiError

T = TypeVar("T")


@dataclass(frozen=True)
class SignedCall:
    """What the work of a signed request gets: the caller, its transaction, and the chain block."""

    roles: Roles
    connection: Connection
    block: int | None

    @property
    def hotkey(self) -> str:
        return self.roles.hotkey

    @property
    def current_block(self) -> int:
        assert self.block is not None, "run_signed(..., with_block=True) reads the block"
        return self.block


async def run_signed(
    request: Request,
    ctx: ApiContext,
    role: Role,
    work: Callable[[SignedCall], T],
    *,
    with_block: bool = False,
) -> T:
    """Authenticate the request as `role` and run `work` in the same transaction as its nonce."""
    return await _signed(request, ctx, role, work, with_block=with_block)


async def verify_signed(request: Request, ctx: ApiContext, role: Role) -> Roles:
    """Authenticate the request as `role`; its nonce commits alone (for routes that write elsewhere)."""
    return await _signed(request, ctx, role, None, with_block=False)


async def _signed(
    request: Request, ctx: ApiContext, role: Role, work: Callable[[SignedCall], T] | None, *, with_block: bool
) -> Any:
    body = await request.body()
    gate = ctx.gate

    def in_thread() -> Any:
        ctx.require_schema()
        refusal: ApiError | None = None
        with ctx.engine.connect() as connection, connection.begin():
            try:
                hotkey = gate.authenticate(
                    request.headers,
                    body,
                    method=request.method,
                    target=asgi_request_target(request.scope),
                    nonce_store=ctx.nonce_store.on(connection),
                )
            except Refusal as exc:
                raise api_error(exc) from None  # nothing to keep: the transaction rolls back
            try:
                roles = gate.check(hotkey, role)
                if work is None:
                    return roles  # nothing written but the nonce, so no savepoint is needed
                # Read for a verified caller only, so a stranger's request never reaches the chain.
                block = ctx.chain.current_block() if with_block else None
                with connection.begin_nested():
                    result = work(SignedCall(roles, connection, block))
            except Refusal as exc:  # the gate's: limit or role
                refusal = api_error(exc)  # the nonce commits below
            except ApiError as exc:
                refusal = exc  # the savepoint is rolled back; the nonce commits below
        if refusal is not None:
            raise refusal
        return result

    return await run_in_threadpool(in_thread)

