"""One evaluation of one submission: fetch, run it sandboxed, check it from outside, time it honestly.

``evaluate(repo_url, commit_sha, options)`` returns an :class:`EvaluationReport` (the bench report plus
what only an evaluation knows). Its verdict is ``pass``, ``fail`` (the submission's fault: ``reason``
says which rule it broke) or ``error`` (the validator's own trouble: retry elsewhere).

The sequence, and why it is in this order:

1. fetch the exact commit (``fetch``); compute ``kernel_tree_hash``;
2. start the submission's worker in the sandbox and measure the pipe round trip (``ping``); start
   the trusted baseline's own worker too (it never imports submission code) and freeze it;
3. import the entry point; start the trusted checker in its own sandbox meanwhile;
4. send the correctness seed; the worker runs every case and saves the outputs; the checker
   recomputes each case from the seed and judges it;
5. time the submission (``timed_runs``): alternating frozen-to-frozen batches of the baseline and
   the submission on buffers the parent owns (memfd on CPU, CUDA driver memory on GPU), timed by
   the parent alone, with a 95% interval. Every call is screened against the baseline's output;
   the calls to check against the fp32 reference are chosen only after they ran, and the checker
   judges them.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from quasar.bench.schema import VERDICT_ERROR, VERDICT_FAIL, VERDICT_PASS, CaseResult, Timing
from quasar.reasons import (
    REASON_CHECKER_FAILED,
    REASON_ENTRY_POINT,
    REASON_HARNESS_ERROR,
    REASON_IMPORT_FAILED,
    REASON_INCORRECT_OUTPUT,
    REASON_SANDBOX_UNAVAILABLE,
)

from .channel import Channel, Gone, Stop, fail_from_error, start_process
from .fetch import FetchError, fetch_submission
from .kernel_cache import merge_cache
from .options import EVALUATOR_VERSION, EvaluationOptions, baseline_id
from .report import EvaluationReport, death_reason, percentile
from .sandbox import Sandbox, SandboxResult, SandboxUnavailable, forget_probes
from .timed_runs import Comparison, ComparisonPlan, TimedComparison

#: What other modules import from here (the options and the report live in their own modules).
__all__ = ["EVALUATOR_VERSION", "EvaluationOptions", "EvaluationReport", "baseline_id", "evaluate"]

log = logging.getLogger(__name__)

_LOG_TAIL_CHARS = 4000


def _parent_device(device_type: str, gpu_index: int | None) -> Any:
    """Where the parent keeps the timed runs' buffers: the GPU the sandbox pins, by the parent's
    numbering (the worker sees it as its only device)."""
    import torch

    if device_type == "cuda":
        return torch.device("cuda", gpu_index or 0)
    return torch.device("cpu")


def evaluate(repo_url: str, commit_sha: str, options: EvaluationOptions | None = None) -> EvaluationReport:
    """Evaluate one submission. Never raises for a submission's misbehaviour: see the report's verdict."""
    options = options or EvaluationOptions()
    started = time.monotonic()
    seed = options.seed if options.seed is not None else secrets.randbits(62)
    report = EvaluationReport(
        verdict=VERDICT_PASS, entry="fla.ops.quasar:chunk_quasar", device=options.device,
        device_type=options.device.split(":")[0], seed=seed, quick=options.quick, repo_url=repo_url,
        commit_sha=commit_sha, baseline_id=baseline_id(),
    )  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="quasar-eval-", dir=options.work_dir))
    fetched = None
    try:
        try:
            fetched = fetch_submission(
                repo_url, commit_sha, dev_mode=options.dev_mode, allowed_hosts=options.allowed_hosts,
                limits=options.fetch_limits, parent_dir=work,
            )  # fmt: skip
        except FetchError as exc:
            raise Stop(
                VERDICT_FAIL if exc.submission_fault else VERDICT_ERROR, exc.code, exc.detail
            ) from None
        report.kernel_tree_hash = fetched.kernel_tree_hash
        _Evaluation(options, report, fetched.worktree, work, seed).run()
    except Stop as stop:
        report.verdict, report.reason, report.detail = stop.verdict, stop.reason, stop.detail
    except SandboxUnavailable as exc:
        report.verdict, report.reason, report.detail = VERDICT_ERROR, REASON_SANDBOX_UNAVAILABLE, str(exc)
    except Exception as exc:  # the validator's own trouble: say so, never blame the submission
        log.exception("evaluation failed")
        report.verdict, report.reason = VERDICT_ERROR, REASON_HARNESS_ERROR
        report.detail = f"{type(exc).__name__}: {exc}"[:1000]
    finally:
        if fetched is not None:
            fetched.remove()
        shutil.rmtree(work, ignore_errors=True)
    report.duration_s = time.monotonic() - started
    if report.kernel_seconds is not None:
        report.evaluation_overhead_s = report.duration_s - report.kernel_seconds
    for warning in report.warnings:
        log.warning("sandbox: %s", warning)
    return report


class _Evaluation:
    """The stateful middle of :func:`evaluate` (one sandboxed worker, one checker)."""

    def __init__(
        self, options: EvaluationOptions, report: EvaluationReport, repo: Path, work: Path, seed: int
    ):
        self.o, self.report, self.repo, self.work, self.seed = options, report, repo, work, seed
        self.sandbox = Sandbox(
            options.limits, require=options.sandbox_require, allow_unsandboxed=options.allow_unsandboxed,
            cgroup_parent=options.cgroup_parent,
            gpu_index=options.gpu_index,
        )  # fmt: skip
        report.sandbox = self.sandbox.mechanisms.describe()
        report.warnings = list(self.sandbox.mechanisms.warnings)
        self.kernel_seconds = 0.0
        self.worker: Channel | None = None
        self.baseline_worker: Channel | None = None
        self.checker: Channel | None = None
        self.plan = options.comparison or ComparisonPlan.for_device(report.device_type, options.quick)
        self.comparison: TimedComparison | None = None
        self._phase_started = time.monotonic()
        # Only Triton kernels compile (GPU); the CPU path has nothing to cache.
        self.kernel_cache: Path | None = None
        if options.kernel_cache_dir is not None and report.device_type == "cuda":
            self.kernel_cache = Path(options.kernel_cache_dir).expanduser()
            self.kernel_cache.mkdir(parents=True, exist_ok=True)

    def _phase(self, name: str) -> None:
        """Record how long the phase that ends now took (``wall.phases``: where the time goes)."""
        now = time.monotonic()
        self.report.wall.setdefault("phases", {})[name] = round(now - self._phase_started, 3)
        self._phase_started = now

    # --- helpers ---------------------------------------------------------------------------------
    def _worker_call(
        self, op: str, timeout_s: float, where: str, **data: Any
    ) -> tuple[dict[str, Any], float]:
        assert self.worker is not None
        try:
            return self.worker.call(op, timeout_s, **data)
        except Gone as gone:
            # A closed reply pipe means the process is exiting: give it a moment to report how.
            hung = not gone.ended
            result = self.worker.process.finish(kill=hung, wait_s=5.0)
            self._absorb(result)
            reason, detail = death_reason(result, where, hung=hung)
            raise Stop(VERDICT_FAIL, reason, detail) from None

    def _absorb(self, result: SandboxResult) -> None:
        text = result.output.decode("utf-8", errors="replace")[-_LOG_TAIL_CHARS:]
        if result.output_truncated:
            dropped = result.output_total_bytes - len(text.encode("utf-8", errors="replace"))
            text = f"[... {dropped} bytes of output dropped ...]\n" + text[-(_LOG_TAIL_CHARS - 64) :]
        self.report.log_tail = text
        if result.peak_memory_mb is not None:
            self.report.wall["host_peak_memory_mb"] = result.peak_memory_mb

    def _checker_call(self, op: str, **data: Any) -> dict[str, Any]:
        assert self.checker is not None
        checker = self.checker
        return self._checker_reply(
            lambda: checker.call(op, checker.process.remaining(), **data)[0], "the trusted checker failed"
        )

    def _checker_reply(self, receive: Any, failure: str) -> dict[str, Any]:
        """The checker's reply; any trouble with the trusted side is the validator's `error`."""
        assert self.checker is not None
        try:
            reply = receive()
        except (Gone, Stop) as exc:
            result = self.checker.process.finish(kill=True)
            tail = result.output.decode("utf-8", errors="replace")[-1000:]
            raise Stop(VERDICT_ERROR, REASON_CHECKER_FAILED, f"{failure}: {exc}; {tail}") from None
        if not reply.get("ok"):
            raise Stop(
                VERDICT_ERROR, REASON_CHECKER_FAILED, f"the trusted checker failed: {reply.get('error')}"
            )
        return reply

    def _judge(self, results: list[CaseResult], into: list[CaseResult]) -> None:
        for case in results:
            into.append(case)
            if not case.passed:
                raise Stop(VERDICT_FAIL, case.reason or REASON_INCORRECT_OUTPUT, case.detail or case.name)

    # --- phases ----------------------------------------------------------------------------------
    def run(self) -> None:
        from quasar.bench.suite import timing_spec

        scratch = self.work / "worker"
        scratch.mkdir()
        device_type = self.report.device_type
        self.comparison = TimedComparison(
            timing_spec(device_type, self.o.quick), self.plan, 1.0 + self.o.win_margin, self._side_call,
            device=_parent_device(device_type, self.o.gpu_index),
        )  # fmt: skip
        fds = self.comparison.fds("entry")
        try:
            self.worker = start_process(
                self.sandbox,
                "quasar.evaluation.worker",
                scratch,
                {"repo": self.repo, **self._cache_mount()},
                fds=fds,
            )
            self._run_worker(scratch)
        finally:
            for channel in (self.baseline_worker, self.worker, self.checker):
                if channel is not None:
                    result = channel.process.finish(kill=True)
                    if channel is self.worker:
                        self._absorb(result)
                    channel.close()
            self.comparison.close()
        self.report.kernel_seconds = self.kernel_seconds

    def _side_call(self, channel: Channel, side: str, op: str, **data: Any) -> dict[str, Any]:
        """One command to the baseline's or the submission's worker during trusted timing."""
        if side == "entry":
            return self._worker_call(op, self.o.limits.wall_s, "timing the submission", **data)[0]
        try:
            return channel.call(op, channel.process.remaining(), **data)[0]
        except (Gone, Stop) as exc:
            tail = channel.process.finish(kill=True).output.decode("utf-8", errors="replace")[-1500:]
            raise Stop(
                VERDICT_ERROR, REASON_HARNESS_ERROR, f"the baseline's worker failed: {exc}; {tail}"
            ) from None

    def _start_baseline_worker(self, device: str) -> None:
        """The trusted baseline's own sandboxed worker: it never imports submission code."""
        assert self.comparison is not None
        scratch = self.work / "baseline"
        scratch.mkdir()
        self.baseline_worker = start_process(
            self.sandbox,
            "quasar.evaluation.worker",
            scratch,
            self._cache_mount(),
            fds=self.comparison.fds("baseline"),
        )
        reply = self._side_call(
            self.baseline_worker, "baseline", "start", device=device, entry="", repo="", quick=self.o.quick,
            kernel_cache=self._cache_inside(),
        )  # fmt: skip
        if not reply.get("ok"):
            raise Stop(VERDICT_ERROR, REASON_HARNESS_ERROR, f"baseline worker start: {reply.get('error')}")
        self._warm_kernel_cache(scratch)
        self.comparison.attach("baseline", self.baseline_worker)
        # Before any submission code is loaded: the empty batch's cost and the baseline alone.
        self.comparison.calibrate(self.baseline_worker)

    def _cache_mount(self) -> dict[str, Path]:
        return {} if self.kernel_cache is None else {"kernel-cache": self.kernel_cache}

    def _cache_inside(self) -> str | None:
        return None if self.kernel_cache is None else self.sandbox.inside("kernel-cache", self.kernel_cache)

    def _warm_kernel_cache(self, scratch: Path) -> None:
        """Once per baseline version: the baseline's worker compiles every case's kernels and the
        parent adds them to the validator's cache. Only this worker, which never imports submission
        code, ever writes there; submissions get copies."""
        cache = self.kernel_cache
        if cache is None:
            return
        marker = cache / f".warm-{self.report.device_type}-{baseline_id()[:16]}"
        if marker.exists():
            return
        assert self.baseline_worker is not None
        started = time.monotonic()
        reply = self._side_call(self.baseline_worker, "baseline", "warm", seed=secrets.randbits(62))
        if not reply.get("ok"):
            raise Stop(VERDICT_ERROR, REASON_HARNESS_ERROR, f"baseline warm-up: {reply.get('error')}")
        self._side_call(self.baseline_worker, "baseline", "export")
        exported = scratch / "kernel-cache"
        if exported.is_dir():
            merge_cache(exported, cache)
            shutil.rmtree(exported, ignore_errors=True)
        marker.touch()
        log.info(
            "kernel cache: the baseline's kernels compiled in %.1f s, kept in %s",
            time.monotonic() - started,
            cache,
        )

    def _run_worker(self, scratch: Path) -> None:
        o, report = self.o, self.report
        repo_inside = self.sandbox.inside("repo", self.repo)
        device = "cuda" if report.device_type == "cuda" else "cpu"
        # The kernel cache reaches this worker with ``import``, once the baseline's worker filled it.
        reply, _ = self._startup_call(
            "start", device=device, entry=report.entry, repo=repo_inside, quick=o.quick
        )
        report.device = reply.get("device_name", report.device)
        report.environment = {"torch": str(reply.get("torch"))}
        pings = [self._startup_call("ping")[1] for _ in range(5)]
        ping_ms = statistics.median(pings)
        report.wall["ping_ms"] = ping_ms
        self._phase("start_worker")
        # The trusted checker starts now (loading torch while the baseline's worker starts) and,
        # once calibration has had the GPU to itself, computes the cases' references (they depend
        # on the seed alone) while the submission imports and runs its cases. The seed is fresh per
        # evaluation (reported as `seed`) and reaches the submission's worker only after its import.
        check_dir = self.work / "checker"
        check_dir.mkdir()
        ro = {"outputs": scratch}
        env = {"QUASAR_CHECK_DIR": self.sandbox.inside("outputs", scratch)}
        self.checker = start_process(self.sandbox, "quasar.evaluation.checker", check_dir, ro, env=env)
        self.checker.send("start", device=report.device_type, quick=o.quick)
        self._start_baseline_worker(device=device)
        self._phase("baseline_worker_and_calibration")
        case_seed = self.seed
        self.checker.send("prepare", seed=case_seed)

        reply, _ = self._worker_call(
            "import", min(o.import_timeout_s, o.limits.wall_s), "importing the entry point",
            kernel_cache=self._cache_inside(),
        )  # fmt: skip
        if not reply.get("ok"):
            error = str(reply.get("error"))
            # The bench says "importing ... failed" when the module raised, "cannot import" when absent.
            reason = REASON_IMPORT_FAILED if error.startswith("importing") else REASON_ENTRY_POINT
            raise Stop(VERDICT_FAIL, reason, error[:2000])
        self._phase("import")
        reply, _ = self._worker_call(
            "cases", o.limits.wall_s, "running the correctness cases", seed=case_seed
        )
        cases = reply.get("cases") or []
        self._phase("cases_in_worker")
        self.kernel_seconds += sum(float(c.get("seconds") or 0.0) for c in cases)
        saved = [c for c in cases if c.get("error") is None]
        failed = next((c for c in cases if c.get("error") is not None), None)
        self._checker_pending("start")
        self._checker_pending("prepare")
        results = self._checker_call("cases", seed=case_seed, count=len(saved))["results"]
        self._judge([CaseResult.from_dict(data) for data in results], report.cases)
        self._phase("cases_checked")
        if failed is not None:
            raise fail_from_error(str(failed["error"]), f"case {failed.get('name')}")

        timing, comparison = self._compare()
        self._phase("timing")
        result = self.worker.process if self.worker else None
        if result is not None:
            result.thaw()
        self._worker_send_exit()
        if result is not None:
            self._absorb(result.finish(wait_s=10.0))
        # Only now, with the submission's processes gone: did it slow the baseline beside it?
        assert self.comparison is not None and self.baseline_worker is not None
        try:
            self.comparison.check_interference(self.baseline_worker, comparison)
        finally:
            self.report.wall["comparison"]["solo_after_ms"] = comparison.solo_after_ms
        self._judge(self.comparison.judge_samples(), report.timed_checks)
        self._phase("timed_runs_checked")
        report.timing = timing

    def _compare(self) -> tuple[Timing, Comparison]:
        """Trusted timing (``timed_runs``): alternating frozen-to-frozen batches against the baseline."""
        from quasar.bench.suite import timing_spec

        assert self.comparison is not None and self.worker is not None and self.baseline_worker is not None
        self.comparison.attach("entry", self.worker)
        outcome = self.comparison.run(self.baseline_worker, self.worker)
        self.kernel_seconds += self.comparison.kernel_seconds
        est, plan = outcome.estimate, self.plan
        spec = timing_spec(self.report.device_type, self.o.quick)
        calls = sorted(outcome.submission_ms)
        self.report.wall["comparison"] = {
            "pairs": est.pairs, "calls_per_batch": plan.slots, "submission_ms": outcome.submission_ms,
            "baseline_ms": outcome.baseline_ms, "empty_batch_ms": outcome.empty_batch_ms,
            "output_copy_ms": outcome.output_copy_ms, "outputs_copied": outcome.outputs_copied,
            "solo_ms": outcome.solo_ms, "inside_ms": outcome.inside_ms,
        }  # fmt: skip
        timing = Timing(
            shape=spec.shape_dict(), dtype=spec.dtype_name, device=self.report.device, median_ms=est.median_ms,
            p10_ms=percentile(calls, 10), p90_ms=percentile(calls, 90),
            runs=est.pairs * plan.slots, input_sets=plan.slots, warmup=plan.warmup_pairs * plan.slots,
            method="parent_clock_frozen_batches", baseline_ms=est.baseline_ms, speedup=est.speedup,
            speedup_ci_low=est.ci_low, speedup_ci_high=est.ci_high, inconclusive=outcome.inconclusive,
            peak_mem_mb=outcome.peak_mem_mb, tokens_per_s=spec.batch * spec.seq_len / (est.median_ms / 1e3) if est.median_ms > 0 else None,
        )  # fmt: skip
        return timing, outcome

    def _checker_pending(self, op: str) -> None:
        """The reply to a command sent to the checker earlier without waiting for it."""
        checker = self.checker
        assert checker is not None
        self._checker_reply(
            lambda: checker.recv(checker.process.remaining()), f"the trusted checker failed in {op!r}"
        )

    def _worker_send_exit(self) -> None:
        assert self.worker is not None
        with contextlib.suppress(Gone):
            self.worker.send("exit")

    def _startup_call(self, op: str, **data: Any) -> tuple[dict[str, Any], float]:
        """A call before submission code is loaded: any failure is the validator's trouble."""
        assert self.worker is not None
        try:
            reply, rtt = self.worker.call(op, self.worker.process.remaining(), **data)
        except (Gone, Stop) as exc:
            result = self.worker.process.finish(kill=True)
            self._absorb(result)
            if result.walls_failed:
                # Before the submission's code is imported, only our walls can fail like this; the
                # validator probes again before its next claim (and stops claiming if they stay broken).
                forget_probes()
                raise Stop(VERDICT_ERROR, REASON_SANDBOX_UNAVAILABLE, "the sandbox could not be built: "
                            f"{self.report.log_tail[-1500:]}") from None  # fmt: skip
            raise Stop(VERDICT_ERROR, REASON_HARNESS_ERROR, f"the sandboxed worker failed to start: {exc}; "
                        f"{self.report.log_tail[-1500:]}") from None  # fmt: skip
        if op != "ping" and not reply.get("ok"):
            raise Stop(VERDICT_ERROR, REASON_HARNESS_ERROR, f"worker {op}: {reply.get('error')}")
        return reply, rtt
