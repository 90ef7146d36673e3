"""Setting weights on chain: what the API computed at the last finalized round, every tempo.

Weights are computed once, by the API, when a round is finalized (DESIGN §4); every validator sets
the same vector, so consensus follows. They are set when a newly finalized round changes them, and
again every WEIGHTS_INTERVAL_BLOCKS (a tempo) so they never grow stale on chain. A failure (chain
away, weights refused, e.g. rate limited) is logged and tried again at the next check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from quasar.chain import Chain, ChainError
from quasar.client import ApiError, ValidatorApiClient
from quasar.schemas import Weights

log = logging.getLogger("quasar.validator.weights")


@dataclass
class WeightsSet:
    round_id: int | None
    uids: list[int]
    weights: list[float]
    block: int
    receipt: str


class WeightSetter:
    def __init__(
        self, client: ValidatorApiClient, chain: Chain, wallet: object, interval_blocks: int
    ) -> None:
        self.client = client
        self.chain = chain
        self.wallet = wallet
        self.interval_blocks = interval_blocks
        self.last: WeightsSet | None = None

    def due(self, weights: Weights, block: int) -> bool:
        last = self.last
        if last is None:
            return True
        if (weights.round_id, weights.uids, weights.weights) != (last.round_id, last.uids, last.weights):
            return True
        return block - last.block >= self.interval_blocks

    def maybe_set(self, *, force: bool = False) -> WeightsSet | None:
        """Set the API's weights if they changed or a tempo passed (or ``force``); what was set, or None."""
        try:
            weights = self.client.weights()
            block = self.chain.current_block()
        except (ApiError, ChainError) as exc:
            log.warning("cannot check the weights now (%s); trying again later", exc)
            return None
        if not force and not self.due(weights, block):
            return None
        if not weights.uids:
            log.warning("the API has no weights to set (empty vector); nothing set")
            return None
        try:
            receipt = self.chain.set_weights(self.wallet, weights.uids, weights.weights)
        except ChainError as exc:
            log.warning("setting weights failed (%s); trying again at the next check", exc)
            return None
        self.last = WeightsSet(weights.round_id, list(weights.uids), list(weights.weights), block, receipt)
        log.info(
            "set weights of round %s on chain at block %s: %s",
            weights.round_id, receipt,
            ", ".join(f"uid {u} = {w:.2f}" for u, w in zip(weights.uids, weights.weights, strict=True)),
        )  # fmt: skip
        return self.last
