"""What an evaluation reports (``EvaluationReport``: the bench report plus what only an evaluation
knows) and how a sandboxed process's end is worded as a reason. Used by the evaluation parent."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

from quasar.bench.schema import BenchReport, CaseResult
from quasar.reasons import (
    REASON_CPU_TIME_LIMIT,
    REASON_DISK_LIMIT,
    REASON_FILE_SIZE_LIMIT,
    REASON_MEMORY_LIMIT,
    REASON_PROCESS_LIMIT,
    REASON_TIMEOUT,
    REASON_WORKER_CRASHED,
    REASON_WORKER_EXITED,
)

from .options import EVALUATOR_VERSION
from .sandbox import SandboxResult


@dataclass
class EvaluationReport(BenchReport):
    """The bench report plus what only an evaluation knows. Field names match the API's result body."""

    repo_url: str | None = None
    commit_sha: str | None = None
    kernel_tree_hash: str | None = None
    evaluator_version: str = EVALUATOR_VERSION
    #: ``baseline_id()``: which baseline the speed-up is measured against.
    baseline_id: str | None = None
    #: The checked timed runs (each a ``CaseResult`` named ``timed_run_<n>``).
    timed_checks: list[CaseResult] = field(default_factory=list)
    #: Last characters of the submission's stdout/stderr.
    log_tail: str = ""
    sandbox: str = ""
    warnings: list[str] = field(default_factory=list)
    #: Parent-side measurements: ping, per-run round trip, phase wall time, in-sandbox median.
    wall: dict[str, Any] = field(default_factory=dict)
    #: Seconds the kernel itself ran (cases and timed runs) and what evaluation added on top.
    kernel_seconds: float | None = None
    evaluation_overhead_s: float | None = None

    @property
    def max_rel_error(self) -> float | None:
        errors = [
            e
            for c in self.cases + self.timed_checks
            for e in (c.rel_error, c.final_state_rel_error, c.worst_slice_rel_error)
            if e is not None
        ]
        return max(errors) if errors else None


def percentile(sorted_ms: list[float], p: int) -> float:
    """The ``p``-th percentile of an ascending list, by rank (no interpolation)."""
    return sorted_ms[min(len(sorted_ms) - 1, p * len(sorted_ms) // 100)]


def death_reason(result: SandboxResult, what: str, *, hung: bool = False) -> tuple[str, str]:
    """Why a sandboxed process stopped (or, ``hung``, stopped answering), as (reason, detail)."""
    # A cap that was hit explains a hang or a death better than the timeout that followed it.
    if result.memory_exceeded:
        return REASON_MEMORY_LIMIT, f"{what}: the memory limit was reached"
    if result.pids_exceeded:
        return REASON_PROCESS_LIMIT, f"{what}: the process limit was reached (do not start processes)"
    if result.scratch_exceeded:
        return REASON_DISK_LIMIT, f"{what}: wrote more than the scratch limit"
    if result.timed_out or hung:
        return REASON_TIMEOUT, f"{what}: no answer within the time limit; the whole process tree was killed"
    sig = result.killed_by_signal
    if sig == signal.SIGXCPU:
        return REASON_CPU_TIME_LIMIT, f"{what}: the CPU-time limit was reached"
    if sig == signal.SIGXFSZ:
        return REASON_FILE_SIZE_LIMIT, f"{what}: wrote a file larger than the limit"
    if result.returncode == 0:
        return REASON_WORKER_EXITED, f"{what}: the process exited before the evaluation finished"
    return REASON_WORKER_CRASHED, f"{what}: the process died (exit status {result.returncode})"
