"""Pass/fail thresholds of logit verification, per declared dtype (numbers from calibration).

An honest server's distance from the float32 reference is set by the precision it declares: a
float32 server differs only by the float16 wire encoding, a bfloat16 server by bf16 rounding in
every layer. So each declared dtype has its own bounds, and a server is judged by the precision it
claims — one that claims float32 but computes in bfloat16 lands outside the float32 bounds.

The shipped numbers are set from `quasar verify calibrate` (CPU, tiny model) and
`scripts/gpu_calibrate.py` (GPU, Qwen2.5-0.5B configuration) as a margin over the largest honest
value measured (see docs/verification.md). Operators re-run `quasar verify calibrate --write FILE`
on their reference model and point VERIFY_THRESHOLDS_FILE at the result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Thresholds:
    """Bounds for one declared dtype. A check fails as soon as one bound is crossed."""

    token_gap_tolerance: (
        float  # logit units: a sent token this close to the reference's top one is a near tie
    )
    max_token_mismatches: int  # tokens further than the tolerance from the reference argmax
    min_centred_cosine: float  # worst checked position
    max_kl: float  # worst checked position, nats
    min_topk_agreement: float  # mean over checked positions, fraction of the top-k ids shared
    topk: int = 10

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


# From `quasar verify calibrate --challenges 16` on the tiny model (CPU; docs/verification.md):
# 3x the worst honest distance (1 - centred cosine, KL), 2x the largest honest near-tie gap, never
# tighter than calibrate.FLOORS. float16 is more precise than bfloat16 (10 vs 7 mantissa bits), so
# bf16's bounds admit it. Replace with `scripts/gpu_calibrate.py`'s / your own model's numbers.
DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "float32": Thresholds(
        token_gap_tolerance=0.01,
        max_token_mismatches=0,
        min_centred_cosine=0.99999,
        max_kl=1e-4,
        min_topk_agreement=0.9,
    ),
    # The looser of two calibrations: the CPU run on the tiny model (gap 0.307) and the H100 run at
    # Qwen2.5-0.5B's scale (cosine, KL, top-k), where 24 layers of bf16 rounding widen the honest
    # spread; int8 weights and 1% noise stay well outside it at that scale (docs/verification.md).
    "bfloat16": Thresholds(
        token_gap_tolerance=0.307,
        max_token_mismatches=0,
        min_centred_cosine=0.99916,
        max_kl=7.4e-3,
        min_topk_agreement=0.875,
    ),
}
DEFAULT_THRESHOLDS["float16"] = DEFAULT_THRESHOLDS["bfloat16"]


class ThresholdsFileError(ValueError):
    """The thresholds file is unreadable or names unknown fields; the message says which."""


def load_thresholds(path: str | Path | None) -> dict[str, Thresholds]:
    """The defaults, overridden per dtype (and per field) by a JSON file when one is given.

    File shape: ``{"bfloat16": {"min_centred_cosine": 0.998, ...}, "float32": {...}}`` — what
    `quasar verify calibrate --write` produces.
    """
    table = dict(DEFAULT_THRESHOLDS)
    if path is None:
        return table
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ThresholdsFileError(f"cannot read VERIFY_THRESHOLDS_FILE {path}: {exc}") from exc
    if not isinstance(data, Mapping):
        raise ThresholdsFileError(f"{path} must hold a JSON object keyed by dtype (e.g. 'bfloat16')")
    data = data.get("thresholds", data)  # accept calibrate's whole report too
    for dtype, fields in data.items():
        base = table.get(dtype, DEFAULT_THRESHOLDS["float32"])
        try:
            table[dtype] = replace(base, **fields)
        except TypeError as exc:
            raise ThresholdsFileError(f"{path}: bad fields for {dtype}: {exc}") from exc
    return table
