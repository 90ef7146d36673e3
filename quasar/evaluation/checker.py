"""The trusted checker: recomputes what the worker saved, from the seeds, and judges it.

``python -I -m quasar.evaluation.checker REPLY_FD`` runs in its own sandbox (no network, no secrets)
with the worker's scratch dir mounted read-only; it never imports submission code. Commands on
stdin, one JSON line each; replies on ``REPLY_FD``:

``start``    device, quick.
``prepare``  seed: computes the fp32 references of every correctness case ahead, while the worker
             imports the submission and runs its cases (the references depend on the seed alone).
``cases``    seed, count: regenerates the inputs of the first ``count`` correctness cases, takes the
             fp32 reference (prepared, or computed now), loads ``case_<i>.pt`` and checks shape,
             dtype, NaN/Inf and relative L2 error (``quasar.bench.check.check_result``, DESIGN §2
             tolerances).

The timed runs' outputs never reach a file: the parent copies them out of the shared buffers itself
and judges the ones it picks in its own process (``timed_runs``), with the same
``quasar.bench.check.judge_outputs``.

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
from quasar.bench.check import judge_outputs, tolerance_for
from quasar.bench.schema import CaseResult
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


def check_saved(
    spec: CaseSpec, seed: int, path: Path, device: torch.device, name: str,
    expected: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> CaseResult:  # fmt: skip
    """Judge the outputs saved at ``path`` for ``spec`` run on inputs drawn from ``seed``
    (``expected``: the fp32 reference for them, when computed ahead)."""

    def refused(reason: str, detail: str) -> CaseResult:
        return CaseResult(name, spec.shape_dict(), spec.dtype_name, tolerance_for(spec.dtype),
                          spec.reference_name, passed=False, reason=reason, detail=f"{name}: {detail}")  # fmt: skip

    if not path.is_file():
        return refused(REASON_UNLOADABLE, "the worker saved no output")
    # Room for the pickle's own bookkeeping; a larger file holds more than the expected tensors.
    if path.stat().st_size > 2 * _expected_bytes(spec) + 2**20:
        return refused(REASON_UNLOADABLE, "the saved output is far larger than o")
    try:
        saved = torch.load(path, weights_only=True, map_location=device)
    except Exception as exc:
        return refused(REASON_UNLOADABLE, f"not plain tensors ({type(exc).__name__}: {str(exc)[:300]})")
    if not isinstance(saved, dict) or type(saved.get("o")) is not torch.Tensor:
        return refused(REASON_BAD_RETURN, "o is not a tensor")
    final = saved.get("final")
    if final is not None and type(final) is not torch.Tensor:
        return refused(REASON_BAD_RETURN, "final_state is not a tensor")
    return judge_outputs(spec, seed, saved["o"], final, device, name, expected)


class Checker(CommandServer):
    def __init__(self, reply_fd: int) -> None:
        super().__init__(reply_fd)
        self.scratch = Path(os.environ.get("QUASAR_CHECK_DIR", "."))
        self.device = torch.device("cpu")
        self.quick = False
        #: ``(seed, case index) -> reference``, from ``prepare``.
        self._references: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor | None]] = {}

    def start(self, device: str, quick: bool = False) -> None:
        self.device, self.quick = torch.device(device), quick
        if self.device.type == "cuda":
            torch.zeros(1, device=self.device)  # the context now, not in the first reference
        self.reply(ok=True)

    def prepare(self, seed: int) -> None:
        for i, spec in enumerate(correctness_cases(self.device.type, self.quick)):
            inputs = make_inputs(spec, case_seed(seed, i), self.device)
            self._references[(seed, i)] = reference_outputs(spec, inputs)
            del inputs
        self.reply(ok=True)

    def cases(self, seed: int, count: int) -> None:
        specs = correctness_cases(self.device.type, self.quick)[:count]
        results = []
        for i, spec in enumerate(specs):
            expected = self._references.pop((seed, i), None)
            path = self.scratch / f"case_{i}.pt"
            results.append(
                check_saved(spec, case_seed(seed, i), path, self.device, spec.name, expected).to_dict()
            )
        self._references.clear()
        self.reply(ok=True, results=results)

    def handlers(self) -> dict[str, Any]:
        return {"start": self.start, "prepare": self.prepare, "cases": self.cases}


def main() -> None:
    Checker(int(sys.argv[1])).serve_and_exit()


if __name__ == "__main__":
    main()
