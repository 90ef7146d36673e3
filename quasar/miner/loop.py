"""The miner's cycle: improve the kernel, then submit it through commit–reveal, then follow its evaluation.

One cycle (``--once`` runs exactly one):

1. Finish any pending submission from the state directory first (a restart lands here): commit it if
   that never reached the API, else wait for its reveal block, push, reveal.
2. Let the strategy try to make HEAD faster (each candidate benched like validators do).
3. If HEAD passes, reaches MINER_MIN_SPEEDUP and was never submitted: commit locally (already done by
   the strategy), persist salt and payload, commit the hash to the API, wait for the reveal block,
   push the commit to the public remote — only now, so a watcher of public forks cannot copy the
   kernel and commit it first — and reveal.
4. Poll revealed submissions and log how their evaluation ends.

Between cycles the miner sleeps OPTIMIZATION_INTERVAL seconds (still following evaluations). Every
step is persisted before the call it depends on, so SIGKILL at any point and a restart never lose a
commitment and never commit the same pending state twice; SIGTERM/SIGINT stop it between steps.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from quasar import commitment
from quasar.chain import Chain, ChainUnavailable
from quasar.client import (
    ApiError,
    ApiUnavailable,
    Conflict,
    InvalidRequest,
    NotFound,
    ServerError,
    ValidatorApiClient,
)
from quasar.miner.forge import SubmitRemote, push
from quasar.miner.state import (
    FinishedSubmission,
    MinerState,
    Payload,
    PendingSubmission,
    StateStore,
)
from quasar.miner.strategies.base import Context, Strategy
from quasar.miner.workspace import GitError

log = logging.getLogger("quasar.miner")

#: Submission statuses after which there is nothing more to follow.
FINAL_STATUSES = frozenset({"scored", "rejected", "expired", "duplicate"})


@dataclass
class MinerOptions:
    min_speedup: float = 1.01
    optimization_interval: float = 300.0
    block_time_seconds: float = 12.0
    inference_url: str | None = None
    #: How often evaluations are polled while the miner sleeps between cycles.
    follow_interval: float = 30.0


class Miner:
    def __init__(
        self,
        *,
        client: ValidatorApiClient,
        chain: Chain,
        remote: SubmitRemote,
        strategy: Strategy,
        store: StateStore,
        context: Context,
        options: MinerOptions,
        stop: threading.Event,
    ) -> None:
        self.client = client
        self.chain = chain
        self.remote = remote
        self.strategy = strategy
        self.store = store
        self.ctx = context
        self.options = options
        self.stop = stop
        self.workspace = context.workspace
        self._last_status: dict[int, str] = {}

    @property
    def state(self) -> MinerState:
        return self.ctx.state

    def save(self) -> None:
        self.store.save(self.state)

    # -- main loop --
    def run(self, *, once: bool = False) -> None:
        while not self.stop.is_set():
            self.cycle()
            if once or self.stop.is_set():
                break
            self._sleep_following(self.options.optimization_interval)
        if once and not self.stop.is_set():
            self.follow()

    def cycle(self) -> None:
        if self.state.pending is not None and not self.finish_pending():
            pending = self.state.pending
            if pending is None or pending.phase != "prepared":
                return  # committed and still waiting (stopped, or the API/chain is away): next cycle
            # Nothing was recorded (no open round ...): keep improving; a better kernel replaces it.
        if self.stop.is_set():
            return
        outcomes = self.strategy.improve(self.ctx)
        kept = [o for o in outcomes if o.kept]
        if outcomes:
            log.info("%s: %d candidate(s) tried, %d kept", self.strategy.name, len(outcomes), len(kept))
        if self.stop.is_set():
            return
        self.maybe_submit()
        if self.state.pending is not None:
            self.finish_pending()
        self.follow()

    # -- deciding to submit --
    def maybe_submit(self) -> None:
        head = self.ctx.head()
        sha = self.workspace.head()
        if not head.passed:
            log.info("not submitting %s: the bench does not pass it (%s)", sha[:12], head.summary())
            return
        if head.speedup is not None and head.speedup < self.options.min_speedup:
            log.info(
                "not submitting %s: speed-up %.3f is below MINER_MIN_SPEEDUP=%g",
                sha[:12], head.speedup, self.options.min_speedup,
            )  # fmt: skip
            return
        if head.tree_hash in self.state.submitted_trees:
            log.info("kernel %s (tree %s) is already submitted; nothing new", sha[:12], head.tree_hash[:12])
            return
        pending = self.state.pending
        if pending is not None:
            if pending.phase != "prepared" or pending.tree_hash == head.tree_hash:
                return
            log.info("replacing the unsent submission of %s by %s", pending.payload.commit_sha[:12], sha[:12])
        salt = commitment.new_salt()
        payload = Payload(
            repo_url=self.remote.repo_url, commit_sha=sha, inference_url=self.options.inference_url
        )
        self.state.pending = PendingSubmission(
            phase="prepared",
            salt_hex=salt.hex(),
            payload=payload,
            commitment_hash=payload.commitment(salt),
            tree_hash=head.tree_hash,
            speedup=head.speedup,
        )
        self.save()  # salt and payload are on disk before anything leaves the machine
        log.info("submitting %s (%s)", sha[:12], head.summary())

    # -- commit, wait, push, reveal --
    def finish_pending(self) -> bool:
        """Advance the pending submission as far as possible; True when none is left pending."""
        pending = self.state.pending
        if pending is None:
            return True
        if pending.phase in ("prepared", "committing") and not self._commit(pending):
            return False
        if pending.phase in ("committed", "pushed"):
            return self._reveal_when_due(pending)
        return self.state.pending is None

    def _commit(self, pending: PendingSubmission) -> bool:
        resend = pending.phase == "committing"
        pending.phase = "committing"
        self.save()  # from here on the API may hold this hash: never make a second one for this state
        try:
            answer = self.client.commit(pending.commitment_hash)
        except Conflict as exc:
            if exc.code == "duplicate_commitment" and resend:
                return self._recover_commit(pending)
            if exc.code in ("no_open_round", "commit_too_late"):
                log.info("%s; will commit at the next cycle", exc.detail)
            else:
                log.warning("commit refused: %s", exc)
            pending.phase = "prepared"
            self.save()
            return False
        except (ApiUnavailable, ServerError) as exc:
            # It may have been recorded: stay in "committing"; re-sending the same hash is safe.
            log.warning("commit not confirmed (%s); will check again", exc)
            return False
        except ApiError as exc:
            log.error("commit refused: %s", exc)
            pending.phase = "prepared"
            self.save()
            return False
        pending.phase = "committed"
        pending.submission_id = answer.submission_id
        pending.round_id = answer.round_id
        pending.commit_block = answer.commit_block
        pending.reveal_block = answer.reveal_block
        pending.reveal_deadline_block = answer.reveal_deadline_block
        self.state.submitted_trees.append(pending.tree_hash)
        self.save()
        log.info(
            "committed submission %d (round %d) at block %d; reveal from block %d to %d",
            answer.submission_id, answer.round_id, answer.commit_block, answer.reveal_block,
            answer.reveal_deadline_block,
        )  # fmt: skip
        return True

    def _recover_commit(self, pending: PendingSubmission) -> bool:
        """The API already holds this hash (sent before a crash): find its submission id."""
        try:
            sub = self.client.get_submission_by_commitment(pending.commitment_hash)
        except NotFound as exc:
            if exc.code != "submission_not_found":  # not the API's answer about the hash: retry later
                log.warning("cannot look up the earlier commitment yet: %s", exc)
                return False
            sub = None
        except ApiError as exc:
            log.warning("cannot look up the earlier commitment yet: %s", exc)
            return False
        if sub is not None and sub.hotkey == self.client.hotkey and sub.status == "committed":
            pending.phase = "committed"
            pending.submission_id, pending.round_id = sub.id, sub.round_id
            pending.commit_block, pending.reveal_block = sub.commit_block, sub.reveal_block
            pending.reveal_deadline_block = sub.reveal_deadline_block
            self.state.submitted_trees.append(pending.tree_hash)
            self.save()
            log.info("found the earlier commitment as submission %d", sub.id)
            return True
        log.error("the API holds this commitment but not as an open submission of ours; dropping it")
        self._finish(pending, "lost")
        return False

    def _reveal_when_due(self, pending: PendingSubmission) -> bool:
        assert pending.reveal_block is not None and pending.reveal_deadline_block is not None
        poll = min(max(self.options.block_time_seconds / 2, 0.2), 2.0)
        announced = False
        while not self.stop.is_set():
            try:
                block = self.chain.current_block()
            except ChainUnavailable as exc:
                log.warning("chain unavailable (%s); retrying", exc)
                self.stop.wait(5 * poll)
                continue
            if block > pending.reveal_deadline_block:
                log.error(
                    "submission %s missed its reveal window (closed at block %d, now %d)",
                    pending.submission_id, pending.reveal_deadline_block, block,
                )  # fmt: skip
                self._finish(pending, "expired")
                return True
            if block < pending.reveal_block:
                if not announced:
                    log.info("waiting for block %d to reveal (now %d)", pending.reveal_block, block)
                    announced = True
                self.stop.wait(poll)
                continue
            if pending.phase == "committed":
                try:
                    push(
                        self.workspace,
                        self.remote,
                        pending.payload.commit_sha,
                        tag=f"quasar-submission-{pending.submission_id}",
                    )
                except GitError as exc:
                    log.warning("push failed (%s); retrying", exc)
                    self.stop.wait(5 * poll)
                    continue
                pending.phase = "pushed"
                self.save()
                log.info("pushed %s to %s", pending.payload.commit_sha[:12], self.remote.push_url)
            if self._reveal(pending):
                return True
            self.stop.wait(poll)
        return False

    def _reveal(self, pending: PendingSubmission) -> bool:
        assert pending.submission_id is not None
        try:
            sub = self.client.reveal(pending.submission_id, pending.salt_hex, pending.payload.wire())
        except Conflict as exc:
            if exc.code == "reveal_too_early":
                return False
            if exc.code == "already_revealed":
                log.info("submission %d was already revealed", pending.submission_id)
                self._revealed(pending)
                return True
            if exc.code in ("reveal_window_closed", "round_ended"):
                log.error("submission %d: %s", pending.submission_id, exc.detail)
                self._finish(pending, "expired")
                return True
            log.warning("reveal refused: %s", exc)
            return False
        except InvalidRequest as exc:
            log.error("reveal of submission %d refused, giving it up: %s", pending.submission_id, exc)
            self._finish(pending, f"refused:{exc.code}")
            return True
        except (ApiUnavailable, ServerError) as exc:
            log.warning("reveal not confirmed (%s); retrying", exc)
            return False
        except ApiError as exc:
            log.warning("reveal refused: %s", exc)
            return False
        log.info("revealed submission %d at block %s (status %s)", sub.id, sub.revealed_block, sub.status)
        self._revealed(pending)
        return True

    def _revealed(self, pending: PendingSubmission) -> None:
        assert pending.submission_id is not None
        if pending.submission_id not in self.state.following:
            self.state.following.append(pending.submission_id)
        self.state.pending = None
        self.save()

    def _finish(self, pending: PendingSubmission, status: str) -> None:
        if status != "revealed" and pending.tree_hash in self.state.submitted_trees:
            self.state.submitted_trees.remove(pending.tree_hash)  # never evaluated: may be submitted again
        self.state.finish(
            FinishedSubmission(
                submission_id=pending.submission_id,
                tree_hash=pending.tree_hash,
                commit_sha=pending.payload.commit_sha,
                status=status,
            )
        )
        self.state.pending = None
        self.save()

    # -- evaluation --
    def follow(self) -> None:
        """Poll every revealed submission once; log changes and how each ends."""
        for submission_id in list(self.state.following):
            try:
                sub = self.client.get_submission(submission_id)
            except ApiError as exc:
                log.debug("cannot read submission %d yet: %s", submission_id, exc)
                continue
            if self._last_status.get(submission_id) != sub.status:
                self._last_status[submission_id] = sub.status
                log.info(
                    "submission %d: %s%s%s", submission_id, sub.status,
                    "" if sub.score is None else f", speed-up {sub.score:.3f}",
                    "" if not sub.reason else f" ({sub.reason})",
                )  # fmt: skip
            if sub.status in FINAL_STATUSES:
                self.state.following.remove(submission_id)
                self.state.finish(
                    FinishedSubmission(
                        submission_id=submission_id,
                        tree_hash=sub.kernel_tree_hash or "",
                        commit_sha=sub.commit_sha or "",
                        status=sub.status,
                        score=sub.score,
                        reason=sub.reason,
                    )
                )
                self.save()

    def _sleep_following(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stop.wait(min(left, self.options.follow_interval))
            if self.state.following:
                self.follow()
