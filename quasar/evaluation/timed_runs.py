"""Timing a submission against the baseline where the submission cannot move work out of the clock.

The parent owns every timed run's buffers (``arena``: one sealed memfd per worker) and two sandboxed
workers: one runs the trusted baseline and never imports submission code, the other the submission.
For each batch of ``slots`` back-to-back calls, with the worker frozen (every process of its run
SIGSTOPped, ``SandboxProcess.freeze``):

1. the parent draws fresh seeds, writes the inputs into the slots and fills the outputs with NaN;
2. it starts its clock, thaws the worker and sends ``batch``;
3. on the reply it freezes the worker again and stops its clock;
4. only then does it decide which outputs to check, and copies those out.

So from the moment a run's inputs exist until its outputs are out of the submission's reach, every
step lies inside the interval, and the interval is measured by the parent's own clock. The baseline
and the submission alternate batch by batch on the same inputs (which one goes first alternates too),
so warm-up and drift hit both alike; while one runs the other is frozen. The speed-up is the ratio of
the median per-call times with a paired-bootstrap 95% interval (``timing_stats``); more pairs are
measured while the interval straddles 1 + ``win_margin``, up to a bound, and a result still undecided
then is ``inconclusive``.

This path runs on CPU. On GPU the buffers would have to be device memory shared across the sandbox
(CUDA virtual-memory handles exported as file descriptors), which is not built yet: GPU timing still
uses the worker's own loop (``evaluate._Evaluation._time``), as ``docs/security.md`` says.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from quasar.bench.cases import CaseSpec, make_inputs
from quasar.bench.schema import VERDICT_ERROR, VERDICT_FAIL

from .arena import Arena, slot_layout
from .channel import Channel, Stop, fail_from_error
from .sandbox import FreezeFailed
from .timing_stats import SpeedupEstimate, estimate

#: Reason when a worker's processes could not be frozen between batches.
REASON_FREEZE_FAILED = "freeze_failed"


@dataclass
class ComparisonPlan:
    """How many batches to time: calls per batch, warm-up pairs, and the bounds on measured pairs."""

    slots: int = 4
    warmup_pairs: int = 1
    min_pairs: int = 8
    max_pairs: int = 24
    #: Probability that a submission call's output is checked (decided after its batch was frozen).
    sample_probability: float = 0.3
    min_samples: int = 3


@dataclass
class Comparison:
    estimate: SpeedupEstimate
    inconclusive: bool
    #: Per-call times of the submission's measured batches (ms).
    submission_ms: list[float]
    baseline_ms: list[float]
    #: ``{run: seed}`` of the submission calls whose outputs were saved for the checker.
    samples: dict[int, int] = field(default_factory=dict)
    #: What a batch of no calls cost on the baseline's worker (thaw, round trip, freeze), in ms; taken
    #: off every batch of both sides.
    empty_batch_ms: float = 0.0
    #: What each worker said its batches took per call (untrusted; for the log).
    inside_ms: dict[str, list[float]] = field(default_factory=dict)


class TimedComparison:
    """Alternating batches of the baseline and the submission in their own sandboxed workers."""

    def __init__(
        self, spec: CaseSpec, plan: ComparisonPlan, threshold: float, sample_dir: Path,
        call: Callable[..., dict[str, Any]],
    ) -> None:  # fmt: skip
        """``call(channel, side, op, **data)`` sends one command to a worker and returns its reply,
        raising :class:`Stop` for a dead or hung worker (the caller knows how to word that)."""
        self.spec, self.plan, self.threshold, self.sample_dir = spec, plan, threshold, sample_dir
        self._call = call
        layout = slot_layout(spec)
        self.arenas = {
            "baseline": Arena.create(layout, plan.slots),
            "entry": Arena.create(layout, plan.slots),
        }
        self.kernel_seconds = 0.0
        self.empty_batch_ms = 0.0

    def fds(self, side: str) -> tuple[int, ...]:
        return (self.arenas[side].fd,)

    def close(self) -> None:
        for arena in self.arenas.values():
            arena.close()

    def attach(self, side: str, channel: Channel) -> None:
        """Tell a started worker where its buffers are; it stays frozen until its first batch."""
        reply = self._call(
            channel, side, "arena", fd=self.arenas[side].fd, slots=self.plan.slots, target=side
        )
        if not reply.get("ok"):
            verdict = VERDICT_FAIL if side == "entry" else VERDICT_ERROR
            raise Stop(
                verdict, "kernel_exception", f"{side}: could not map the shared buffers: {reply.get('error')}"
            )
        self._freeze(side, channel)

    def _freeze(self, side: str, channel: Channel) -> None:
        try:
            channel.process.freeze()
        except FreezeFailed as exc:
            # Our own machinery failing (a process in uninterruptible sleep for seconds): not the
            # submission's fault on its face, so the job goes to another validator.
            raise Stop(VERDICT_ERROR, REASON_FREEZE_FAILED, f"{side}: {exc}") from None

    def _write_inputs(self, seeds: list[int]) -> None:
        for slot, seed in enumerate(seeds):
            fresh = make_inputs(self.spec, seed, "cpu")
            for arena in self.arenas.values():
                q, k, v, beta = arena.inputs(slot)
                q.copy_(fresh.q)
                k.copy_(fresh.k)
                v.copy_(fresh.v)
                beta.copy_(fresh.beta)
                # An output the kernel never writes reads back as NaN.
                arena.output(slot).fill_(float("nan"))

    def _batch(self, side: str, channel: Channel, slots: int | None = None) -> tuple[float, dict[str, Any]]:
        """One frozen-to-frozen batch: its per-call time on the parent's clock (less the trusted cost
        of an empty batch), and the reply."""
        slots = self.plan.slots if slots is None else slots
        t0 = time.perf_counter()
        channel.process.thaw()
        reply = self._call(channel, side, "batch", slots=list(range(slots)))
        self._freeze(side, channel)
        elapsed = (time.perf_counter() - t0) * 1e3
        per_call = max(elapsed - self.empty_batch_ms, 0.0) / max(slots, 1)
        if not reply.get("ok"):
            error = str(reply.get("error"))
            if side == "entry":
                raise fail_from_error(error, "timed batch")
            raise Stop(VERDICT_ERROR, "harness_error", f"baseline batch: {error}")
        return per_call, reply

    def measure_empty_batch(self, baseline: Channel) -> float:
        """What thawing, an empty ``batch`` and freezing cost, measured on the trusted baseline's
        worker: subtracted from every batch of both sides (the submission cannot inflate it)."""
        costs = [self._batch("baseline", baseline, slots=0)[0] for _ in range(7)]
        self.empty_batch_ms = statistics.median(costs)
        return self.empty_batch_ms

    def run(self, baseline: Channel, entry: Channel) -> Comparison:
        plan = self.plan
        self.measure_empty_batch(baseline)
        pairs: list[tuple[float, float]] = []
        samples: dict[int, int] = {}
        inside: dict[str, list[float]] = {"baseline": [], "entry": []}
        run = 0
        number = 0
        while True:
            seeds = [secrets.randbits(62) for _ in range(plan.slots)]
            self._write_inputs(seeds)
            order = [("baseline", baseline), ("entry", entry)]
            if number % 2:
                order.reverse()
            times: dict[str, float] = {}
            for side, channel in order:
                times[side], reply = self._batch(side, channel)
                inside[side].append(float(reply.get("inside_ms") or 0.0) / plan.slots)
            # The submission is frozen: choose what to check now, and copy it out of its reach.
            for slot, seed in enumerate(seeds):
                if number >= plan.warmup_pairs and self._should_sample(samples):
                    samples[run] = seed
                    torch.save(
                        {"o": self.arenas["entry"].output(slot).clone()}, self.sample_dir / f"timed_{run}.pt"
                    )
                if number >= plan.warmup_pairs:
                    run += 1
            self.kernel_seconds += times["entry"] * plan.slots / 1e3
            if number >= plan.warmup_pairs:
                pairs.append((times["baseline"], times["entry"]))
            number += 1
            if len(pairs) >= plan.min_pairs:
                est = estimate(pairs, seed=secrets.randbits(32))
                if est.decided(self.threshold) or len(pairs) >= plan.max_pairs:
                    break
        return Comparison(
            estimate=est, inconclusive=not est.decided(self.threshold),
            submission_ms=[s for _, s in pairs], baseline_ms=[b for b, _ in pairs], samples=samples,
            empty_batch_ms=self.empty_batch_ms, inside_ms=inside,
        )  # fmt: skip

    def _should_sample(self, samples: dict[int, int]) -> bool:
        """Check a call's output with the plan's probability; the first batches make up ``min_samples``."""
        if len(samples) < self.plan.min_samples:
            return True
        return secrets.randbelow(10_000) < int(self.plan.sample_probability * 10_000)
