"""The bench / evaluation report: one schema for ``quasar bench --json``, the evaluation code and the API.

Plain dataclasses (no pydantic: the GPU machine has only torch and triton) with ``to_dict`` /
``from_dict``. Fields are only ever added, never renamed; ``from_dict`` ignores keys it does not know so
an older reader accepts a newer report. Times are milliseconds, memory is MiB, errors are relative L2.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1

VERDICT_PASS = "pass"
#: The submission's fault.
VERDICT_FAIL = "fail"
#: The harness's own trouble (the job should be retried elsewhere).
VERDICT_ERROR = "error"

# Reason codes (stable strings that the evaluation code and the API pass through unchanged) live in
# quasar/reasons.py, with who is at fault and what each means.


def _finite(value: Any) -> Any:
    """NaN and Inf become None: strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _pick(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in known}


@dataclass
class CaseResult:
    """One correctness case: what ran, how far it was from the trusted reference, and why it failed."""

    name: str
    #: B, T, H, K, V and N (number of states), plus ``seqlens`` for packed cases.
    shape: dict[str, Any]
    dtype: str
    tolerance: float
    #: How the trusted reference was computed, e.g. ``naive_fp32`` or ``chunked_fp32``.
    reference: str
    passed: bool
    rel_error: float | None = None
    final_state_rel_error: float | None = None
    #: The largest relative L2 error over single (sequence, head) slices of o and the final state.
    worst_slice_rel_error: float | None = None
    reason: str | None = None
    detail: str | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseResult:
        return cls(**_pick(cls, data))


@dataclass
class Timing:
    """Timing of one callable at one shape."""

    #: B, T, H, K, V.
    shape: dict[str, Any]
    dtype: str
    device: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int
    input_sets: int
    warmup: int
    #: Peak memory the call allocated beyond what was live before it (CUDA only).
    peak_mem_mb: float | None = None
    #: Median host wall-clock per run with a device-wide sync: bounds the event timing from outside.
    wall_median_ms: float | None = None
    #: "cuda_events" or "perf_counter".
    method: str = "perf_counter"
    baseline_ms: float | None = None
    speedup: float | None = None
    #: Tokens per second (B * T / median), for the layer and the op alike.
    tokens_per_s: float | None = None
    #: The 95% interval of ``speedup`` (trusted timing, ``quasar.evaluation.timed_runs``).
    speedup_ci_low: float | None = None
    speedup_ci_high: float | None = None
    #: The interval still straddled 1 + WIN_MARGIN after the most batches allowed: never counts.
    inconclusive: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timing:
        return cls(**_pick(cls, data))


@dataclass
class BenchReport:
    """Everything one bench run found. ``verdict`` is ``pass``, ``fail`` or ``error`` (see VERDICT_*)."""

    verdict: str
    entry: str
    device: str
    device_type: str
    seed: int
    reason: str | None = None
    detail: str | None = None
    quick: bool = False
    cases: list[CaseResult] = field(default_factory=list)
    #: The op at the benchmark shape; ``baseline_ms``/``speedup`` inside when the baseline was timed.
    timing: Timing | None = None
    #: The op at further shapes (H=16/K=V=128, T=1,000,000) when asked for.
    extra_timings: list[Timing] = field(default_factory=list)
    #: The QuasarAttention layer running the entry's op, when asked for.
    layer: Timing | None = None
    #: torch / triton / python versions.
    environment: dict[str, str] = field(default_factory=dict)
    duration_s: float | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def passed(self) -> bool:
        return self.verdict == VERDICT_PASS

    @property
    def max_rel_error(self) -> float | None:
        errors = [
            e
            for c in self.cases
            for e in (c.rel_error, c.final_state_rel_error, c.worst_slice_rel_error)
            if e is not None
        ]
        return max(errors) if errors else None

    @property
    def median_ms(self) -> float | None:
        return self.timing.median_ms if self.timing else None

    @property
    def baseline_ms(self) -> float | None:
        return self.timing.baseline_ms if self.timing else None

    @property
    def speedup(self) -> float | None:
        return self.timing.speedup if self.timing else None

    @property
    def peak_mem_mb(self) -> float | None:
        return self.timing.peak_mem_mb if self.timing else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (non-finite numbers as None). The summary keys the API's result body uses
        (``median_ms``, ``baseline_ms``, ``speedup`` and its interval, ``max_rel_error``, ``peak_mem_mb``)
        are repeated at the top level for convenience; ``from_dict`` ignores them."""
        data = asdict(self)
        timing = self.timing
        data.update(
            median_ms=self.median_ms,
            baseline_ms=self.baseline_ms,
            speedup=self.speedup,
            speedup_ci_low=timing.speedup_ci_low if timing else None,
            speedup_ci_high=timing.speedup_ci_high if timing else None,
            inconclusive=timing.inconclusive if timing else None,
            max_rel_error=self.max_rel_error,
            peak_mem_mb=self.peak_mem_mb,
        )
        return _finite(data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchReport:
        values = _pick(cls, data)
        values["cases"] = [CaseResult.from_dict(c) for c in data.get("cases") or []]
        values["extra_timings"] = [Timing.from_dict(t) for t in data.get("extra_timings") or []]
        for key in ("timing", "layer"):
            if data.get(key) is not None:
                values[key] = Timing.from_dict(data[key])
        return cls(**values)
