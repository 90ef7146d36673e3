"""Timing a submission against the baseline where the submission cannot move work out of the clock.

The parent owns every timed run's buffers (``arena``: a sealed memfd on CPU, exported CUDA driver
memory on GPU, one per worker) and two sandboxed workers: one runs the trusted baseline and never
imports submission code, the other the submission. Each pair of batches gets fresh inputs, drawn
from new seeds into the parent's own memory while both workers are frozen (every process of the
run SIGSTOPped, ``SandboxProcess.freeze``). Then, for each side, one batch of ``slots`` calls:

1. the parent starts its clock, copies the inputs into that side's slots and fills the slots'
   outputs with NaN (on GPU it waits for the copies to finish), thaws the worker and sends
   ``batch``;
2. on the reply it freezes the worker again, checks where the worker says each output lies (a
   slot's output field, or on GPU the pool area the kernel allocated from; ``Arena.output_at``)
   and copies every output into its own memory (the snapshot; on GPU it waits for the copy); then
   it stops its clock;
3. only when both sides have run does it judge the snapshots: every call against the baseline's
   output for the same inputs (``_screen``); the calls it now picks at random are kept and, after
   the timing, judged against the fp32 reference (``judge_samples``, in this trusted process: the
   snapshots are plain tensors it copied itself, so no file or pickle is involved).

So from the moment a run's inputs exist in memory the submission can see until its outputs are out
of its reach, every step lies inside the interval, measured by the parent's own clock; the trusted
cost of an empty batch (the same copies, thaw, round trip, freeze and snapshot) is taken off. On GPU
the kernel's output is allocated in the shared memory itself, so no harness copy is in the interval
for a patched worker to skip. On CPU the worker copies each output into its slot, and what the
parent takes to make that copy is taken off every call (a worker patched to skip it gains that
much; ``docs/security.md``). A
frozen process cannot run on the CPU, but GPU work it queued keeps running: an output finished
after the snapshot is judged as the NaN or partial values the snapshot holds, and work left running
to slow the baseline shows as baseline batches slower than the baseline's solo batches, timed before
any submission code was loaded. On GPU a comparison whose baseline median exceeds that solo median by
more than ``baseline_drift``, and a solo median timed again once the submission has exited, fails
(``interference``).

The baseline and the submission alternate batch by batch on the same inputs (which one goes first
alternates too), so warm-up and drift hit both alike; while one runs the other is frozen. The
speed-up is the ratio of the median per-call times with a paired-bootstrap 95% interval
(``timing_stats``); more pairs are measured while the interval straddles 1 + ``win_margin`` (before
the last look, at the stricter ``EARLY_STOP_LEVEL``), up to a bound, and a result still undecided
then is ``inconclusive``.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from quasar.bench.cases import CaseSpec, make_inputs
from quasar.bench.check import check_result, judge_outputs, tolerance_for
from quasar.bench.schema import VERDICT_ERROR, VERDICT_FAIL, CaseResult
from quasar.reasons import (
    REASON_ALIASED_OUTPUT,
    REASON_FREEZE_FAILED,
    REASON_HARNESS_ERROR,
    REASON_INCORRECT_OUTPUT,
    REASON_INTERFERENCE,
    REASON_KERNEL_EXCEPTION,
    REASON_PROTOCOL,
)

from .arena import Arena, OutputRejected, pool_bytes, slot_layout
from .channel import Channel, Stop, fail_from_error
from .sandbox import FreezeFailed
from .timing_stats import EARLY_STOP_LEVEL, SpeedupEstimate, estimate

SIDES = ("baseline", "entry")


@dataclass
class ComparisonPlan:
    """How many batches to time: calls per batch, warm-up pairs, the bounds on measured pairs, and
    how many outputs to check."""

    slots: int = 4
    warmup_pairs: int = 1
    min_pairs: int = 8
    max_pairs: int = 24
    #: Probability that a measured pair has one call, chosen at random, checked against the fp32
    #: reference by the trusted checker (decided after both batches were frozen); ``min_samples``
    #: pairs at least are.
    check_probability: float = 1.0
    #: Probability that each other call of a pair is checked against the reference as well.
    extra_check_probability: float = 0.3
    min_samples: int = 2
    #: Baseline batches timed alone, before any submission code is loaded (after one warm-up).
    solo_batches: int = 0
    #: The most the baseline's median beside the submission may exceed its solo median (relative);
    #: None: not checked (CPU, where a frozen process cannot run at all).
    baseline_drift: float | None = None

    @classmethod
    def for_device(cls, device_type: str, quick: bool) -> ComparisonPlan:
        """The plan a validator uses. On GPU a batch holds more calls (a call is ~1 ms against a few
        ms of fixed cost per batch), and about half of the pairs have a call checked against the
        reference (each is 100 MB and a full-shape reference); on CPU a call is long, so fewer calls
        per batch and more checks."""
        if device_type == "cuda":
            plan = cls(
                slots=16, max_pairs=32, check_probability=0.5, extra_check_probability=0.0,
                solo_batches=8, baseline_drift=0.03,
            )  # fmt: skip
        else:
            plan = cls()
        if quick:
            plan.min_pairs, plan.max_pairs = 6, 12
        return plan


@dataclass
class Comparison:
    estimate: SpeedupEstimate
    inconclusive: bool
    #: Per-call times of the submission's measured batches (ms).
    submission_ms: list[float]
    baseline_ms: list[float]
    #: What a batch of no calls cost on the baseline's worker (copies, thaw, round trip, freeze,
    #: snapshot), in ms; taken off every batch of both sides.
    empty_batch_ms: float = 0.0
    #: CPU: what copying one output into its slot costs the parent (ms); taken off every call of both
    #: sides. GPU: 0 (outputs are not copied).
    output_copy_ms: float = 0.0
    #: GPU: the submission's outputs that did not lie in the pool area and were copied into their
    #: slots (a kernel needing more memory than the area; charged to it, not taken off).
    outputs_copied: int = 0
    #: The baseline's per-call median alone, before any submission code was loaded (None: not timed).
    solo_ms: float | None = None
    #: The baseline's per-call median alone again, after the submission exited (None: not needed).
    solo_after_ms: float | None = None
    #: What each worker said its batches took per call (untrusted; for the log).
    inside_ms: dict[str, list[float]] = field(default_factory=dict)
    #: GPU: the submission's peak memory in its timed calls, as it reported it (untrusted; for the log).
    peak_mem_mb: float | None = None


class TimedComparison:
    """Alternating batches of the baseline and the submission in their own sandboxed workers."""

    def __init__(
        self, spec: CaseSpec, plan: ComparisonPlan, threshold: float,
        call: Callable[..., dict[str, Any]], device: torch.device | None = None,
    ) -> None:  # fmt: skip
        """``call(channel, side, op, **data)`` sends one command to a worker and returns its reply,
        raising :class:`Stop` for a dead or hung worker (the caller knows how to word that).
        ``device`` is where the buffers live (the parent's name for the workers' GPU)."""
        self.spec, self.plan, self.threshold = spec, plan, threshold
        self.device = device or torch.device("cpu")
        self.cuda = self.device.type == "cuda"
        self._call = call
        layout = slot_layout(spec)
        pool = pool_bytes(layout, plan.slots) if self.cuda else 0
        self.arenas = {side: Arena.create(layout, plan.slots, self.device, pool) for side in SIDES}
        o_shape = (spec.batch, spec.seq_len, spec.heads, spec.value_dim)
        self.snapshots = {
            side: [torch.empty(o_shape, dtype=spec.dtype, device=self.device) for _ in range(plan.slots)]
            for side in SIDES
        }
        self._fresh: list[tuple[torch.Tensor, ...]] = []
        #: ``run -> (seed, output)`` of the submission calls picked for the reference check.
        self._kept: dict[int, tuple[int, torch.Tensor]] = {}
        self.kernel_seconds = 0.0
        self.empty_batch_ms = 0.0
        self.output_copy_ms = 0.0
        self.outputs_copied = 0
        self.solo_ms: float | None = None

    def fds(self, side: str) -> tuple[int, ...]:
        return (self.arenas[side].fd,)

    def close(self) -> None:
        self._fresh.clear()
        self._kept.clear()
        self.snapshots.clear()
        for arena in self.arenas.values():
            arena.close()
        if self.cuda:
            # Gigabytes of inputs and snapshots: give them back for the next evaluation's workers.
            torch.cuda.empty_cache()

    def attach(self, side: str, channel: Channel) -> None:
        """Tell a started worker where its buffers are; it stays frozen until its first batch."""
        arena = self.arenas[side]
        reply = self._call(
            channel,
            side,
            "arena",
            fd=arena.fd,
            slots=self.plan.slots,
            target=side,
            pool_bytes=arena.pool_bytes,
        )
        if not reply.get("ok"):
            verdict = VERDICT_FAIL if side == "entry" else VERDICT_ERROR
            raise Stop(
                verdict,
                REASON_KERNEL_EXCEPTION,
                f"{side}: could not map the shared buffers: {reply.get('error')}",
            )
        self._freeze(side, channel)

    def _freeze(self, side: str, channel: Channel) -> None:
        try:
            channel.process.freeze()
        except FreezeFailed as exc:
            # Our own machinery failing (a process in uninterruptible sleep for seconds): not the
            # submission's fault on its face, so the job goes to another validator.
            raise Stop(VERDICT_ERROR, REASON_FREEZE_FAILED, f"{side}: {exc}") from None

    def _sync(self) -> None:
        if self.cuda:
            # Another process's context does not order itself after ours: our copies must be done.
            torch.cuda.synchronize(self.device)

    def _draw_inputs(self, seeds: list[int]) -> None:
        """Fresh inputs for one pair, in the parent's own memory (both workers are frozen)."""
        self._fresh = []
        for seed in seeds:
            fresh = make_inputs(self.spec, seed, self.device)
            self._fresh.append((fresh.q, fresh.k, fresh.v, fresh.beta))
        self._sync()

    def _load(self, side: str) -> None:
        """Copy the pair's inputs into one side's slots and poison its outputs; inside the clock."""
        arena = self.arenas[side]
        for slot, fresh in enumerate(self._fresh):
            for dst, src in zip(arena.inputs(slot), fresh, strict=True):
                dst.copy_(src)
            # An output the kernel never writes reads back as NaN.
            arena.output(slot).fill_(float("nan"))
        self._sync()

    def _snapshot(self, side: str, reply: dict[str, Any], slots: int) -> None:
        """Copy every output out of the worker's reach, from where its reply says each one lies;
        inside the clock. A reply that names memory the parent does not read from fails the side."""
        arena = self.arenas[side]
        if not slots:
            # The empty batch of the calibration copies as much as a full one, so that its cost
            # (taken off every batch) includes the snapshot's.
            for saved, slot in zip(self.snapshots[side], range(self.plan.slots), strict=True):
                saved.copy_(arena.output(slot))
            self._sync()
            return
        offsets = reply.get("outputs")
        try:
            if not isinstance(offsets, list) or len(offsets) != slots:
                raise OutputRejected(f"the reply names {offsets!r} as outputs of {slots} calls")
            views = [arena.output_at(offset) for offset in offsets]
            arena.distinct_outputs(offsets)
        except OutputRejected as exc:
            if side == "entry":
                reason = REASON_ALIASED_OUTPUT if "overlapping" in str(exc) else REASON_PROTOCOL
                raise Stop(VERDICT_FAIL, reason, f"timed batch: {exc}") from None
            raise Stop(VERDICT_ERROR, REASON_HARNESS_ERROR, f"baseline batch: {exc}") from None
        for saved, view in zip(self.snapshots[side], views, strict=False):
            saved.copy_(view)
        self._sync()

    def _batch(self, side: str, channel: Channel, slots: int | None = None) -> tuple[float, dict[str, Any]]:
        """One frozen-to-frozen batch: its per-call time on the parent's clock (less the trusted cost
        of an empty batch), and the reply."""
        slots = self.plan.slots if slots is None else slots
        t0 = time.perf_counter()
        self._load(side)
        channel.process.thaw()
        reply = self._call(channel, side, "batch", slots=list(range(slots)))
        self._freeze(side, channel)
        if not reply.get("ok"):
            error = str(reply.get("error"))
            if side == "entry":
                raise fail_from_error(error, "timed batch")
            raise Stop(VERDICT_ERROR, REASON_HARNESS_ERROR, f"baseline batch: {error}")
        self._snapshot(side, reply, slots)
        elapsed = (time.perf_counter() - t0) * 1e3
        per_call = max(elapsed - self.empty_batch_ms, 0.0) / max(slots, 1)
        if slots:
            per_call = max(per_call - self.output_copy_ms, 0.0)
        return per_call, reply

    def calibrate(self, baseline: Channel) -> None:
        """On the trusted baseline's worker, before any submission code is loaded: what an empty
        batch costs and, on CPU, what the copy of one output into its slot costs (both subtracted
        from every batch of both sides; the submission cannot inflate them) and, when the plan asks,
        the baseline's per-call median alone."""
        self._draw_inputs([secrets.randbits(62) for _ in range(self.plan.slots)])
        # The least of seven, not their median: the cost is fixed and noise only adds to it. A
        # median caught in a burst of load on the host took off more than some whole batches took
        # (seen on 2 loaded cores: calls charged 0 ms, speed-ups infinite); the least is never more
        # than the fixed cost, so a batch is never charged less than its calls.
        self.empty_batch_ms = min(self._batch("baseline", baseline, slots=0)[0] for _ in range(7))
        self.output_copy_ms = 0.0 if self.cuda else self._output_copy_ms()
        if self.plan.solo_batches:
            self.solo_ms = self._solo_median(baseline)

    def _solo_median(self, baseline: Channel) -> float:
        """The baseline's per-call median over ``solo_batches`` batches with nothing beside it."""
        solo = []
        for number in range(self.plan.solo_batches + 1):
            self._draw_inputs([secrets.randbits(62) for _ in range(self.plan.slots)])
            per_call, _ = self._batch("baseline", baseline)
            if number:  # the first compiles and warms up
                solo.append(per_call)
        return statistics.median(solo)

    def _output_copy_ms(self, repeats: int = 9) -> float:
        """CPU: the parent's own time to copy one output of the timed shape into a slot: the same
        copy, in the same direction and on the same memory, as the worker's after each call."""
        source = self.snapshots["baseline"][0]
        target = self.arenas["baseline"].output(0)
        times = []
        for number in range(repeats + 1):
            t0 = time.perf_counter()
            target.copy_(source)
            if number:  # the first touches the pages
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    def run(self, baseline: Channel, entry: Channel) -> Comparison:
        plan = self.plan
        if not self.empty_batch_ms:
            self.calibrate(baseline)
        pairs: list[tuple[float, float]] = []
        inside: dict[str, list[float]] = {side: [] for side in SIDES}
        peak: float | None = None
        run = 0
        number = 0
        while True:
            seeds = [secrets.randbits(62) for _ in range(plan.slots)]
            self._draw_inputs(seeds)
            order = [("baseline", baseline), ("entry", entry)]
            if number % 2:
                order.reverse()
            times: dict[str, float] = {}
            for side, channel in order:
                times[side], reply = self._batch(side, channel)
                inside[side].append(float(reply.get("inside_ms") or 0.0) / plan.slots)
                if side == "entry" and isinstance(reply.get("peak_mem_mb"), int | float):
                    peak = max(peak or 0.0, float(reply["peak_mem_mb"]))
                if side == "entry" and self.cuda and isinstance(reply.get("copied"), int):
                    self.outputs_copied += reply["copied"]
            measured = number >= plan.warmup_pairs
            self._screen(run if measured else None)
            if measured:
                for slot in self._slots_to_check(len(pairs), len(self._kept)):
                    # The next pair overwrites the snapshot: keep a copy (on the device it is on).
                    self._kept[run + slot] = (seeds[slot], self.snapshots["entry"][slot].clone())
                run += plan.slots
                pairs.append((times["baseline"], times["entry"]))
            self.kernel_seconds += times["entry"] * plan.slots / 1e3
            number += 1
            if len(pairs) >= plan.min_pairs:
                seed, last = secrets.randbits(32), len(pairs) >= plan.max_pairs
                # Before the last look only a stricter interval stops the measuring (timing_stats).
                if last or estimate(pairs, seed=seed, level=EARLY_STOP_LEVEL).decided(self.threshold):
                    est = estimate(pairs, seed=seed)
                    break
        return Comparison(
            estimate=est, inconclusive=not est.decided(self.threshold),
            submission_ms=[s for _, s in pairs], baseline_ms=[b for b, _ in pairs],
            empty_batch_ms=self.empty_batch_ms, output_copy_ms=self.output_copy_ms,
            outputs_copied=self.outputs_copied, solo_ms=self.solo_ms, inside_ms=inside, peak_mem_mb=peak,
        )  # fmt: skip

    def check_interference(self, baseline: Channel, comparison: Comparison) -> None:
        """Beside the submission the baseline must run as fast as it does alone: a frozen process
        cannot run on the CPU, but GPU work it left queued can slow the baseline's batches.

        Call it once the submission's processes are gone (their GPU context with them, so nothing of
        theirs can still run). Within ``baseline_drift`` of the solo median timed before the import,
        nothing more is done. Beyond it, the device itself may have drifted (clocks, heat), so the
        baseline is timed alone once more, now: only a comparison slower than both solo medians by
        more than ``baseline_drift`` fails."""
        drift = self.plan.baseline_drift
        beside = comparison.estimate.baseline_ms
        if drift is None or self.solo_ms is None or self.solo_ms <= 0:
            return
        if beside <= self.solo_ms * (1 + drift):
            return
        comparison.solo_after_ms = again = self._solo_median(baseline)
        alone = max(self.solo_ms, again)
        if beside > alone * (1 + drift):
            raise Stop(
                VERDICT_FAIL, REASON_INTERFERENCE,
                f"the baseline ran {beside / alone - 1:.1%} slower beside the submission than alone "
                f"({beside:.3f} ms per call, against {self.solo_ms:.3f} ms before the submission was "
                f"loaded and {again:.3f} ms after it exited): finish all GPU work before the kernel "
                "returns, and leave nothing running on the device",
            )  # fmt: skip

    def judge_samples(self) -> list[CaseResult]:
        """The kept calls against the fp32 reference for their inputs, the oldest first."""
        results = []
        for run in sorted(self._kept):
            seed, output = self._kept.pop(run)
            results.append(judge_outputs(self.spec, seed, output, None, self.device, f"timed_run_{run}"))
            del output
        return results

    def _slots_to_check(self, pairs_so_far: int, checked_so_far: int) -> list[int]:
        """Which calls of this measured pair the checker judges: one at random with the plan's
        probability (always, while the pairs left before ``min_pairs`` are needed to reach
        ``min_samples``), and each other with ``extra_check_probability``."""
        plan = self.plan
        chosen: set[int] = set()
        pairs_left = max(plan.min_pairs - pairs_so_far - 1, 0)
        if checked_so_far + pairs_left < plan.min_samples or _chance(plan.check_probability):
            chosen.add(secrets.randbelow(plan.slots))
        chosen |= {slot for slot in range(plan.slots) if _chance(plan.extra_check_probability)}
        return sorted(chosen)

    def _screen(self, first_run: int | None) -> None:
        """Every call's output against the baseline's for the same inputs. Both are within the
        tolerance of the fp32 reference when honest, so their distance is within twice it (the
        triangle inequality): a sound bound that still catches any gross shortcut on any call."""
        tolerance = 2 * tolerance_for(self.spec.dtype)
        for slot, (expected, actual) in enumerate(zip(*(self.snapshots[s] for s in SIDES), strict=True)):
            outcome = check_result(
                (actual, None), expected_o=expected, expected_final=None, out_dtype=self.spec.dtype,
                device=expected.device, tolerance=tolerance, bounds=self.spec.bounds,
            )  # fmt: skip
            if not outcome.passed:
                where = "a warm-up call" if first_run is None else f"timed run {first_run + slot}"
                raise Stop(
                    VERDICT_FAIL, outcome.reason or REASON_INCORRECT_OUTPUT,
                    f"{where}: {outcome.detail} (against the baseline's output for the same inputs, "
                    f"tolerance {tolerance:g})",
                )  # fmt: skip


def _chance(probability: float) -> bool:
    return secrets.randbelow(10_000) < int(probability * 10_000)
