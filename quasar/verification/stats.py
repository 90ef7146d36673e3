"""The statistics that compare a miner's logits with the reference's (torch only).

Why these and not only the original's two numbers:

* **Cosine of raw logits** is inflated by the offset every logit shares: a model's logits over a
  large vocabulary sit around a common mean, so two unrelated models can score a high raw cosine.
  Centring each row (subtracting its mean) removes that offset; softmax ignores it anyway.
* **Max-abs-diff** on raw logits grows with the logit scale and the precision: a fixed 0.1 rejects
  honest bf16 servers of real models. It stays available as an extra gate when configured.
* **KL(reference ‖ miner)** measures what matters for sampling: how far the next-token
  distributions are apart, weighted by where the reference puts its mass.
* **Top-k agreement** (overlap of the k highest-scoring ids) is scale-free and catches a model that
  is close on average but ranks the likely tokens differently.
* **Token agreement**: the greedy token must be the reference's argmax unless the reference's own
  top choice beats it by no more than a small gap (near ties flip under honest rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class TokenCheck:
    """Greedy tokens against the reference's argmax, position by position."""

    positions: int
    exact: int  # tokens equal to the reference argmax
    near_ties: int  # differ, but within the gap tolerance
    mismatches: int  # differ by more than the tolerance
    max_gap: float  # largest (reference top-1 score − reference score of the sent token)
    first_mismatch: int | None


@dataclass(frozen=True)
class LogitStats:
    """Summary over the checked positions (worst case and mean where it matters)."""

    positions: int
    centred_cosine_min: float
    centred_cosine_mean: float
    kl_max: float
    kl_mean: float
    topk_agreement_min: float
    topk_agreement_mean: float
    raw_cosine_min: float
    max_abs_diff: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def token_gaps(reference_logits: torch.Tensor, output_ids: Sequence[int]) -> torch.Tensor:
    """Per generated token: the reference's top score minus its score of the token sent (0 = argmax)."""
    ref = reference_logits.double()
    sent = torch.tensor(list(output_ids), dtype=torch.long)
    return (ref.max(dim=-1).values - ref.gather(1, sent[:, None])[:, 0]).clamp_min(0.0)


def token_check(
    reference_logits: torch.Tensor, output_ids: Sequence[int], gap_tolerance: float
) -> TokenCheck:
    """Compare sent tokens with the reference's argmax over [N, V] teacher-forced logits."""
    gaps = token_gaps(reference_logits, output_ids)
    sent = list(output_ids)
    exact = int((gaps <= 0).sum())
    bad = gaps > gap_tolerance
    mismatches = int(bad.sum())
    first = int(bad.nonzero()[0, 0]) if mismatches else None
    return TokenCheck(
        positions=len(sent),
        exact=exact,
        near_ties=len(sent) - exact - mismatches,
        mismatches=mismatches,
        max_gap=float(gaps.max()) if len(sent) else 0.0,
        first_mismatch=first,
    )


def per_position(miner: torch.Tensor, reference: torch.Tensor, topk: int = 10) -> dict[str, torch.Tensor]:
    """Each statistic for each row of [P, V] miner and reference logits (float64 math)."""
    a = miner.double()
    b = reference.double()
    ac = a - a.mean(dim=-1, keepdim=True)
    bc = b - b.mean(dim=-1, keepdim=True)
    centred = torch.nn.functional.cosine_similarity(ac, bc, dim=-1)
    raw = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    log_p = torch.log_softmax(b, dim=-1)
    log_q = torch.log_softmax(a, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(dim=-1).clamp_min(0.0)
    k = min(topk, a.shape[-1])
    top_a = a.topk(k, dim=-1).indices
    top_b = b.topk(k, dim=-1).indices
    overlap = (top_a[:, :, None] == top_b[:, None, :]).any(dim=-1).sum(dim=-1).double() / k
    return {
        "centred_cosine": centred,
        "raw_cosine": raw,
        "kl": kl,
        "topk_agreement": overlap,
        "max_abs_diff": (a - b).abs().amax(dim=-1),
    }


def compare_logits(miner: torch.Tensor, reference: torch.Tensor, topk: int = 10) -> LogitStats:
    """The summary statistics over the checked positions ([P, V] each, P ≥ 1)."""
    rows = per_position(miner, reference, topk)
    return LogitStats(
        positions=int(miner.shape[0]),
        centred_cosine_min=float(rows["centred_cosine"].min()),
        centred_cosine_mean=float(rows["centred_cosine"].mean()),
        kl_max=float(rows["kl"].max()),
        kl_mean=float(rows["kl"].mean()),
        topk_agreement_min=float(rows["topk_agreement"].min()),
        topk_agreement_mean=float(rows["topk_agreement"].mean()),
        raw_cosine_min=float(rows["raw_cosine"].min()),
        max_abs_diff=float(rows["max_abs_diff"].max()),
    )
