"""`/validators`: who is at work, the shown round's job queue, leases, results and their sandboxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from quasar.chain import Metagraph
from quasar.chain.roles import is_validator
from quasar.config import Settings
from validator_api import models
from validator_api.models import utcnow
from validator_api.services.rounds import shown_round

#: The validators page lists this many newest results and oldest leases.
RECENT_RESULTS = 50
MAX_LEASES = 100
#: Sandbox descriptions listed per validator (the most used first).
SANDBOXES_PER_VALIDATOR = 5
#: A validator counts as active while it holds a lease or claimed or reported within this long. It
#: polls every few seconds, but only a claim or a result leaves a trace in the database, and a
#: quiet hour between rounds is normal; longer than that with jobs queued means it is gone.
ACTIVE_SECONDS = 3600.0


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
