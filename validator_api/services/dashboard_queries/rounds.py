"""`/` and `/?round_id=N`: one round, its leaderboard and rejections, the weights and their split, and the
best speed-up per round (the chart, and `GET /v1/history`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quasar.chain import Metagraph
from quasar.config import Settings
from quasar.reasons import REASON_OK
from quasar.schemas import LeaderboardEntry, RoundBest
from validator_api import models
from validator_api.services.dashboard_queries.common import NotFound
from validator_api.services.rounds import shown_round
from validator_api.services.scoring import (
    burn_only,
    leaderboard_entries,
    round_standings,
    round_validators,
)

#: Rounds the chart shows (the newest ones); the round picker links the same ones.
CHART_ROUNDS = 30


@dataclass(frozen=True)
class Row:
    rank: int | None
    submission_id: int
    hotkey: str
    status: str
    speedup: float | None
    median_ms: float | None
    correct: bool | None
    verified: bool | None
    counted: bool
    reason: str | None
    sandbox: str | None
    repo_url: str | None
    commit_sha: str | None
    speedup_ci_low: float | None = None
    speedup_ci_high: float | None = None
    inconclusive: bool | None = None

    @property
    def rejected(self) -> bool:
        """It ended, or stands, with a reason against it (failed, duplicate, never revealed...)."""
        return not self.counted and self.reason is not None and self.reason != REASON_OK


@dataclass(frozen=True)
class WeightShare:
    """One uid of a weight vector."""

    uid: int
    hotkey: str | None
    weight: float
    burn: bool


@dataclass(frozen=True)
class SplitPlace:
    """One share of WEIGHT_SPLIT and who earned it in a finalized round."""

    place: int
    share: float
    hotkey: str | None = None
    uid: int | None = None
    speedup: float | None = None
    submission_id: int | None = None
    #: Why the share went to the burn uid instead (None: it was paid to `uid`).
    burned: str | None = None


@dataclass
class WeightsView:
    """A finalized round's frozen weight vector (as validators set it) and its split per place."""

    #: The round the weights are from; None before any round was finalized (all weight burns).
    round_id: int | None
    burn_uid: int
    shares: list[WeightShare] = field(default_factory=list)
    split: list[SplitPlace] = field(default_factory=list)
    finalized_block: int | None = None
    #: Whether these are the weights `GET /v1/weights` serves now (the last finalized round's).
    current: bool = True
    #: The round whose weights are served now, when these are an older round's.
    current_round_id: int | None = None

    @property
    def burn_share(self) -> float:
        return sum(s.weight for s in self.shares if s.burn)


@dataclass
class DashboardData:
    network: str
    netuid: int
    block: int | None
    block_time_seconds: float
    round: models.Round | None = None
    rows: list[Row] = field(default_factory=list)
    history: list[RoundBest] = field(default_factory=list)
    logit_verification: bool = True
    weights: WeightsView | None = None
    #: The round was picked with ?round_id= (not the one shown by default).
    picked: bool = False
    #: The round `/` shows by default (the open one, else the latest), and the picked one's neighbours.
    current_round_id: int | None = None
    previous_round_id: int | None = None
    next_round_id: int | None = None
    win_margin: float = 0.0


def round_history(session: Session, limit: int = CHART_ROUNDS) -> list[RoundBest]:
    """The newest `limit` rounds, oldest first, each with its best correct median time."""
    rounds = list(session.scalars(select(models.Round).order_by(models.Round.id.desc()).limit(limit)))
    if not rounds:
        return []
    subs = session.scalars(
        select(models.Submission).where(models.Submission.round_id.in_([r.id for r in rounds]))
    ).all()
    by_round: dict[int, list[models.Submission]] = {}
    for sub in subs:
        by_round.setdefault(sub.round_id, []).append(sub)
    out = []
    for rnd in reversed(rounds):
        mine = by_round.get(rnd.id, [])
        timed = [s for s in mine if s.correct and s.median_ms is not None and s.status == "scored"]
        best = min(timed, key=lambda s: (s.median_ms, s.commit_block, s.id), default=None)
        out.append(
            RoundBest(
                round_id=rnd.id,
                status=rnd.status,
                start_block=rnd.start_block,
                end_block=rnd.end_block,
                baseline_ms=rnd.baseline_ms,
                best_ms=best.median_ms if best else None,
                best_hotkey=best.hotkey if best else None,
                best_speedup=best.score if best else None,
                submissions=len(mine),
                winner_hotkey=rnd.winner_hotkey,
            )
        )
    return out


def _latest_finalized(session: Session) -> models.Round | None:
    return session.scalars(
        select(models.Round).where(models.Round.status == "finalized").order_by(models.Round.id.desc())
    ).first()


def weights_view(
    session: Session,
    settings: Settings,
    metagraph: Metagraph | None,
    viewed: models.Round | None = None,
    viewed_entries: list[LeaderboardEntry] | None = None,
) -> WeightsView:
    """The weights of `viewed` when it is finalized, else those served now (the last finalized round's).

    The vector is the one frozen at finalize, exactly what `GET /v1/weights` serves; the API never
    reads weights back from the chain. The split per place is ranked again from the round's
    submissions under the current WEIGHT_SPLIT, and each winner is matched to its uid through the
    frozen vector, so a winner missing from it is shown as burned (it was not registered at finalize).
    """
    latest = _latest_finalized(session)
    target = viewed if viewed is not None and viewed.status == "finalized" else latest
    burn_uid = settings.burn_uid
    if target is None or not target.weights:
        burn = burn_only(settings, metagraph)
        return WeightsView(
            round_id=None,
            burn_uid=burn_uid,
            shares=[WeightShare(u, h, w, u == burn_uid) for u, w, h in zip(burn.uids, burn.weights, burn.hotkeys, strict=False)],
            split=[
                SplitPlace(place=i, share=s, burned="no round finalized yet")
                for i, s in enumerate(settings.weight_split, start=1)
            ],
        )  # fmt: skip
    frozen: dict[str, Any] = target.weights
    uids = [int(u) for u in frozen.get("uids", [])]
    values = [float(w) for w in frozen.get("weights", [])]
    hotkeys = list(frozen.get("hotkeys") or [None] * len(uids))
    shares = [WeightShare(u, h, w, u == burn_uid) for u, w, h in zip(uids, values, hotkeys, strict=False)]
    if viewed_entries is None or target is not viewed:
        viewed_entries = leaderboard_entries(
            round_standings(session, target.id), settings, round_validators(session, target.id)
        )
    # Each hotkey's best counted submission competes (scoring.compute_weights), best first.
    winners: list[LeaderboardEntry] = []
    for entry in viewed_entries:
        if entry.counted and all(w.hotkey != entry.hotkey for w in winners):
            winners.append(entry)
    uid_of = {h: u for u, h in zip(uids, hotkeys, strict=False) if h}
    split = []
    for place, share in enumerate(settings.weight_split, start=1):
        if place > len(winners):
            split.append(SplitPlace(place=place, share=share, burned="nobody earned it"))
            continue
        winner = winners[place - 1]
        uid = uid_of.get(winner.hotkey)
        paid = uid is not None and uid != burn_uid
        split.append(
            SplitPlace(
                place=place, share=share, hotkey=winner.hotkey, uid=uid, speedup=winner.score,
                submission_id=winner.submission_id, burned=None if paid else "not registered at finalize",
            )
        )  # fmt: skip
    current = latest is not None and target.id == latest.id
    return WeightsView(
        round_id=target.id,
        burn_uid=burn_uid,
        shares=shares,
        split=split,
        finalized_block=target.finalized_block,
        current=current,
        current_round_id=None if current or latest is None else latest.id,
    )


def gather(
    session: Session,
    settings: Settings,
    block: int | None,
    *,
    round_id: int | None = None,
    metagraph: Metagraph | None = None,
) -> DashboardData:
    """The data of `/` (the shown round) or `/?round_id=N`; NotFound for a round that does not exist."""
    data = DashboardData(
        network=settings.subtensor_network,
        netuid=settings.netuid,
        block=block,
        block_time_seconds=float(settings.block_time_seconds or 12.0),
        logit_verification=settings.enable_logit_verification,
        win_margin=settings.win_margin,
    )
    shown = shown_round(session)
    data.current_round_id = shown.id if shown is not None else None
    rnd = shown
    if round_id is not None:
        rnd = session.get(models.Round, round_id)
        if rnd is None:
            raise NotFound(f"There is no round #{round_id}.")
        data.picked = True
    data.round = rnd
    entries: list[LeaderboardEntry] = []
    if rnd is not None:
        subs = session.scalars(select(models.Submission).where(models.Submission.round_id == rnd.id)).all()
        by_id = {s.id: s for s in subs}
        entries = leaderboard_entries(subs, settings, round_validators(session, rnd.id))
        for entry in entries:
            sub = by_id[entry.submission_id]
            data.rows.append(
                Row(
                    rank=entry.rank,
                    submission_id=entry.submission_id,
                    hotkey=entry.hotkey,
                    status=entry.status,
                    speedup=entry.score,
                    median_ms=entry.median_ms,
                    correct=entry.correct,
                    verified=entry.verified,
                    counted=entry.counted,
                    reason=entry.reason,
                    sandbox=entry.sandbox,
                    repo_url=sub.repo_url,
                    commit_sha=sub.commit_sha,
                    speedup_ci_low=entry.score_ci_low,
                    speedup_ci_high=entry.score_ci_high,
                    inconclusive=entry.inconclusive,
                )
            )
        data.previous_round_id = session.scalar(
            select(func.max(models.Round.id)).where(models.Round.id < rnd.id)
        )
        data.next_round_id = session.scalar(select(func.min(models.Round.id)).where(models.Round.id > rnd.id))
    data.weights = weights_view(session, settings, metagraph, rnd, entries)
    data.history = round_history(session)
    return data
