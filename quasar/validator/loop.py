"""The validator's main loop: one worker thread per device, and the weight setter.

Each worker first checks that the sandbox the operator requires can be built (it claims nothing
while it cannot, and says why), then claims the oldest job it may take, keeps its lease alive while
it evaluates, and posts the result (spooled first). Nothing depends on the validator staying up: if it dies, the lease
lapses and the job is claimed again (by it after a restart, or by another validator); a result
already spooled is posted at the next start. The main thread sets weights whenever a round is
finalized, and every tempo.

``run(once=True)`` works through what is queued now, sets weights once and returns; ``max_jobs``
returns after that many jobs (waiting for jobs to appear). Both are for tests and scripts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from quasar.client import ApiError, ValidatorApiClient
from quasar.schemas import Job, JobResultAccepted
from quasar.validator.lease import LeaseKeeper
from quasar.validator.posting import ResultSpool, flush_spool, post_result
from quasar.validator.weights import WeightSetter
from quasar.validator.worker import JobRunner

log = logging.getLogger("quasar.validator")


@dataclass
class Progress:
    """What the validator has done so far (shared by the workers; read under ``lock``)."""

    claimed: int = 0
    posted: int = 0
    refused: int = 0
    #: Why no job is claimed (the required sandbox cannot be built), or None.
    sandbox_problem: str | None = None
    in_flight: dict[int, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Validator:
    def __init__(
        self,
        *,
        client_factory: Callable[[], ValidatorApiClient],
        runners: list[JobRunner],
        weight_setter: WeightSetter | None,
        spool: ResultSpool,
        stop: threading.Event,
        poll_seconds: float = 5.0,
    ) -> None:
        self.client_factory = client_factory
        self.runners = runners
        self.weight_setter = weight_setter
        self.spool = spool
        self.stop = stop
        self.poll_seconds = poll_seconds
        self.progress = Progress()
        self._max_jobs: int | None = None
        self._once = False
        self._idle = threading.Event()

    # -- jobs --
    def _take_slot(self) -> bool:
        """Reserve one job of ``max_jobs`` (always True without a limit)."""
        with self.progress.lock:
            if self._max_jobs is not None and self.progress.claimed >= self._max_jobs:
                return False
            self.progress.claimed += 1
            return True

    def _release_slot(self) -> None:
        with self.progress.lock:
            self.progress.claimed -= 1

    def _worker(self, runner: JobRunner) -> None:
        client = self.client_factory()
        name = str(runner.device)
        refusal: str | None = "not probed yet"
        try:
            while not self.stop.is_set():
                # No claim without the required sandbox: a job this worker cannot run safely is left
                # to a validator that can, and this one waits for the operator to fix the host.
                problem = runner.sandbox_problem()
                if problem != refusal:
                    if problem is None:
                        log.info(
                            "[%s] sandbox: %s; claiming jobs", name, runner.sandbox or "injected evaluation"
                        )
                    else:
                        log.error("[%s] claiming no jobs: %s", name, problem)
                    refusal = problem
                    with self.progress.lock:
                        self.progress.sandbox_problem = problem
                if problem is not None:
                    if self._once:
                        return
                    self.stop.wait(max(self.poll_seconds, 30.0))
                    continue
                if not self._take_slot():
                    return
                try:
                    job = client.claim_job()
                except ApiError as exc:
                    self._release_slot()
                    log.warning(
                        "[%s] cannot claim a job (%s); trying again in %.0fs", name, exc, self.poll_seconds
                    )
                    self.stop.wait(self.poll_seconds)
                    continue
                if job is None:
                    self._release_slot()
                    if self._once:
                        return
                    self.stop.wait(self.poll_seconds)
                    continue
                self.handle(client, runner, job)
        finally:
            client.close()

    def handle(self, client: ValidatorApiClient, runner: JobRunner, job: Job) -> JobResultAccepted | None:
        """Evaluate one claimed job under a kept-alive lease and post its result."""
        name = str(runner.device)
        log.info(
            "[%s] job %s: submission %s of %s (%s @ %s), attempt %s",
            name, job.job_id, job.submission_id, job.miner_hotkey[:10], job.repo_url, job.commit_sha[:12],
            job.attempt,
        )  # fmt: skip
        with self.progress.lock:
            self.progress.in_flight[job.job_id] = name
        try:
            with LeaseKeeper(client, job.job_id, job.lease_seconds) as lease:
                result = runner.run(job, self.stop)
            if lease.lost.is_set():
                log.warning(
                    "[%s] job %s: the lease was lost during the evaluation; posting anyway", name, job.job_id
                )
            outcome = post_result(client, job.job_id, result, spool=self.spool, stop=self.stop)
        finally:
            with self.progress.lock:
                self.progress.in_flight.pop(job.job_id, None)
        with self.progress.lock:
            if outcome.status == "accepted":
                self.progress.posted += 1
            elif outcome.status == "refused":
                self.progress.refused += 1
        if outcome.accepted is not None:
            log.info(
                "[%s] job %s: %s/%s posted; submission %s is now %s",
                name, job.job_id, result.verdict, result.reason, job.submission_id, outcome.accepted.submission_status,
            )  # fmt: skip
        return outcome.accepted

    # -- the whole validator --
    def run(self, *, once: bool = False, max_jobs: int | None = None) -> None:
        self._once, self._max_jobs = once, max_jobs
        with self.client_factory() as client:
            flushed = flush_spool(client, self.spool, stop=self.stop)
            if flushed:
                log.info("posted %d result(s) left by an earlier run", flushed)
        threads = [
            threading.Thread(target=self._worker, args=(runner,), name=f"worker-{runner.device}", daemon=True)
            for runner in self.runners
        ]
        for thread in threads:
            thread.start()
        log.info(
            "validator running: %d worker(s) on %s",
            len(threads),
            ", ".join(str(r.device) for r in self.runners),
        )
        while any(t.is_alive() for t in threads) and not self.stop.is_set():
            if self.weight_setter is not None and not once:
                self.weight_setter.maybe_set()
            self.stop.wait(min(self.poll_seconds, 5.0))
        if self.stop.is_set():
            # An evaluation in flight cannot be interrupted; its sandbox dies with this process and
            # its lease lapses, so the job is evaluated again. Give finished results a moment to post.
            for thread in threads:
                thread.join(timeout=5.0)
            with self.progress.lock:
                abandoned = dict(self.progress.in_flight)
            for job_id, device in abandoned.items():
                log.warning(
                    "[%s] abandoning job %s: its lease will lapse and it will be evaluated again",
                    device,
                    job_id,
                )
            return
        if once and self.weight_setter is not None:
            self.weight_setter.maybe_set(force=True)
