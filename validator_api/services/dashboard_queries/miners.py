"""`/miners/{hotkey}`: one hotkey's submissions across rounds and every validator's result on each."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quasar.chain import Metagraph
from quasar.config import Settings
from validator_api import models
from validator_api.services.dashboard_queries.common import NotFound
from validator_api.services.scoring import (
    is_counted,
)

#: A miner page lists this many of the hotkey's newest submissions.
MINER_SUBMISSIONS = 100


@dataclass(frozen=True)
class ResultView:
    """One validator's result on a submission."""

    validator_hotkey: str
    attempt: int
    verdict: str
    reason: str
    detail: str | None
    speedup: float | None
    speedup_ci_low: float | None
    speedup_ci_high: float | None
    inconclusive: bool | None
    median_ms: float | None
    baseline_ms: float | None
    sandbox: str | None
    logit_verdict: str | None
    logit_reason: str | None
    logit_metrics: dict[str, float]
    outlier: bool | None
    created_at: datetime


@dataclass(frozen=True)
class MinerSubmission:
    id: int
    round_id: int
    round_status: str
    status: str
    reason: str | None
    score: float | None
    score_ci_low: float | None
    score_ci_high: float | None
    inconclusive: bool | None
    median_ms: float | None
    correct: bool | None
    verified: bool | None
    counted: bool
    won: bool
    evaluations: int
    repo_url: str | None
    commit_sha: str | None
    sandbox: str | None
    duplicate_of: int | None
    commit_block: int
    results: list[ResultView] = field(default_factory=list)


@dataclass
class MinerData:
    network: str
    netuid: int
    hotkey: str
    uid: int | None
    registered: bool | None  # None: the chain could not be read
    submissions: list[MinerSubmission] = field(default_factory=list)
    total: int = 0
    rounds_won: list[int] = field(default_factory=list)
    logit_verification: bool = True


def _logit_parts(check: Any) -> tuple[str | None, str | None, dict[str, float]]:
    # Stored from a validated LogitCheck, but read defensively: a page must not fail on one odd row.
    if not isinstance(check, dict):
        return None, None, {}
    verdict, reason, metrics = check.get("verdict"), check.get("reason"), check.get("metrics")
    numbers = (
        {str(k): float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        if isinstance(metrics, dict)
        else {}
    )
    return (
        None if verdict is None else str(verdict),
        None if reason is None else str(reason),
        numbers,
    )


def miner_page(session: Session, settings: Settings, hotkey: str, metagraph: Metagraph | None) -> MinerData:
    """One hotkey's newest submissions with their results; NotFound if it never submitted and is not
    registered (a registered miner without submissions gets an empty page)."""
    neuron = metagraph.get(hotkey) if metagraph is not None else None
    data = MinerData(
        network=settings.subtensor_network,
        netuid=settings.netuid,
        hotkey=hotkey,
        uid=None if neuron is None else neuron.uid,
        registered=None if metagraph is None else neuron is not None,
        logit_verification=settings.enable_logit_verification,
    )
    subs: list[models.Submission] = []
    # Submission.hotkey is String(64): a longer one cannot be there, and is not sent to the database.
    if len(hotkey) <= 64:
        mine = models.Submission.hotkey == hotkey
        subs = list(
            session.scalars(
                select(models.Submission)
                .where(mine)
                .order_by(models.Submission.id.desc())
                .limit(MINER_SUBMISSIONS)
            )
        )
    if not subs and neuron is None:
        asked = hotkey if len(hotkey) <= 64 else hotkey[:64] + "…"  # a page does not echo a whole long path
        raise NotFound(f"No miner with hotkey {asked} has submitted anything, and it is not registered.")
    if subs:
        data.total = session.scalar(select(func.count()).select_from(models.Submission).where(mine)) or 0
    data.rounds_won = list(
        session.scalars(
            select(models.Round.id)
            .where(models.Round.winner_hotkey == hotkey)
            .order_by(models.Round.id.desc())
        )
    )
    if not subs:
        return data
    round_ids = sorted({s.round_id for s in subs})
    rounds = {r.id: r for r in session.scalars(select(models.Round).where(models.Round.id.in_(round_ids)))}
    at_work: dict[int, set[str]] = {}
    for rid, validator in session.execute(
        select(models.Submission.round_id, models.JobAssignment.validator_hotkey)
        .join(models.Submission, models.Submission.id == models.JobAssignment.submission_id)
        .where(models.Submission.round_id.in_(round_ids))
        .distinct()
    ):
        at_work.setdefault(rid, set()).add(validator)
    results: dict[int, list[ResultView]] = {}
    for r in session.scalars(
        select(models.Result)
        .where(models.Result.submission_id.in_([s.id for s in subs]))
        .order_by(models.Result.id)
    ):
        verdict, reason, metrics = _logit_parts(r.logit_check)
        results.setdefault(r.submission_id, []).append(
            ResultView(
                validator_hotkey=r.validator_hotkey, attempt=r.attempt, verdict=r.verdict, reason=r.reason,
                detail=r.detail, speedup=r.speedup, speedup_ci_low=r.speedup_ci_low,
                speedup_ci_high=r.speedup_ci_high, inconclusive=r.inconclusive, median_ms=r.median_ms,
                baseline_ms=r.baseline_ms, sandbox=r.sandbox, logit_verdict=r.logit_verdict or verdict,
                logit_reason=reason, logit_metrics=metrics, outlier=r.outlier, created_at=r.created_at,
            )
        )  # fmt: skip
    counted_ids = {s.id for s in subs if is_counted(s, settings, frozenset(at_work.get(s.round_id, set())))}
    # In a round it won, the hotkey's best counted submission is the one that won it.
    winning: dict[int, models.Submission] = {}
    for sub in sorted(subs, key=lambda s: (-(s.score or 0.0), s.commit_block, s.id)):
        rnd = rounds.get(sub.round_id)
        if sub.id in counted_ids and rnd is not None and rnd.winner_hotkey == hotkey:
            winning.setdefault(sub.round_id, sub)
    for sub in subs:
        rnd = rounds.get(sub.round_id)
        counted = sub.id in counted_ids
        data.submissions.append(
            MinerSubmission(
                id=sub.id, round_id=sub.round_id, round_status=rnd.status if rnd else "?", status=sub.status,
                reason=sub.reason, score=sub.score, score_ci_low=sub.score_ci_low,
                score_ci_high=sub.score_ci_high, inconclusive=sub.inconclusive, median_ms=sub.median_ms,
                correct=sub.correct, verified=sub.verified, counted=counted,
                won=winning.get(sub.round_id) is sub,
                evaluations=sub.evaluations or 0, repo_url=sub.repo_url, commit_sha=sub.commit_sha,
                sandbox=sub.sandbox, duplicate_of=sub.duplicate_of, commit_block=sub.commit_block,
                results=results.get(sub.id, []),
            )
        )  # fmt: skip
    return data

