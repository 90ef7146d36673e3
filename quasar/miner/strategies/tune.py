"""``tune``: search the knobs the kernel exposes as module constants, and keep the fastest settings.

A knob is a ``NAME = <int>`` line in a file of ``fla/ops/quasar/``. The ones known here are the
chunk size of the PyTorch path (what runs on CPU) and, for the Triton kernels (what runs on GPU), the
segment length and the programs per multiprocessor of the output kernel; warps and stages are already
autotuned by the kernel itself. The search is coordinate-wise: each knob in turn, every value, each
candidate through the bench; a value is written into the repository (committed) only when it is
correct and faster. Configurations already measured are in the bench cache, so a cycle with nothing
new to try costs no bench run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from quasar.miner.strategies.base import Context, Outcome
from quasar.miner.workspace import KERNEL_DIR

log = logging.getLogger("quasar.miner.tune")


@dataclass(frozen=True)
class Knob:
    path: str  # relative to fla/ops/quasar
    name: str
    values: tuple[int, ...]
    device: str  # "cpu" or "cuda": where the knob matters

    def pattern(self) -> re.Pattern[str]:
        return re.compile(rf"^({re.escape(self.name)}\s*(?::\s*int\s*)?=\s*)(\d+)(.*)$", re.M)


KNOBS: tuple[Knob, ...] = (
    Knob("chunked.py", "DEFAULT_CHUNK_SIZE", (16, 32, 64, 128), "cpu"),
    Knob("fast/segments.py", "MIN_SEGMENT_CHUNKS", (2, 4, 8, 16, 32), "cuda"),
    Knob("fast/segments.py", "PROGRAMS_PER_SM", (1, 2, 4, 8), "cuda"),
)


def bench_device(setting: str) -> str:
    """'cpu' or 'cuda': where the bench will run for the DEVICE setting."""
    if setting.startswith("cuda"):
        return "cuda"
    if setting == "cpu":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TuneStrategy:
    name = "tune"

    def __init__(self, device: str = "auto", knobs: tuple[Knob, ...] = KNOBS) -> None:
        self.device = device
        self.knobs = knobs

    def read(self, ctx: Context, knob: Knob) -> int | None:
        path = ctx.workspace.path / KERNEL_DIR / knob.path
        if not path.is_file():
            return None
        match = knob.pattern().search(path.read_text())
        return int(match.group(2)) if match else None

    def write(self, ctx: Context, knob: Knob, value: int) -> None:
        path = ctx.workspace.path / KERNEL_DIR / knob.path
        text = knob.pattern().sub(lambda m: f"{m.group(1)}{value}{m.group(3)}", path.read_text(), count=1)
        path.write_text(text)

    def improve(self, ctx: Context) -> list[Outcome]:
        device = bench_device(self.device)
        outcomes: list[Outcome] = []
        knobs = [k for k in self.knobs if k.device == device and self.read(ctx, k) is not None]
        if not knobs:
            log.warning("tune: the kernel exposes none of the known knobs for %s; nothing to tune", device)
        for knob in knobs:
            for value in knob.values:
                if ctx.stop.is_set():
                    return outcomes
                current = self.read(ctx, knob)
                if value == current:
                    continue
                self.write(ctx, knob, value)
                outcome = ctx.try_change(f"tune: {knob.name} = {value} (was {current})")
                outcomes.append(outcome)
        return outcomes
