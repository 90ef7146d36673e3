"""The tuner's hands on a kernel: read the knobs it declares, and time it under one setting.

:class:`KernelProbe` imports a kernel package (a candidate's ``fla.ops.quasar.fast``, or the project's
own ``quasar.kernels.fast``) and answers three questions:

* ``describe``: the GPU's name, the knobs its ``tuning`` module declares, the settings its table holds;
* ``launch(setting)``: what the kernel launches at the benchmark shape under that setting (its own
  ``launch_settings``), so settings that launch the same are timed once;
* ``time(setting)``: the median ms of the forward at the benchmark shape (the bench's timing spec and
  inputs): a few calls with CUDA events over input sets that together exceed L2, after warm-up. The
  setting's output on the first set must first agree with the default settings' output, so a setting
  that is fast because it is wrong is never a candidate.

The miner runs it as a command server inside the bench's sandbox (``python -I -B -m
quasar.miner.strategies.probe REPLY_FD``, started by ``BenchRunner.helper``), so the candidate's code
never runs in the miner's own process. ``scripts/gpu_tune.py`` uses :class:`KernelProbe` in-process.
Imports torch, the standard library and ``quasar.bench`` (nothing the GPU machine lacks).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import torch

from quasar.bench.cases import make_inputs
from quasar.bench.suite import timing_spec
from quasar.bench.timing import input_sets_needed, tensor_bytes, time_callable

#: The package a candidate's fast kernels live in (its ``fla/ops/quasar/fast/``).
CANDIDATE_PACKAGE = "fla.ops.quasar.fast"
#: Largest relative L2 difference from the default settings' output that still counts as agreeing:
#: DESIGN's bf16 tolerance, which both outputs meet against the exact answer.
AGREEMENT_TOLERANCE = 1e-2


class KernelProbe:
    """One kernel package on this process's device; inputs are made once, on the first timing."""

    def __init__(self, package: str, *, seed: int = 0, runs: int = 20, warmup: int = 3) -> None:
        self.fast: ModuleType = importlib.import_module(package)
        self.tuning: ModuleType = importlib.import_module(f"{package}.tuning")
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.spec = timing_spec(self.device.type, quick=False)
        self.seed, self.runs, self.warmup = seed, runs, warmup
        self._arg_sets: list[tuple] | None = None
        self._reference: torch.Tensor | None = None

    def describe(self) -> dict[str, Any]:
        knobs = [
            {
                "name": k.name,
                "type": k.type.__name__,
                "values": list(k.values),
                "default": k.default,
                "help": k.help,
            }
            for k in self.tuning.KNOBS
        ]
        return {
            "device": self.tuning.device_name(self.device),
            "knobs": knobs,
            "table": {name: settings.as_dict() for name, settings in self.tuning.TABLE.items()},
            "shape": self.spec.shape_dict(),
            "dtype": self.spec.dtype_name,
        }

    def launch(self, setting: dict[str, Any]) -> str:
        settings = self.tuning.check(setting, "setting")
        spec = self.spec
        launched = self.fast.launch_settings(
            spec.batch, spec.seq_len, spec.heads, spec.bounds, self.device, settings
        )
        return json.dumps(launched, sort_keys=True)

    def _inputs(self) -> list[tuple]:
        if self._arg_sets is None:
            first = make_inputs(self.spec, self.seed, self.device).args()
            count = input_sets_needed(tensor_bytes(first), self.device)
            self._arg_sets = [first] + [
                make_inputs(self.spec, self.seed + i, self.device).args() for i in range(1, count)
            ]
        return self._arg_sets

    def _forward(self, settings: Any) -> Callable[..., Any]:
        """The forward under ``settings``, taking one input set as the bench's cases give it."""
        bounds = self.spec.bounds

        def forward(
            q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
            initial_state: torch.Tensor | None, output_final_state: bool, cu_seqlens: torch.Tensor | None,
        ) -> Any:  # fmt: skip
            return self.fast.quasar_fwd(
                q, k, v, beta, initial_state, output_final_state, cu_seqlens, bounds, settings=settings
            )

        return forward

    def time(self, setting: dict[str, Any]) -> float:
        """Median ms of one call under ``setting``; raises when it fails or disagrees with the defaults."""
        settings = self.tuning.check(setting, "setting")
        arg_sets = self._inputs()
        with torch.no_grad():
            if self._reference is None:
                self._reference = self._forward(self.tuning.DEFAULTS)(*arg_sets[0])[0].float()
            out = self._forward(settings)(*arg_sets[0])[0].float()
            diff = float((out - self._reference).norm() / self._reference.norm().clamp_min(1e-30))
            del out
        if not diff <= AGREEMENT_TOLERANCE:  # NaN lands here too
            raise ValueError(f"its output differs from the default settings' by {diff:.2e} (relative L2)")
        spec = self.spec
        timing = time_callable(
            self._forward(settings), arg_sets, device=self.device, runs=self.runs, warmup=self.warmup,
            shape=spec.shape_dict(), dtype=spec.dtype_name,
        )  # fmt: skip
        return float(timing.median_ms)


def _serve(reply_fd: int) -> None:
    from quasar.evaluation.protocol import CommandServer

    class ProbeServer(CommandServer):
        """The probe's commands, one JSON line each (``quasar.evaluation.protocol``)."""

        probe: KernelProbe | None = None

        def handlers(self) -> dict:
            return {"describe": self.describe, "launch": self.launch, "time": self.time}

        def describe(self, repo: str, package: str = CANDIDATE_PACKAGE) -> None:
            sys.path.insert(0, repo)
            self.probe = KernelProbe(package)
            self.reply(ok=True, **self.probe.describe())

        def _loaded(self) -> KernelProbe:
            if self.probe is None:
                raise RuntimeError("describe first: no kernel is loaded")
            return self.probe

        def launch(self, setting: dict[str, Any]) -> None:
            self.reply(ok=True, launch=self._loaded().launch(setting))

        def time(self, setting: dict[str, Any]) -> None:
            self.reply(ok=True, ms=self._loaded().time(setting))

    ProbeServer(reply_fd).serve_and_exit()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
