"""Scores and weights: which submissions count, the leaderboard, and a round's weight vector.

A submission counts when validators found it correct (pass), its miner passed logit verification
(when ENABLE_LOGIT_VERIFICATION), its speed-up — measured by validators, never reported by the
miner — is at least 1 + WIN_MARGIN, and enough validators judged it: min(EVALUATIONS_PER_SUBMISSION,
validators at work in the round other than its miner), so one validator never decides alone while
others could judge. Each hotkey's best counted submission competes; the best
len(WEIGHT_SPLIT) hotkeys get the shares in order, ties going to the earlier commitment. Weight
that nobody earns, and the share of a winner no longer registered, goes to BURN_UID.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from quasar import schemas
from quasar.chain import Metagraph
from quasar.config import Settings
from validator_api import models


class Standing(Protocol):
    """What ranking reads of a submission: a whole row, or only the columns of round_standings."""

    id: int
    hotkey: str
    status: str
    score: float | None
    score_ci_low: float | None
    score_ci_high: float | None
    inconclusive: bool | None
    median_ms: float | None
    evaluations: int | None
    correct: bool | None
    verified: bool | None
    reason: str | None
    sandbox: str | None
    commit_block: int


_STANDING_COLUMNS = tuple(getattr(models.Submission, name) for name in Standing.__annotations__)


def round_standings(session: Session, round_id: int) -> Sequence[Standing]:
    """A round's submissions, only the columns ranking reads. Whole ORM objects took about half of
    GET /v1/leaderboard's time at 2,000 submissions (py-spy); pydantic and JSON take most of the rest."""
    rows = session.execute(select(*_STANDING_COLUMNS).where(models.Submission.round_id == round_id)).all()
    return rows  # type: ignore[return-value]


def round_validators(session: Session, round_id: int) -> frozenset[str]:
    """The validators at work in a round: every hotkey that claimed a job of one of its submissions."""
    rows = session.scalars(
        select(models.JobAssignment.validator_hotkey)
        .join(models.Submission, models.Submission.id == models.JobAssignment.submission_id)
        .where(models.Submission.round_id == round_id)
        .distinct()
    ).all()
    return frozenset(rows)


def required_evaluations(sub: Standing, settings: Settings, validators: frozenset[str]) -> int:
    """Validators that must have judged ``sub`` before it counts (a validator never judges its own)."""
    assert settings.evaluations_per_submission is not None
    able = len(validators - {sub.hotkey})
    return max(1, min(settings.evaluations_per_submission, able))


def is_counted(sub: Standing, settings: Settings, validators: frozenset[str]) -> bool:
    if sub.status != "scored" or not sub.correct or sub.score is None:
        return False
    if (sub.evaluations or 0) < required_evaluations(sub, settings, validators):
        return False
    if settings.enable_logit_verification and not sub.verified:
        return False
    # Where the evaluation measured an interval, its low end must clear the margin too, and an
    # inconclusive measurement never counts (results without an interval are judged by the score).
    if sub.inconclusive:
        return False
    threshold = 1.0 + settings.win_margin
    return sub.score >= threshold and (sub.score_ci_low is None or sub.score_ci_low >= threshold)


def _rank_key(sub: Standing) -> tuple[float, int, int]:
    return (-(sub.score or 0.0), sub.commit_block, sub.id)


def leaderboard_entries(
    subs: Sequence[Standing], settings: Settings, validators: frozenset[str]
) -> list[schemas.LeaderboardEntry]:
    """Counted submissions first, best score first (ties: earlier commitment); then the rest."""
    counted = sorted((s for s in subs if is_counted(s, settings, validators)), key=_rank_key)
    others = sorted(
        (s for s in subs if not is_counted(s, settings, validators)),
        key=lambda s: (s.score is None, -(s.score or 0.0), s.commit_block, s.id),
    )
    entries = []
    for rank, sub in enumerate(counted, start=1):
        entries.append(_entry(sub, rank, True, required_evaluations(sub, settings, validators)))
    entries.extend(
        _entry(sub, None, False, required_evaluations(sub, settings, validators)) for sub in others
    )
    return entries


def _entry(sub: Standing, rank: int | None, counted: bool, required: int) -> schemas.LeaderboardEntry:
    return schemas.LeaderboardEntry(
        rank=rank,
        submission_id=sub.id,
        hotkey=sub.hotkey,
        status=sub.status,  # type: ignore[arg-type]
        score=sub.score,
        score_ci_low=sub.score_ci_low,
        score_ci_high=sub.score_ci_high,
        inconclusive=sub.inconclusive,
        median_ms=sub.median_ms,
        evaluations=sub.evaluations or 0,
        evaluations_required=required,
        correct=sub.correct,
        verified=sub.verified,
        counted=counted,
        reason=sub.reason,
        sandbox=sub.sandbox,
        commit_block=sub.commit_block,
    )


@dataclass(frozen=True)
class WeightVector:
    uids: list[int]
    weights: list[float]
    hotkeys: list[str | None]
    winner_hotkey: str | None

    def as_json(self) -> dict[str, list[int] | list[float] | list[str | None]]:
        return {"uids": self.uids, "weights": self.weights, "hotkeys": self.hotkeys}


def burn_only(settings: Settings, metagraph: Metagraph | None) -> WeightVector:
    burn_hotkey = _hotkey_of_uid(metagraph, settings.burn_uid)
    return WeightVector([settings.burn_uid], [1.0], [burn_hotkey], None)


def _hotkey_of_uid(metagraph: Metagraph | None, uid: int) -> str | None:
    if metagraph is None:
        return None
    return next((n.hotkey for n in metagraph.neurons if n.uid == uid), None)


def compute_weights(
    subs: Sequence[models.Submission], metagraph: Metagraph, settings: Settings, validators: frozenset[str]
) -> WeightVector:
    best_per_hotkey: dict[str, models.Submission] = {}
    for sub in sorted((s for s in subs if is_counted(s, settings, validators)), key=_rank_key):
        best_per_hotkey.setdefault(sub.hotkey, sub)
    winners = list(best_per_hotkey.values())[: len(settings.weight_split)]
    if not winners:
        return burn_only(settings, metagraph)
    shares: dict[int, float] = {}
    for share, sub in zip(settings.weight_split, winners, strict=False):
        uid = metagraph.uid_of(sub.hotkey)
        # A winner that deregistered cannot be paid; its share is burned rather than re-split.
        target = settings.burn_uid if uid is None else uid
        shares[target] = shares.get(target, 0.0) + share
    unassigned = 1.0 - sum(shares.values())
    if unassigned > 1e-12:
        shares[settings.burn_uid] = shares.get(settings.burn_uid, 0.0) + unassigned
    uids = list(shares)
    return WeightVector(
        uids=uids,
        weights=[round(shares[u], 12) for u in uids],
        hotkeys=[_hotkey_of_uid(metagraph, u) for u in uids],
        winner_hotkey=winners[0].hotkey,
    )
