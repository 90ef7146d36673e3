"""One job on one device: the sandboxed evaluation, then logit verification, turned into a result.

The verdicts keep the blame where it belongs. ``fail`` is only ever the submission's fault, as the
evaluation or the logit check judged it; anything that goes wrong on the validator's side (the
sandbox, the checker, the reference model, an exception here) is ``error``, which the API hands to
another validator instead of holding it against the miner.

Logit verification runs only for kernels that pass (a failed kernel scores nothing anyway). The
miner's inference server is found from the reveal on the dev chain, and from the miner's axon on
the metagraph on a real chain (what the chain says outranks what the miner revealed there).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from quasar.config import Settings
from quasar.devices import Device, parse_device, visible_gpu_count
from quasar.metrics import validator_metrics
from quasar.reasons import (
    LOGIT_REFERENCE_FAILED,
    LOGIT_UNREACHABLE,
    REASON_LOGIT_ERROR,
    REASON_OK,
    REASON_VALIDATOR_ERROR,
)
from quasar.schemas import (
    BASELINE_ID_PATTERN,
    EVALUATOR_VERSION_PATTERN,
    TREE_HASH_PATTERN,
    Job,
    JobResult,
    LogitCheck,
)

log = logging.getLogger("quasar.validator.worker")

#: Room kept below MAX_BODY_BYTES for the result's other fields and the JSON around them.
_REPORT_BUDGET_BYTES = 40 * 1024
_REASON = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class EvaluateFn(Protocol):
    def __call__(self, repo_url: str, commit_sha: str, options: Any) -> Any: ...


class VerifyFn(Protocol):
    """``(url, receiver_hotkey) -> (VerificationResult, model_info)``."""

    def __call__(self, url: str, receiver: str | None) -> tuple[Any, dict[str, Any]]: ...


def devices_from_setting(setting: str) -> list[Device]:
    """The devices of DEVICE, one worker each: ``auto`` or ``cuda`` = every visible GPU (``auto``: the
    CPU when there is none), ``cuda:N`` = that GPU, ``cpu`` = the CPU."""
    choice = parse_device(setting)
    if choice.kind == "cpu" or choice.index is not None:
        return [choice]
    count = visible_gpu_count()
    if count == 0:
        if choice.kind == "cuda":
            raise ValueError("DEVICE=cuda but no CUDA device is visible; use DEVICE=cpu")
        return [Device("cpu")]
    return [Device("cuda", i) for i in range(count)]


def evaluation_options(settings: Settings, device: Device) -> Any:
    """The evaluation's options from the settings, for one device (as ``quasar evaluate`` builds them)."""
    from quasar.evaluation.evaluate import EvaluationOptions

    return EvaluationOptions.from_settings(settings, device=device.kind, gpu_index=device.index)


def _matching(value: Any, pattern: str) -> str | None:
    """``value`` when it is a string of the wire schema's ``pattern``, else None (dropped, not refused)."""
    return value if isinstance(value, str) and re.fullmatch(pattern, value) else None


def _positive(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def _reason(value: Any, default: str) -> str:
    text = str(value or "").strip().lower()
    return text if _REASON.match(text) else default


def _trimmed_report(report: dict[str, Any]) -> dict[str, Any]:
    """The report for audit, within the API's body limit (the log tail and per-run details go first)."""
    data = dict(report)
    for key in ("log_tail", "timed_checks", "wall", "cases", "warnings"):
        if len(json.dumps(data, default=str)) <= _REPORT_BUDGET_BYTES:
            break
        data.pop(key, None)
    if len(json.dumps(data, default=str)) > _REPORT_BUDGET_BYTES:
        data = {k: data.get(k) for k in ("verdict", "reason", "device", "sandbox", "seed", "duration_s")}
    # The API refuses non-finite numbers anywhere in a body: an interval that ran to infinity (a
    # submission timed at 0 ms) is kept as null.
    return json.loads(json.dumps(data, default=str), parse_constant=lambda _: None)


def result_from_report(report: dict[str, Any]) -> JobResult:
    """A job result from an evaluation report (``EvaluationReport.to_dict()``)."""
    verdict = report.get("verdict")
    if verdict not in ("pass", "fail", "error"):
        verdict, reason = "error", REASON_VALIDATOR_ERROR
    else:
        reason = _reason(report.get("reason"), REASON_OK if verdict == "pass" else REASON_VALIDATOR_ERROR)
    return JobResult(
        verdict=verdict,
        reason=reason,
        detail=(str(report["detail"])[:4000] if report.get("detail") else None),
        median_ms=_positive(report.get("median_ms")),
        baseline_ms=_positive(report.get("baseline_ms")),
        speedup=_positive(report.get("speedup")),
        speedup_ci_low=_positive(report.get("speedup_ci_low")),
        speedup_ci_high=_positive(report.get("speedup_ci_high")),
        inconclusive=report["inconclusive"] if isinstance(report.get("inconclusive"), bool) else None,
        evaluator_version=_matching(report.get("evaluator_version"), EVALUATOR_VERSION_PATTERN),
        baseline_id=_matching(report.get("baseline_id"), BASELINE_ID_PATTERN),
        max_rel_error=(
            float(report["max_rel_error"])
            if isinstance(report.get("max_rel_error"), int | float) and math.isfinite(report["max_rel_error"])
            else None
        ),
        peak_mem_mb=(
            float(report["peak_mem_mb"])
            if isinstance(report.get("peak_mem_mb"), int | float) and report["peak_mem_mb"] >= 0
            else None
        ),
        kernel_tree_hash=_matching(report.get("kernel_tree_hash"), TREE_HASH_PATTERN),
        sandbox=str(report["sandbox"])[:200] if report.get("sandbox") else None,
        report=_trimmed_report(report),
    )


def error_result(reason: str, detail: str) -> JobResult:
    return JobResult(verdict="error", reason=_reason(reason, REASON_VALIDATOR_ERROR), detail=detail[:4000])


class JobRunner:
    """Evaluates jobs on one device. ``evaluate`` and ``verify`` are injectable (tests, other devices)."""

    def __init__(
        self,
        settings: Settings,
        device: Device,
        *,
        evaluate: EvaluateFn | None = None,
        verify: VerifyFn | None = None,
        inference_url_of: Callable[[Job], str | None] | None = None,
        verification_attempts: int = 2,
    ) -> None:
        self.settings = settings
        self.device = device
        self._evaluate = evaluate
        self.verify = verify
        self.inference_url_of = inference_url_of or (lambda job: job.inference_url)
        self.verification_attempts = verification_attempts
        #: The sandbox last found by :meth:`sandbox_problem` (its ``describe()``), for the logs.
        self.sandbox: str | None = None

    def sandbox_problem(self) -> str | None:
        """Why this runner may not take a job now (the required sandbox cannot be built), else None.

        Probed for real (``sandbox.detect``); a success is remembered, a failure re-probed soon, so a
        validator starts claiming once the operator fixes the host. An injected ``evaluate`` (tests,
        other devices) brings its own isolation and is not checked."""
        if self._evaluate is not None:
            return None
        from quasar.evaluation.sandbox import SandboxUnavailable

        try:
            mechanisms = evaluation_options(self.settings, self.device).detect_sandbox()
        except SandboxUnavailable as exc:
            self.sandbox = None
            return str(exc)
        self.sandbox = mechanisms.describe()
        return None

    def evaluate(self, job: Job) -> JobResult:
        """The kernel's verdict; never raises (the validator's own trouble becomes ``error``)."""
        try:
            evaluate = self._evaluate
            if evaluate is None:
                from quasar.evaluation.evaluate import evaluate as evaluate_submission

                evaluate = evaluate_submission
            # The API's margin, not ours: the comparison stops where the API will judge the interval.
            options = replace(evaluation_options(self.settings, self.device), win_margin=job.win_margin)
            report = evaluate(job.repo_url, job.commit_sha, options)
            data = report.to_dict() if hasattr(report, "to_dict") else dict(report)
        except Exception as exc:
            log.exception("job %s: the evaluation itself failed", job.job_id)
            return error_result(
                REASON_VALIDATOR_ERROR, f"the validator's evaluation failed: {type(exc).__name__}: {exc}"
            )
        return result_from_report(data)

    def logit_check(self, job: Job) -> LogitCheck:
        """The miner's inference server against the reference model (``error``: ours, retry later)."""
        from quasar.verification.verifier import finite_metrics

        url = self.inference_url_of(job)
        if not url:
            return LogitCheck(
                verdict="fail",
                reason=LOGIT_UNREACHABLE,
                metrics={},
            )
        assert self.verify is not None
        last: LogitCheck | None = None
        for attempt in range(1, self.verification_attempts + 1):
            try:
                result, _info = self.verify(url, job.miner_hotkey)
                check = LogitCheck(
                    verdict=result.verdict, reason=result.reason, metrics=finite_metrics(result.metrics)
                )
            except Exception:
                log.exception("job %s: logit verification failed on the validator's side", job.job_id)
                last = LogitCheck(verdict="error", reason=LOGIT_REFERENCE_FAILED, metrics={})
                continue
            if check.verdict != "error":
                return check
            last = check
            log.info(
                "job %s: logit check %s (%s), attempt %d", job.job_id, check.verdict, check.reason, attempt
            )
        assert last is not None
        return last

    def run(self, job: Job, stop: threading.Event | None = None) -> JobResult:
        metrics = validator_metrics()
        started = time.monotonic()
        metrics.in_progress.inc()
        try:
            result = self._run(job, stop)
        finally:
            metrics.in_progress.dec()
        metrics.observe_job(result.verdict, result.reason, time.monotonic() - started)
        return result

    def _run(self, job: Job, stop: threading.Event | None) -> JobResult:
        result = self.evaluate(job)
        log.info(
            "job %s (submission %s): kernel %s/%s%s",
            job.job_id, job.submission_id, result.verdict, result.reason,
            "" if result.speedup is None else f", speed-up {result.speedup:.3f}",
        )  # fmt: skip
        if result.verdict != "pass" or not self.settings.enable_logit_verification:
            return result
        if stop is not None and stop.is_set():
            return error_result(REASON_VALIDATOR_ERROR, "the validator stopped before logit verification")
        check = self.logit_check(job)
        log.info("job %s: logit verification %s/%s", job.job_id, check.verdict, check.reason)
        validator_metrics().observe_logit_check(check.verdict)
        if check.verdict == "error":
            # The check could not be made (our reference, or a refusal that may be ours): the job is
            # better evaluated again than scored without it.
            return error_result(
                REASON_LOGIT_ERROR, f"logit verification could not be completed: {check.reason}"
            )
        return result.model_copy(update={"logit_check": check})
