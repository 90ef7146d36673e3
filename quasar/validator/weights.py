"""Setting weights on chain: what the API computed at the last finalized round, checked, every tempo.

Weights are computed once, by the API, when a round is finalized (DESIGN §4); every validator sets
the same vector, so consensus follows. Before a vector is set it is checked and fitted here:

* **Hotkeys.** The API sends, with each uid, the hotkey that held it at finalize. A uid whose hotkey
  is another one now (the neuron was pruned and the slot re-registered) gets nothing: its share goes
  to BURN_UID, as the API does for a winner that is not registered at finalize.
* **The subnet's limits** (`fit_to_limits`): `min_allowed_weights` and `max_weight_limit`.

A vector is set when a newly finalized round (or the metagraph) changes it, and again every
WEIGHTS_INTERVAL_BLOCKS (a tempo) so it never grows stale on chain. The last vector set is kept in
VALIDATOR_STATE_DIR/weights.json; while the API cannot be reached it is set again every tempo (after
the same hotkey check), so the validator stays active past the subnet's activity cutoff. A refusal
as too soon (SettingWeightsTooFast) waits out the subnet's `weights_rate_limit` before trying again;
other failures (chain away, other refusals) are tried again at the next check.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from quasar.chain import Chain, ChainError, Metagraph, WeightLimits, WeightsRateLimited
from quasar.client import ApiError, ValidatorApiClient
from quasar.schemas import Weights

log = logging.getLogger("quasar.validator.weights")

#: One step of the chain's u16 weights: the least weight a uid can be given and still count.
U16_STEP = 1 / 65535
#: Room kept below max_weight_limit, so that rounding to u16 on the way cannot push the largest share
#: over it (rounding moves a share by under n/2 u16 steps of the sum; 1% covers any subnet size).
LIMIT_MARGIN = 0.99


def pay_current_hotkeys(
    weights: Weights, metagraph: Metagraph, burn_uid: int
) -> tuple[dict[int, float], list[str]]:
    """The API's shares by uid, each uid whose hotkey changed since finalize moved to ``burn_uid``;
    and one note per uid moved. The burn uid itself is never checked: its share is the burn."""
    holder = {n.uid: n.hotkey for n in metagraph.neurons}
    hotkeys = list(weights.hotkeys) + [None] * (len(weights.uids) - len(weights.hotkeys))
    shares: dict[int, float] = {}
    moved: list[str] = []
    for uid, share, hotkey in zip(weights.uids, weights.weights, hotkeys, strict=False):
        if share <= 0:
            continue
        if uid != burn_uid and (hotkey is None or holder.get(uid) != hotkey):
            now = holder.get(uid) or "nobody"
            moved.append(f"uid {uid} ({share:.2f}): held by {hotkey or 'an unknown hotkey'} at finalize, {now} now")
            uid = burn_uid
        shares[uid] = shares.get(uid, 0.0) + share
    return shares, moved


def fit_to_limits(shares: dict[int, float], limits: WeightLimits, registered: Iterable[int]) -> dict[int, float]:
    """``shares`` (any positive scale) as a vector the subnet accepts, summing to 1.

    The chain refuses a vector with fewer than `min_allowed_weights` nonzero uids, or whose largest
    share is above `max_weight_limit` (the SDK would then flatten a too-short vector to equal shares:
    a burn-only vector would be sent as 65535 and refused). So:

    1. When more uids are needed (for the count, or so that no share need exceed the limit), the
       lowest registered uids not in the vector are added with one u16 step each: the least weight
       that still counts, and the same choice on every validator (the metagraph is shared), so
       consensus holds.
    2. A share above the limit is cut to it and the excess spread over the others in proportion to
       their shares (the SDK's own clip), repeated until none is above it; the paid miners keep
       their ratios, and the added uids get only what the limit forces off the top.

    With too few registered uids for the limits the vector is returned as far as it goes (the chain
    then refuses it, and says why).
    """
    total = sum(shares.values())
    fitted = {uid: share / total for uid, share in shares.items() if share > 0}
    cap = limits.max_weight_share * LIMIT_MARGIN if limits.max_weight_share < 1 else 1.0
    needed = limits.min_allowed_weights
    if max(fitted.values()) > cap:
        needed = max(needed, math.ceil(1 / cap))
    for uid in sorted(set(registered) - set(fitted)):
        if len(fitted) >= needed:
            break
        fitted[uid] = U16_STEP
    total = sum(fitted.values())
    fitted = {uid: share / total for uid, share in fitted.items()}
    while True:
        over = [uid for uid, share in fitted.items() if share > cap]
        under = [uid for uid, share in fitted.items() if share < cap]
        if not over or not under:
            return fitted
        excess = sum(fitted[uid] - cap for uid in over)
        room = sum(fitted[uid] for uid in under)
        for uid in over:
            fitted[uid] = cap
        for uid in under:
            fitted[uid] += excess * fitted[uid] / room


@dataclass
class WeightsSet:
    """A vector set on chain: the API's vector it came from (``source``), and what was sent."""

    round_id: int | None
    uids: list[int]
    weights: list[float]
    block: int
    receipt: str
    source: Weights

    def save(self, path: Path) -> None:
        """Write atomically (a crash leaves the previous file or this one, never half of one)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {**asdict(self), "source": self.source.model_dump(mode="json")}
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> WeightsSet | None:
        try:
            data = json.loads(path.read_text())
            data["source"] = Weights.model_validate(data["source"])
            return cls(**data)
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s: not a weights record (%s)", path, exc)
            return None


class WeightSetter:
    def __init__(
        self,
        client: ValidatorApiClient,
        chain: Chain,
        wallet: object,
        interval_blocks: int,
        *,
        burn_uid: int = 0,
        state_file: Path | None = None,
    ) -> None:
        self.client = client
        self.chain = chain
        self.wallet = wallet
        self.interval_blocks = interval_blocks
        self.burn_uid = burn_uid
        self.state_file = state_file
        self.last: WeightsSet | None = WeightsSet.load(state_file) if state_file is not None else None
        #: No attempt before this block (set after a refusal as too soon).
        self.not_before = 0
        self._api_down = False
        self._limits = WeightLimits()

    def due(self, weights: Weights, uids: list[int], values: list[float], block: int) -> bool:
        last = self.last
        if last is None:
            return True
        if (weights.round_id, uids, values) != (last.round_id, last.uids, last.weights):
            return True
        return block - last.block >= self.interval_blocks

    def _api_weights(self) -> Weights | None:
        """The API's vector; while it is unreachable, the one last set (None when there is none)."""
        try:
            weights = self.client.weights()
        except ApiError as exc:
            if not self._api_down:
                log.warning("cannot get the weights from the API (%s)", exc)
                self._api_down = True
            return None if self.last is None else self.last.source
        if self._api_down:
            log.info("the API answers again")
            self._api_down = False
        return weights

    def prepare(self, weights: Weights, metagraph: Metagraph) -> tuple[list[int], list[float]]:
        """The vector to send for the API's ``weights``: hotkeys checked, fitted to the subnet's limits."""
        shares, moved = pay_current_hotkeys(weights, metagraph, self.burn_uid)
        for note in moved:
            log.warning("not paying %s; its share goes to the burn uid %d", note, self.burn_uid)
        self._limits = self.chain.weight_limits()
        fitted = fit_to_limits(shares, self._limits, (n.uid for n in metagraph.neurons))
        uids = sorted(fitted)
        return uids, [round(fitted[uid], 9) for uid in uids]

    def maybe_set(self, *, force: bool = False) -> WeightsSet | None:
        """Set the API's weights if they changed or a tempo passed (or ``force``); what was set, or None."""
        try:
            block = self.chain.current_block()
        except ChainError as exc:
            log.warning("cannot read the chain's block (%s); trying again later", exc)
            return None
        if block < self.not_before:
            return None
        weights = self._api_weights()
        if weights is None:
            return None
        if not any(w > 0 for w in weights.weights):
            log.warning("the API has no weights to set (an empty or all-zero vector); nothing set")
            return None
        try:
            uids, values = self.prepare(weights, self.chain.metagraph())
        except ChainError as exc:
            log.warning("cannot read the metagraph or the weight limits (%s); trying again later", exc)
            return None
        if not force and not self.due(weights, uids, values, block):
            return None
        if self._api_down:
            assert self.last is not None
            log.warning(
                "the API is unreachable: setting the weights of round %s (set at block %d) again, so this "
                "validator stays active on chain", weights.round_id, self.last.block,
            )  # fmt: skip
        try:
            receipt = self.chain.set_weights(self.wallet, uids, values)
        except WeightsRateLimited as exc:
            wait = max(1, self._limits.rate_limit_blocks)
            self.not_before = block + wait
            log.warning(
                "%s; not trying again for %d blocks (the subnet's weights_rate_limit), until block %d",
                exc, wait, self.not_before,
            )  # fmt: skip
            return None
        except ChainError as exc:
            log.warning("setting weights failed (%s); trying again at the next check", exc)
            return None
        self.last = WeightsSet(weights.round_id, uids, values, block, receipt, weights)
        if self.state_file is not None:
            try:
                self.last.save(self.state_file)
            except OSError as exc:
                log.warning("cannot keep the weights set in %s (%s)", self.state_file, exc)
        log.info(
            "set weights of round %s on chain at block %s: %s",
            weights.round_id, receipt, ", ".join(f"uid {u} = {w:.4f}" for u, w in zip(uids, values, strict=True)),
        )  # fmt: skip
        return self.last
