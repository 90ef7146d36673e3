"""Helpers of the tests that evaluate real submissions in the real sandbox (test_evaluate_submissions,
test_sandbox_walls)."""

from __future__ import annotations

from quasar.evaluation.timed_runs import ComparisonPlan


def containment_plan() -> ComparisonPlan:
    """The trusted timing of a test whose point is what the submission's code could reach or do, not
    how fast it is: the same protocol (a warm-up pair, alternating frozen batches, every call screened
    against the baseline's output, each measured pair's call checked against the reference), with two
    calls a batch and two measured pairs instead of the validator's four and 6 to 12. The timing
    phase is what grows when the machine is busy: an honest evaluation on 2 cores took 10 s -> 7 s
    quiet, 20-60 s -> 10-20 s beside other jobs. The timing tests keep the validator's plan."""
    return ComparisonPlan(slots=2, warmup_pairs=1, min_pairs=2, max_pairs=2, extra_check_probability=0.0)
