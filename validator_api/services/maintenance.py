"""The API's own clock work, run every block by each replica: open, finalize, expire, prune.

Safe with any number of replicas because every step is decided by the database: finalizing is a
conditional UPDATE, opening a round hits the one-open-round unique index, expiring is a conditional
UPDATE, pruning a plain DELETE. Nothing here is kept in process memory.
"""

from __future__ import annotations

import logging

from validator_api.context import ApiContext
from validator_api.errors import ApiError
from validator_api.services.rounds import (
    create_round,
    default_target_shape,
    finalize_round,
    open_round,
    rounds_due,
)
from validator_api.services.submissions import expire_overdue

log = logging.getLogger("validator_api.maintenance")


def tick(ctx: ApiContext) -> None:
    settings = ctx.settings
    ctx.ensure_schema()
    ctx.nonce_store.prune()
    block = ctx.chain.current_block()
    if ctx.chain.block_is_estimated:
        # Rounds move on the chain's clock; an estimate during an outage must not close one.
        return
    with ctx.sessions() as session:
        expired = expire_overdue(session, block)
        if expired:
            log.info("expired %s unrevealed commitment(s) at block %s", expired, block)
        due = rounds_due(session, block, settings)
        session.rollback()
        for round_id in due:
            finalize_round(session, round_id, block=block, metagraph=ctx.chain.metagraph(), settings=settings)
        if settings.auto_rounds and open_round(session) is None:
            assert settings.round_blocks is not None
            session.rollback()
            try:
                create_round(
                    session,
                    start_block=block,
                    duration_blocks=settings.round_blocks,
                    target_shape=default_target_shape(settings),
                )
            except ApiError as exc:  # another replica opened it first
                log.debug("round not opened: %s", exc.detail)
