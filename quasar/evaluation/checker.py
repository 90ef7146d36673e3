"""The trusted checker: recomputes what the worker saved, from the seeds, and judges it.

``python -I -m quasar.evaluation.checker REPLY_FD`` runs in its own sandbox (no network, no secrets)
with the worker's scratch dir mounted read-only; it never imports submission code. Commands on
stdin, one JSON line each; replies on ``REPLY_FD``:

``start``  device, quick.
``cases``  seed, count: regenerates the inputs of the first ``count`` correctness cases, computes the
           fp32 reference, loads ``case_<i>.pt`` and checks shape, dtype, NaN/Inf and relative L2
           error (``quasar.bench.check.check_result``, DESIGN §2 tolerances).
``timed``  seeds ``{run: seed}``: the same for the sampled timed runs (``timed_<run>.pt``, in
           ``QUASAR_TIMED_DIR`` when the parent saved them there).

Saved outputs are loaded with ``torch.load(weights_only=True)``: only plain tensors come back, a
pickled tensor subclass or any other object is refused, and files larger than the expected tensors
are refused before loading.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

from quasar.bench.cases import CaseSpec, case_seed, correctness_cases, make_inputs, reference_outputs
from quasar.bench.check import check_result, tolerance_for
from quasar.bench.schema import CaseResult
from quasar.bench.suite import timing_spec
from quasar.evaluation.protocol import CommandServer
from quasar.reasons import REASON_BAD_RETURN, REASON_UNLOADABLE


def _expected_bytes(spec: CaseSpec) -> int:
    o = (
        spec.batch
        * spec.seq_len
        * spec.heads
        * spec.value_dim
        * torch.empty((), dtype=spec.dtype).element_size()
    )
    final = spec.num_states * spec.heads * spec.key_dim * spec.value_dim * 4
    return o + final


def check_saved(spec: CaseSpec, seed: int, path: Path, device: torch.device, name: str) -> CaseResult:
    """Judge the outputs saved at ``path`` for ``spec`` run on inputs drawn from ``seed``."""
    tolerance = tolerance_for(spec.dtype)
    result = CaseResult(
        name, spec.shape_dict(), spec.dtype_name, tolerance, spec.reference_name, passed=False
    )
    if not path.is_file():
        result.reason, result.detail = REASON_UNLOADABLE, f"{name}: the worker saved no output"
        return result
    # Room for the pickle's own bookkeeping; a larger file holds more than the expected tensors.
    if path.stat().st_size > 2 * _expected_bytes(spec) + 2**20:
        result.reason, result.detail = REASON_UNLOADABLE, f"{name}: the saved output is far larger than o"
        return result
    try:
        saved = torch.load(path, weights_only=True, map_location=device)
    except Exception as exc:
        result.reason = REASON_UNLOADABLE
        result.detail = f"{name}: not plain tensors ({type(exc).__name__}: {str(exc)[:300]})"
        return result
    if not isinstance(saved, dict) or type(saved.get("o")) is not torch.Tensor:
        result.reason, result.detail = REASON_BAD_RETURN, f"{name}: o is not a tensor"
        return result
    final = saved.get("final")
    if final is not None and type(final) is not torch.Tensor:
        result.reason, result.detail = REASON_BAD_RETURN, f"{name}: final_state is not a tensor"
        return result
    inputs = make_inputs(spec, seed, device)
    expected_o, expected_final = reference_outputs(spec, inputs)
    outcome = check_result(
        (saved["o"], final), expected_o=expected_o, expected_final=expected_final, out_dtype=spec.dtype,
        device=expected_o.device, tolerance=tolerance, bounds=spec.bounds,
    )  # fmt: skip
    result.passed, result.reason = outcome.passed, outcome.reason
    result.detail = None if outcome.detail is None else f"{name}: {outcome.detail}"
    result.rel_error, result.final_state_rel_error = outcome.rel_error, outcome.final_state_rel_error
    result.worst_slice_rel_error = outcome.worst_slice_rel_error
    return result


class Checker(CommandServer):
    def __init__(self, reply_fd: int) -> None:
        super().__init__(reply_fd)
        self.scratch = Path(os.environ.get("QUASAR_CHECK_DIR", "."))
        # Timed runs' outputs, when the parent copied them out of shared buffers (CPU).
        self.timed_dir = Path(os.environ.get("QUASAR_TIMED_DIR") or self.scratch)
        self.device = torch.device("cpu")
        self.quick = False

    def start(self, device: str, quick: bool = False) -> None:
        self.device, self.quick = torch.device(device), quick
        self.reply(ok=True)

    def cases(self, seed: int, count: int) -> None:
        specs = correctness_cases(self.device.type, self.quick)[:count]
        results = [
            check_saved(
                spec, case_seed(seed, i), self.scratch / f"case_{i}.pt", self.device, spec.name
            ).to_dict()
            for i, spec in enumerate(specs)
        ]
        self.reply(ok=True, results=results)

    def timed(self, seeds: dict[str, int]) -> None:
        spec = timing_spec(self.device.type, self.quick)
        results = [
            check_saved(
                spec, seed, self.timed_dir / f"timed_{run}.pt", self.device, f"timed_run_{run}"
            ).to_dict()
            for run, seed in sorted(seeds.items(), key=lambda kv: int(kv[0]))
        ]
        self.reply(ok=True, results=results)

    def handlers(self) -> dict[str, Any]:
        return {"start": self.start, "cases": self.cases, "timed": self.timed}


def main() -> None:
    Checker(int(sys.argv[1])).serve_and_exit()


if __name__ == "__main__":
    main()
