"""The outcome of one logit verification: verdict, a stable reason code, the numbers.

Verdicts follow the job results of the Validator API: ``pass``; ``fail`` (the miner's fault: wrong
model, bad answer, unreachable server); ``error`` (the validator's own trouble, or a refusal that
may be ours, such as a rate limit: the check should be retried, not held against the miner).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# Stable reason codes (snake_case; they end up in job results and dashboards) are registered in
# quasar/reasons.py (``LOGIT_REASONS``).
from quasar.reasons import LOGIT_REASONS, describe_logit

VerdictName = Literal["pass", "fail", "error"]


@dataclass
class VerificationResult:
    verdict: VerdictName
    reason: str
    detail: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    seed: str | None = None

    def __post_init__(self) -> None:
        if self.reason not in LOGIT_REASONS:
            raise ValueError(f"unknown verification reason {self.reason!r}")

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "detail": self.detail or describe_logit(self.reason),
            "metrics": dict(self.metrics),
            "seed": self.seed,
        }
