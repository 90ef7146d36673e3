"""The verifier: replay a miner's answer through the reference model and decide (torch + numpy).

Given a challenge and the server's answer, the verifier

1. checks the answer's shape (length, token ids, logits for every requested position that was
   generated, decodable and finite);
2. feeds prompt + the tokens the server sent through the reference model in one forward pass
   (teacher forcing), giving the reference's logits at every generated position;
3. checks each sent token is the reference's greedy choice, up to near ties;
4. compares the sent logits at the checked positions with the reference's (see `stats`), against
   the thresholds of the dtype the server declares, plus the optional raw-logit gates
   (COSINE_SIM_THRESHOLD, MAX_ABS_DIFF_THRESHOLD).

Throughput is the number of generated tokens over the wall time measured by the caller (the
validator's clock); the server's own prefill/decode times are recorded as hints only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from quasar.inference.encoding import LogitsDecodeError, decode_logits
from quasar.inference.generate import teacher_forced_logits
from quasar.inference.model import LoadedModel
from quasar.reasons import (
    LOGIT_BAD_LOGITS,
    LOGIT_BAD_TOKEN_IDS,
    LOGIT_KL_TOO_HIGH,
    LOGIT_LOGITS_DIVERGE,
    LOGIT_MAX_ABS_DIFF_ABOVE_THRESHOLD,
    LOGIT_MISSING_LOGITS,
    LOGIT_OK,
    LOGIT_RAW_COSINE_BELOW_THRESHOLD,
    LOGIT_REFERENCE_FAILED,
    LOGIT_TOKEN_MISMATCH,
    LOGIT_TOPK_DISAGREE,
    LOGIT_UNSUPPORTED_DTYPE,
    LOGIT_WRONG_LENGTH,
)
from quasar.verification.challenge import Challenge, make_challenge, new_seed
from quasar.verification.result import VerdictName, VerificationResult
from quasar.verification.stats import compare_logits, token_gaps
from quasar.verification.thresholds import DEFAULT_THRESHOLDS, Thresholds

if TYPE_CHECKING:
    from quasar.config import Settings


@dataclass
class MinerAnswer:
    """A server's answer to one challenge (the `POST /inference` reply, wire types)."""

    output_ids: list[int]
    logits: Mapping[str, str | np.ndarray] = field(default_factory=dict)  # base64 rows, or decoded
    prefill_ms: float | None = None
    decode_ms: float | None = None


@dataclass
class ChallengeSpec:
    """Challenge sizes (VERIFY_PROMPT_TOKENS, VERIFY_MAX_NEW_TOKENS, VERIFY_CHECKED_POSITIONS)."""

    prompt_tokens: int = 32
    max_new_tokens: int = 32
    checked_positions: int = 8


class Verifier:
    """Holds the reference model and thresholds; checks answers to challenges it makes."""

    def __init__(
        self,
        reference: LoadedModel,
        thresholds: Mapping[str, Thresholds] | None = None,
        *,
        spec: ChallengeSpec | None = None,
        raw_cosine_min: float | None = None,
        max_abs_diff_max: float | None = None,
    ) -> None:
        self.reference = reference
        self.thresholds = dict(thresholds or DEFAULT_THRESHOLDS)
        self.spec = spec or ChallengeSpec()
        self.raw_cosine_min = raw_cosine_min
        self.max_abs_diff_max = max_abs_diff_max
        self._allowed_ids = reference.token_ids_for_prompts()

    @classmethod
    def from_settings(cls, settings: Settings, *, reference: str | None = None, device: str | None = None) -> Verifier:
        """A verifier of REFERENCE_MODEL (or ``reference``) in float32 on DEVICE (or ``device``), with the
        configured thresholds, challenge sizes and raw-logit gates. On the embedded chain the tiny
        model is built first if it is missing."""
        from quasar.inference.model import load_model
        from quasar.models.tiny import ensure_default_tiny_model
        from quasar.verification.thresholds import load_thresholds

        name = reference or settings.reference_model
        assert name is not None  # the settings' profile always names one
        ensure_default_tiny_model(settings, name)
        # The reference always runs in float32: it is the yardstick every declared dtype is measured from.
        loaded = load_model(name, device or settings.device, "float32")
        return cls(
            loaded,
            load_thresholds(settings.verify_thresholds_file),
            spec=ChallengeSpec(
                prompt_tokens=settings.verify_prompt_tokens,
                max_new_tokens=settings.verify_max_new_tokens,
                checked_positions=settings.verify_checked_positions,
            ),
            raw_cosine_min=settings.cosine_sim_threshold,
            max_abs_diff_max=settings.max_abs_diff_threshold,
        )

    @property
    def vocab_size(self) -> int:
        return self.reference.vocab_size

    def challenge(self, seed: str | None = None) -> Challenge:
        return make_challenge(
            seed or new_seed(),
            self._allowed_ids,
            prompt_tokens=self.spec.prompt_tokens,
            max_new_tokens=self.spec.max_new_tokens,
            checked_positions=self.spec.checked_positions,
        )

    def check(
        self,
        challenge: Challenge,
        answer: MinerAnswer,
        *,
        declared_dtype: str,
        elapsed_s: float | None = None,
    ) -> VerificationResult:
        """The verdict on ``answer`` (never raises for anything the server sent)."""
        limits = self.thresholds.get(declared_dtype)
        if limits is None:
            return VerificationResult(
                "fail",
                LOGIT_UNSUPPORTED_DTYPE,
                f"declared dtype {declared_dtype!r}; calibrated: {', '.join(sorted(self.thresholds))}",
                _timing_metrics(answer, elapsed_s),
                challenge.seed,
            )
        return self.judge(
            self.measure(challenge, answer, elapsed_s=elapsed_s, topk=limits.topk), limits, declared_dtype
        )

    def measure(
        self, challenge: Challenge, answer: MinerAnswer, *, elapsed_s: float | None = None, topk: int = 10
    ) -> Measurement:
        """Every statistic of ``answer`` (no thresholds), or the failure that stopped measuring."""
        metrics = _timing_metrics(answer, elapsed_s)

        def stop(reason: str, detail: str, verdict: VerdictName = "fail") -> Measurement:
            return Measurement(
                challenge.seed,
                metrics,
                failure=VerificationResult(verdict, reason, detail, metrics, challenge.seed),
            )

        # --- 1. shape of the answer ------------------------------------------------------------
        ids = answer.output_ids
        n = len(ids)
        eos = self.reference.eos_token_id
        if n == 0 or n > challenge.max_new_tokens:
            return stop(LOGIT_WRONG_LENGTH, f"{n} tokens for max_new_tokens={challenge.max_new_tokens}")
        if n < challenge.max_new_tokens and (eos is None or ids[-1] != eos):
            return stop(
                "wrong_length", f"{n} of {challenge.max_new_tokens} tokens and no end-of-sequence token"
            )
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 0 or t >= self.vocab_size for t in ids):
            return stop(LOGIT_BAD_TOKEN_IDS, f"token ids must lie in [0, {self.vocab_size})")
        checked = [p for p in challenge.logits_positions if p < n]
        rows: list[np.ndarray] = []
        for position in checked:
            raw = answer.logits.get(str(position))
            if raw is None:
                return stop(LOGIT_MISSING_LOGITS, f"no logits for position {position}")
            try:
                row = raw if isinstance(raw, np.ndarray) else decode_logits(raw, self.vocab_size)
            except LogitsDecodeError as exc:
                return stop(LOGIT_BAD_LOGITS, f"position {position}: {exc}")
            if row.shape != (self.vocab_size,) or not np.isfinite(row).all():
                return stop(
                    "bad_logits", f"position {position}: logits are not {self.vocab_size} finite values"
                )
            rows.append(row)

        # --- 2. teacher-forced replay ----------------------------------------------------------
        start = time.perf_counter()
        try:
            reference = teacher_forced_logits(self.reference.model, challenge.input_ids, ids)
        except (RuntimeError, ValueError) as exc:  # out of memory, device trouble: ours, not theirs
            return stop(LOGIT_REFERENCE_FAILED, str(exc), "error")
        metrics["reference_ms"] = (time.perf_counter() - start) * 1000.0

        # --- 3. statistics -----------------------------------------------------------------------
        gaps = token_gaps(reference, ids)
        metrics.update(
            tokens_checked=float(n),
            tokens_differ=float((gaps > 0).sum()),
            token_max_gap=float(gaps.max()),
        )
        if rows:
            sent = torch.from_numpy(np.stack(rows))
            metrics.update(compare_logits(sent, reference[checked], topk).as_dict())
        return Measurement(challenge.seed, metrics, gaps=gaps.tolist())

    def judge(self, measurement: Measurement, limits: Thresholds, declared_dtype: str) -> VerificationResult:
        """Apply one dtype's thresholds (and the optional raw-logit gates) to a measurement."""
        if measurement.failure is not None:
            return measurement.failure
        metrics = dict(measurement.metrics)
        seed = measurement.seed

        def fail(reason: str, detail: str) -> VerificationResult:
            return VerificationResult("fail", reason, detail, metrics, seed)

        gaps = measurement.gaps
        bad = [i for i, gap in enumerate(gaps) if gap > limits.token_gap_tolerance]
        metrics["token_mismatches"] = float(len(bad))
        if len(bad) > limits.max_token_mismatches:
            return fail(
                LOGIT_TOKEN_MISMATCH,
                f"{len(bad)} of {len(gaps)} tokens are not the reference's greedy choice (first at position "
                f"{bad[0]}, reference prefers its top token by {gaps[bad[0]]:.4g} > {limits.token_gap_tolerance})",
            )
        if "centred_cosine_mean" not in metrics:
            return VerificationResult("pass", LOGIT_OK, "no checked position was generated", metrics, seed)
        if metrics["centred_cosine_mean"] < limits.min_centred_cosine:
            return fail(
                LOGIT_LOGITS_DIVERGE,
                f"centred cosine {metrics['centred_cosine_mean']:.6f} < {limits.min_centred_cosine} ({declared_dtype})",
            )
        if metrics["kl_mean"] > limits.max_kl:
            return fail(
                LOGIT_KL_TOO_HIGH, f"KL {metrics['kl_mean']:.3g} > {limits.max_kl:.3g} ({declared_dtype})"
            )
        if metrics["topk_agreement_mean"] < limits.min_topk_agreement:
            return fail(
                LOGIT_TOPK_DISAGREE,
                f"top-{limits.topk} agreement {metrics['topk_agreement_mean']:.3f} < {limits.min_topk_agreement}",
            )
        if self.raw_cosine_min is not None and metrics["raw_cosine_min"] < self.raw_cosine_min:
            return fail(
                LOGIT_RAW_COSINE_BELOW_THRESHOLD,
                f"raw cosine {metrics['raw_cosine_min']:.6f} < {self.raw_cosine_min}",
            )
        if self.max_abs_diff_max is not None and metrics["max_abs_diff"] > self.max_abs_diff_max:
            return fail(
                LOGIT_MAX_ABS_DIFF_ABOVE_THRESHOLD,
                f"max abs diff {metrics['max_abs_diff']:.4g} > {self.max_abs_diff_max}",
            )
        return VerificationResult("pass", LOGIT_OK, "", metrics, seed)


@dataclass
class Measurement:
    """What `Verifier.measure` found: the statistics, or the failure that stopped it early."""

    seed: str
    metrics: dict[str, float]
    gaps: list[float] = field(default_factory=list)  # per generated token: reference top-1 − sent token
    failure: VerificationResult | None = None


def _timing_metrics(answer: MinerAnswer, elapsed_s: float | None) -> dict[str, float]:
    metrics: dict[str, float] = {}
    if elapsed_s is not None and elapsed_s > 0:
        metrics["elapsed_ms"] = elapsed_s * 1000.0
        metrics["tokens_per_s"] = len(answer.output_ids) / elapsed_s
    if answer.prefill_ms is not None:
        metrics["reported_prefill_ms"] = float(answer.prefill_ms)
    if answer.decode_ms is not None:
        metrics["reported_decode_ms"] = float(answer.decode_ms)
    return metrics


def finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics with non-finite values dropped (JSON and the API accept finite numbers only)."""
    return {k: float(v) for k, v in metrics.items() if math.isfinite(float(v))}
