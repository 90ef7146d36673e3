"""The outcome of one logit verification: verdict, a stable reason code, the numbers.

Verdicts follow the job results of the Validator API: ``pass``; ``fail`` (the miner's fault: wrong
model, bad answer, unreachable server); ``error`` (the validator's own trouble, or a refusal that
may be ours, such as a rate limit: the check should be retried, not held against the miner).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

VerdictName = Literal["pass", "fail", "error"]

# Stable reason codes (snake_case; they end up in job results and dashboards).
REASONS: dict[str, str] = {
    "ok": "the answer matches the reference model",
    "token_mismatch": "a generated token is not the reference's greedy choice",
    "logits_diverge": "the logits' centred cosine is below the threshold",
    "kl_too_high": "the next-token distributions differ by more than the KL threshold",
    "topk_disagree": "the top-k token ids differ from the reference's",
    "raw_cosine_below_threshold": "raw-logit cosine below COSINE_SIM_THRESHOLD",
    "max_abs_diff_above_threshold": "raw-logit max-abs-diff above MAX_ABS_DIFF_THRESHOLD",
    "wrong_length": "the answer has the wrong number of tokens",
    "bad_token_ids": "the answer holds ids outside the vocabulary",
    "missing_logits": "logits for a requested position are missing",
    "bad_logits": "logits could not be decoded or are not finite",
    "vocab_mismatch": "the server's vocabulary size differs from the reference's",
    "unsupported_dtype": "the server declares a dtype with no calibrated thresholds",
    "bad_response": "the server's answer is not the v1 wire format",
    "server_rejected_challenge": "the server refused a challenge within the documented limits",
    "server_error": "the server failed (5xx)",
    "unreachable": "the server could not be reached",
    "timeout": "the server did not answer in time",
    "server_busy": "the server was busy (503); retry later",
    "rate_limited": "the server rate-limited this validator (429); retry later",
    "auth_refused": "the server refused this validator's signature or role",
    "reference_failed": "the validator's reference model failed",
}


@dataclass
class VerificationResult:
    verdict: VerdictName
    reason: str
    detail: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    seed: str | None = None

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown verification reason {self.reason!r}")

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "detail": self.detail or REASONS[self.reason],
            "metrics": dict(self.metrics),
            "seed": self.seed,
        }
