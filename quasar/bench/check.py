"""Trusted checks of what a kernel returned: shape, dtype, aliasing, NaN/Inf, relative L2 error.

The relative L2 error ``||actual - expected|| / ||expected||`` (in fp64) with one tolerance per input
dtype (DESIGN §2) is the only closeness measure the project uses; ``assert_rel_close`` is the same
check for tests. A kernel's outputs must meet it overall and also on every slice of one sequence and
one head (``worst_slice_error``): a fault confined to a few of hundreds of packed sequences, or to one
head, would otherwise be diluted by the rest. "Poisoning" makes stale or unwritten memory visible: freed device memory is filled
with NaN before each call, so an output the kernel allocates but never fully writes shows NaN, and the
tensors a kernel returned are overwritten with NaN once checked, so a kernel that hands back a cached
buffer serves NaN the next time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from quasar.bench.cases import CaseSpec, make_inputs, reference_outputs
from quasar.bench.schema import CaseResult
from quasar.reasons import (
    REASON_ALIASED_OUTPUT,
    REASON_BAD_RETURN,
    REASON_INCORRECT_FINAL_STATE,
    REASON_INCORRECT_OUTPUT,
    REASON_NAN_OR_INF,
    REASON_WRONG_DEVICE,
    REASON_WRONG_DTYPE,
    REASON_WRONG_SHAPE,
)

#: Relative L2 tolerance against the fp32 reference, by the dtype of the kernel's inputs (DESIGN §2).
TOLERANCES: dict[torch.dtype, float] = {
    torch.bfloat16: 1e-2,
    torch.float16: 1e-2,
    # TF32 matrix units are allowed for fp32 inputs.
    torch.float32: 2e-3,
    torch.float64: 1e-6,
}


def tolerance_for(dtype: torch.dtype) -> float:
    """The relative L2 tolerance for a kernel fed ``dtype`` inputs."""
    try:
        return TOLERANCES[dtype]
    except KeyError:
        raise ValueError(f"no tolerance defined for {dtype}; use one of {list(TOLERANCES)}") from None


def rel_l2_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """``||actual - expected|| / ||expected||`` in fp64; inf when ``actual`` holds NaN or Inf."""
    a, e = actual.detach().double(), expected.detach().double()
    if not bool(torch.isfinite(a).all()):
        return float("inf")
    denom = torch.linalg.vector_norm(e).item()
    diff = torch.linalg.vector_norm(a - e).item()
    # An all-zero reference only happens for degenerate inputs the suite never draws; compare absolutely.
    return diff / denom if denom > 0 else diff


def assert_rel_close(actual: torch.Tensor, expected: torch.Tensor, tol: float, name: str = "tensor") -> None:
    """Assert shapes match and the relative L2 error is below ``tol`` (the tests' tolerance helper)."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    err = rel_l2_error(actual, expected)
    assert err < tol, f"{name}: relative L2 error {err:.3e} >= tolerance {tol:.1e}"


def all_finite(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or bool(torch.isfinite(t).all()) for t in tensors)


def shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors' storages overlap (a returned output that is really an input, or a view)."""
    if a.device != b.device:
        return False
    sa, sb = a.untyped_storage(), b.untyped_storage()
    a0, b0 = sa.data_ptr(), sb.data_ptr()
    return a0 < b0 + sb.nbytes() and b0 < a0 + sa.nbytes() and sa.nbytes() > 0 and sb.nbytes() > 0


def poison_free_memory(device: torch.device, nbytes: int) -> None:
    """Fill about ``nbytes`` of freed CUDA memory with NaN so unwritten outputs read as NaN.

    The caching allocator hands the block back to the next allocation of a similar size. On CPU freed
    memory goes back to the OS, so there is nothing reliable to poison and this does nothing.
    """
    if device.type != "cuda" or nbytes <= 0:
        return
    block = torch.empty(nbytes // 4 + 1, dtype=torch.float32, device=device)
    block.fill_(float("nan"))
    del block


def poison_returned(*tensors: Any) -> None:
    """Overwrite the tensors a kernel returned with NaN, so a cached buffer served again fails."""
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            with torch.no_grad():
                t.fill_(float("nan"))


@dataclass
class CheckOutcome:
    passed: bool
    reason: str | None = None
    detail: str | None = None
    rel_error: float | None = None
    final_state_rel_error: float | None = None
    #: The largest relative L2 error over the (sequence, head) slices of o and of the final state.
    worst_slice_rel_error: float | None = None


def worst_slice_error(
    actual: torch.Tensor,
    expected: torch.Tensor,
    bounds: Sequence[tuple[int, int]] | None = None,
    *,
    states: bool = False,
) -> tuple[float, tuple[int, int]]:
    """The largest relative L2 error over slices of one sequence and one head, and that (sequence, head).

    ``actual`` and ``expected`` are outputs ``[B, T, H, V]`` (a sequence is a batch row, or one of the
    packed token ranges ``bounds`` when B == 1) or, with ``states``, states ``[N, H, K, V]`` (a
    sequence is a state). Computed in fp64; ``actual`` must be finite.
    """
    a, e = actual.detach().double(), expected.detach().double()
    if a.dim() != 4:
        raise ValueError(f"expected a 4-d tensor, got shape {list(a.shape)}")
    diff2, ref2 = (a - e).square(), e.square()
    if states or bounds is None:
        # [N, H, K, V] -> [N, H] over K and V; [B, T, H, V] -> [B, H] over T and V.
        dims = (2, 3) if states else (1, 3)
        diff, ref = diff2.sum(dim=dims), ref2.sum(dim=dims)
    else:
        lengths = torch.tensor([end - start for start, end in bounds], device=a.device)
        seq_of_token = torch.repeat_interleave(torch.arange(len(bounds), device=a.device), lengths)
        diff = torch.zeros(len(bounds), a.shape[2], dtype=a.dtype, device=a.device)
        ref = torch.zeros_like(diff)
        diff.index_add_(0, seq_of_token, diff2[0].sum(dim=-1))
        ref.index_add_(0, seq_of_token, ref2[0].sum(dim=-1))
    # An all-zero reference slice is compared absolutely, as in rel_l2_error.
    rel = torch.where(ref > 0, diff / ref.clamp_min(1e-300), diff).sqrt()
    flat = int(rel.argmax().item())
    return float(rel.flatten()[flat].item()), divmod(flat, rel.shape[1])


def check_tensor(
    value: Any, name: str, shape: Sequence[int], dtype: torch.dtype, device: torch.device
) -> CheckOutcome | None:
    """Why ``value`` is not a ``shape``/``dtype`` tensor on ``device`` (a failed outcome), or None."""
    if not isinstance(value, torch.Tensor):
        return CheckOutcome(False, REASON_BAD_RETURN, f"{name} is {type(value).__name__}, expected a tensor")
    if tuple(value.shape) != tuple(shape):
        return CheckOutcome(
            False, REASON_WRONG_SHAPE, f"{name} has shape {list(value.shape)}, expected {list(shape)}"
        )
    if value.dtype != dtype:
        return CheckOutcome(False, REASON_WRONG_DTYPE, f"{name} has dtype {value.dtype}, expected {dtype}")
    if value.device != device:
        return CheckOutcome(False, REASON_WRONG_DEVICE, f"{name} is on {value.device}, expected {device}")
    return None


def check_result(
    result: Any,
    *,
    expected_o: torch.Tensor,
    expected_final: torch.Tensor | None,
    out_dtype: torch.dtype,
    device: torch.device,
    tolerance: float,
    inputs: Sequence[torch.Tensor | None] = (),
    bounds: Sequence[tuple[int, int]] | None = None,
) -> CheckOutcome:
    """Judge a kernel's ``(o, final_state)`` against the trusted reference.

    ``expected_final`` is None when the case did not ask for the final state (then whatever the kernel
    returns there is ignored). ``inputs`` are the tensors handed to the kernel: returning one of them, or
    a view of one, as the output is refused. ``bounds`` are the token ranges of packed sequences (None
    when every batch row is one sequence); the tolerance holds on each (sequence, head) as well.
    """
    if not isinstance(result, tuple | list) or len(result) != 2:
        return CheckOutcome(False, REASON_BAD_RETURN, "the kernel must return a tuple (o, final_state)")
    o, final = result
    bad = check_tensor(o, "o", expected_o.shape, out_dtype, device)
    if bad is None and expected_final is not None:
        bad = check_tensor(final, "final_state", expected_final.shape, torch.float32, device)
    if bad is not None:
        return bad
    returned = [o] + ([final] if expected_final is not None else [])
    for out in returned:
        if any(x is not None and shares_memory(out, x) for x in inputs):
            return CheckOutcome(False, REASON_ALIASED_OUTPUT, "a returned tensor shares memory with an input")
    if not all_finite(*returned):
        which = "o" if not all_finite(o) else "final_state"
        return CheckOutcome(False, REASON_NAN_OR_INF, f"{which} contains NaN or Inf")

    rel = rel_l2_error(o, expected_o)
    rel_final = rel_l2_error(final, expected_final) if expected_final is not None else None
    worst_o, (seq_o, head_o) = worst_slice_error(o, expected_o, bounds)
    worst = worst_o
    if expected_final is not None:
        worst_final, (seq_f, head_f) = worst_slice_error(final, expected_final, states=True)
        worst = max(worst, worst_final)

    def failed(reason: str, detail: str) -> CheckOutcome:
        return CheckOutcome(False, reason, detail, rel, rel_final, worst)

    if rel >= tolerance:
        return failed(REASON_INCORRECT_OUTPUT, f"o: relative L2 error {rel:.3e} >= {tolerance:.1e}")
    if rel_final is not None and rel_final >= tolerance:
        detail = f"final_state: relative L2 error {rel_final:.3e} >= {tolerance:.1e}"
        return failed(REASON_INCORRECT_FINAL_STATE, detail)
    if worst_o >= tolerance:
        detail = (
            f"o: relative L2 error {worst_o:.3e} >= {tolerance:.1e} on sequence {seq_o}, head {head_o}"
            f" (overall {rel:.3e})"
        )
        return failed(REASON_INCORRECT_OUTPUT, detail)
    if expected_final is not None and worst_final >= tolerance:
        detail = (
            f"final_state: relative L2 error {worst_final:.3e} >= {tolerance:.1e} on sequence {seq_f},"
            f" head {head_f} (overall {rel_final:.3e})"
        )
        return failed(REASON_INCORRECT_FINAL_STATE, detail)
    return CheckOutcome(True, None, None, rel, rel_final, worst)


def judge_outputs(
    spec: CaseSpec, seed: int, o: torch.Tensor, final: torch.Tensor | None, device: torch.device, name: str,
    expected: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> CaseResult:  # fmt: skip
    """A kernel's ``(o, final)`` for ``spec`` on the inputs drawn from ``seed``, judged against the
    fp32 reference (``expected``, when computed ahead; else computed now on ``device``)."""
    result = CaseResult(name, spec.shape_dict(), spec.dtype_name, tolerance_for(spec.dtype), spec.reference_name,
                        passed=False)  # fmt: skip
    if expected is None:
        expected = reference_outputs(spec, make_inputs(spec, seed, device))
    expected_o, expected_final = expected
    outcome = check_result(
        (o, final), expected_o=expected_o, expected_final=expected_final, out_dtype=spec.dtype,
        device=expected_o.device, tolerance=result.tolerance, bounds=spec.bounds,
    )  # fmt: skip
    result.passed, result.reason = outcome.passed, outcome.reason
    result.detail = None if outcome.detail is None else f"{name}: {outcome.detail}"
    result.rel_error, result.final_state_rel_error = outcome.rel_error, outcome.final_state_rel_error
    result.worst_slice_rel_error = outcome.worst_slice_rel_error
    return result
