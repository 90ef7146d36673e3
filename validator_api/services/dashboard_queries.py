"""The owner's dashboard's database reads: what each of its pages shows, as plain data.

`validator_api/dashboard.py` only renders; everything it shows is read here:

* `gather` — `/` and `/?round_id=N`: one round, its leaderboard (its rejected submissions are the
  rows with a reason), the weights validators set and that round's split, the best speed-up per round;
* `miner_page` — `/miners/{hotkey}`: one hotkey's submissions across rounds and every validator's
  result on each (verdict, speed-up and interval, logit check, sandbox);
* `validators_page` — `/validators`: who is at work, the job queue of the shown round, leases and
  their ages, results per validator and the sandboxes they ran under;
* `round_history` — the chart's data, also served as JSON by `GET /v1/history`.

Every list is bounded (the newest N rows) and every count is one GROUP BY, so a page costs the same
on a subnet that has run for a year as on one that started today.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from quasar.chain import Metagraph
from quasar.chain.roles import is_validator
from quasar.config import Settings
from quasar.reasons import REASON_OK
from quasar.schemas import LeaderboardEntry, RoundBest
from validator_api import models
from validator_api.models import utcnow
from validator_api.services.rounds import shown_round
from validator_api.services.scoring import (
    burn_only,
    is_counted,
    leaderboard_entries,
    round_standings,
    round_validators,
)

#: Rounds the chart shows (the newest ones); the round picker links the same ones.
CHART_ROUNDS = 30
#: A miner page lists this many of the hotkey's newest submissions.
MINER_SUBMISSIONS = 100
#: The validators page lists this many newest results and oldest leases.
RECENT_RESULTS = 50
MAX_LEASES = 100
#: Sandbox descriptions listed per validator (the most used first).
SANDBOXES_PER_VALIDATOR = 5
#: A validator counts as active while it holds a lease or claimed or reported within this long. It
#: polls every few seconds, but only a claim or a result leaves a trace in the database, and a
#: quiet hour between rounds is normal; longer than that with jobs queued means it is gone.
ACTIVE_SECONDS = 3600.0


class NotFound(Exception):
    """The page asked for does not exist (unknown round or hotkey); the message says what was asked."""


# --- `/`: one round ---------------------------------------------------------------------------
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


# --- `/miners/{hotkey}` -----------------------------------------------------------------------
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


# --- `/validators` ----------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueCounts:
    """The jobs of one round by state; `retried` counts jobs past their first attempt (any state)."""

    round_id: int
    round_status: str
    queued: int
    leased: int
    lapsed: int
    retried: int
    done: int


@dataclass(frozen=True)
class Lease:
    job_id: int
    submission_id: int
    round_id: int
    miner_hotkey: str
    validator_hotkey: str | None
    attempt: int
    age_seconds: float | None  # since the claim
    expires_in_seconds: float | None  # negative: lapsed, claimable by another validator


@dataclass(frozen=True)
class RecentResult:
    id: int
    created_at: datetime
    validator_hotkey: str
    submission_id: int
    round_id: int
    miner_hotkey: str
    attempt: int
    verdict: str
    reason: str
    speedup: float | None
    sandbox: str | None
    outlier: bool | None


@dataclass
class ValidatorRow:
    hotkey: str
    uid: int | None = None
    #: Holds the validator role on the chain now (None: the chain could not be read).
    permitted: bool | None = None
    stake: float | None = None
    leased: int = 0
    oldest_lease_seconds: float | None = None
    last_claim: datetime | None = None
    last_result: datetime | None = None
    passes: int = 0
    fails: int = 0
    errors: int = 0
    outliers: int = 0
    in_round: int = 0
    sandboxes: list[tuple[str, int]] = field(default_factory=list)
    state: str = "never"  # working (holds a live lease) | recent | idle | never

    @property
    def active(self) -> bool:
        return self.state in ("working", "recent")

    @property
    def results(self) -> int:
        return self.passes + self.fails + self.errors


@dataclass
class ValidatorsData:
    network: str
    netuid: int
    now: datetime
    chain_ok: bool
    queue: QueueCounts | None = None
    validators: list[ValidatorRow] = field(default_factory=list)
    leases: list[Lease] = field(default_factory=list)
    leases_total: int = 0
    recent: list[RecentResult] = field(default_factory=list)
    lease_seconds: int = 0
    active_seconds: float = ACTIVE_SECONDS


def _seconds(later: datetime, earlier: datetime | None) -> float | None:
    return None if earlier is None else (later - earlier).total_seconds()


def validators_page(
    session: Session, settings: Settings, metagraph: Metagraph | None, *, now: datetime | None = None
) -> ValidatorsData:
    now = now or utcnow()
    data = ValidatorsData(
        network=settings.subtensor_network, netuid=settings.netuid, now=now, chain_ok=metagraph is not None,
        lease_seconds=settings.job_lease_seconds,
    )  # fmt: skip
    J, S, R, A = models.Job, models.Submission, models.Result, models.JobAssignment
    rnd = shown_round(session)
    if rnd is not None:
        claimed = J.status == "claimed"
        counts = session.execute(
            select(
                func.sum(case((J.status == "queued", 1), else_=0)),
                func.sum(case((claimed & (J.lease_expires_at >= now), 1), else_=0)),
                func.sum(case((claimed & (J.lease_expires_at < now), 1), else_=0)),
                func.sum(case((J.attempt > 1, 1), else_=0)),
                func.sum(case((J.status == "done", 1), else_=0)),
            )
            .join(S, S.id == J.submission_id)
            .where(S.round_id == rnd.id)
        ).one()
        queued, leased, lapsed, retried, done = (int(c or 0) for c in counts)
        data.queue = QueueCounts(rnd.id, rnd.status, queued, leased, lapsed, retried, done)

    rows: dict[str, ValidatorRow] = {}

    def row(hotkey: str) -> ValidatorRow:
        return rows.setdefault(hotkey, ValidatorRow(hotkey=hotkey))

    if metagraph is not None:
        for neuron in metagraph.neurons:
            if is_validator(neuron, settings.min_validator_stake):
                row(neuron.hotkey)

    # Leases: every claimed job (only the open round has any; finalizing ends them), oldest first.
    lease_query = (
        select(J.id, J.submission_id, J.attempt, J.validator_hotkey, J.claimed_at, J.lease_expires_at,
               S.round_id, S.hotkey)
        .join(S, S.id == J.submission_id)
        .where(J.status == "claimed")
    )  # fmt: skip
    data.leases_total = session.scalar(select(func.count()).select_from(J).where(J.status == "claimed")) or 0
    for job in session.execute(lease_query.order_by(J.claimed_at, J.id).limit(MAX_LEASES)):
        expires = _seconds(job.lease_expires_at, now) if job.lease_expires_at else None
        data.leases.append(
            Lease(
                job_id=job.id, submission_id=job.submission_id, round_id=job.round_id, miner_hotkey=job.hotkey,
                validator_hotkey=job.validator_hotkey, attempt=job.attempt,
                age_seconds=_seconds(now, job.claimed_at), expires_in_seconds=expires,
            )
        )  # fmt: skip
    # Per validator, from aggregates over all jobs (not only the listed ones).
    for holder, live, oldest in session.execute(
        select(J.validator_hotkey, func.count(), func.min(J.claimed_at))
        .where(J.status == "claimed", J.lease_expires_at >= now, J.validator_hotkey.is_not(None))
        .group_by(J.validator_hotkey)
    ):
        entry = row(holder)
        entry.leased = int(live)
        entry.oldest_lease_seconds = _seconds(now, oldest)
    for hotkey, last in session.execute(
        select(A.validator_hotkey, func.max(A.created_at)).group_by(A.validator_hotkey)
    ):
        row(hotkey).last_claim = last
    for hotkey, last in session.execute(
        select(J.validator_hotkey, func.max(J.claimed_at))
        .where(J.validator_hotkey.is_not(None))
        .group_by(J.validator_hotkey)
    ):
        entry = row(hotkey)
        if last is not None and (entry.last_claim is None or last > entry.last_claim):
            entry.last_claim = last  # a lapsed lease taken again keeps its first assignment's time
    for hotkey, verdict, count, last in session.execute(
        select(R.validator_hotkey, R.verdict, func.count(), func.max(R.created_at)).group_by(
            R.validator_hotkey, R.verdict
        )
    ):
        entry = row(hotkey)
        if verdict == "pass":
            entry.passes = int(count)
        elif verdict == "fail":
            entry.fails = int(count)
        else:
            entry.errors += int(count)
        if last is not None and (entry.last_result is None or last > entry.last_result):
            entry.last_result = last
    for hotkey, count in session.execute(
        select(R.validator_hotkey, func.count()).where(R.outlier.is_(True)).group_by(R.validator_hotkey)
    ):
        row(hotkey).outliers = int(count)
    if rnd is not None:
        for hotkey, count in session.execute(
            select(R.validator_hotkey, func.count())
            .join(S, S.id == R.submission_id)
            .where(S.round_id == rnd.id)
            .group_by(R.validator_hotkey)
        ):
            row(hotkey).in_round = int(count)
    sandboxes: dict[str, list[tuple[str, int]]] = {}
    # Grouped by the bare column (NULL is a group of its own): PostgreSQL refuses a GROUP BY
    # expression with a bound parameter, such as coalesce(sandbox, ''), as another expression.
    for hotkey, sandbox, count in session.execute(
        select(R.validator_hotkey, R.sandbox, func.count()).group_by(R.validator_hotkey, R.sandbox)
    ):
        sandboxes.setdefault(hotkey, []).append((sandbox or "", int(count)))
    for hotkey, found in sandboxes.items():
        row(hotkey).sandboxes = sorted(found, key=lambda p: (-p[1], p[0]))[:SANDBOXES_PER_VALIDATOR]

    for entry in rows.values():
        if metagraph is not None:
            neuron = metagraph.get(entry.hotkey)
            entry.uid = None if neuron is None else neuron.uid
            entry.stake = None if neuron is None else neuron.stake
            entry.permitted = is_validator(neuron, settings.min_validator_stake)
        seen = max((t for t in (entry.last_claim, entry.last_result) if t is not None), default=None)
        if entry.leased:
            entry.state = "working"
        elif seen is None:
            entry.state = "never"
        elif (now - seen).total_seconds() <= ACTIVE_SECONDS:
            entry.state = "recent"
        else:
            entry.state = "idle"
    order = {"working": 0, "recent": 1, "idle": 2, "never": 3}
    data.validators = sorted(
        rows.values(),
        key=lambda v: (order[v.state], -(max((t.timestamp() for t in (v.last_claim, v.last_result) if t), default=0.0)), v.hotkey),
    )  # fmt: skip

    for r in session.execute(
        select(R.id, R.created_at, R.validator_hotkey, R.submission_id, R.attempt, R.verdict, R.reason,
               R.speedup, R.sandbox, R.outlier, S.round_id, S.hotkey)
        .join(S, S.id == R.submission_id)
        .order_by(R.id.desc())
        .limit(RECENT_RESULTS)
    ):  # fmt: skip
        data.recent.append(
            RecentResult(
                id=r.id, created_at=r.created_at, validator_hotkey=r.validator_hotkey,
                submission_id=r.submission_id, round_id=r.round_id, miner_hotkey=r.hotkey, attempt=r.attempt,
                verdict=r.verdict, reason=r.reason, speedup=r.speedup, sandbox=r.sandbox, outlier=r.outlier,
            )
        )  # fmt: skip
    return data
