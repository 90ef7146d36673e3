"""The fast kernels' tuning knobs: what each launch setting may be, its default, and the settings tuned per GPU.

Every setting the Triton kernels launch with that leaves the result exact is a :class:`Knob` here: its
type, the values a tuner tries (the only values a setting may take) and its default. The kernels read
one :class:`Settings` per device through :func:`settings_for`: the entry of ``tuned.json`` (beside this
file) named after the device (``torch.cuda.get_device_name``; ``"cpu"`` for Triton's interpreter, which
only tests use), else :data:`DEFAULTS`. The table is read once, at import; a malformed one raises
:class:`TuningError` naming the entry and the knob, because a tuning silently ignored is a slower kernel
nobody notices. An entry may name only some knobs; the rest keep their defaults.

``tuned.json`` is ``{"<GPU name>": {"<knob>": value, ...}, ...}``. ``quasar kernel init`` copies this
folder verbatim, the table included, so the settings travel with the kernel: a validator running a
miner's commit on the same GPU model launches with the miner's settings. The miner's ``tune`` strategy
(``quasar/miner/strategies/tune.py``) searches these knobs on its GPU and writes the winner there.
What it relies on: ``KNOBS``, ``check``, ``DEFAULTS``, ``TABLE`` and ``device_name`` here, and
``quasar_fwd(..., settings=)`` and ``launch_settings`` of the package.

Not knobs, and why: the chunk size (64: the WY solve in ``wy.py`` is written for four 16-token blocks
and two doubling steps) and the tile widths (at least ``config.MIN_BLOCK`` = 64, since narrower tiles
miscompiled on Triton 3.6; at K = V = 64, the benchmark shape, 64 is the only width).

Imports torch and the standard library only (this file is copied into miners' repositories).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch

#: The table of tuned settings, beside this file.
TABLE_FILE = "tuned.json"
#: The name the table uses for tensors that are not on a CUDA device (the interpreter in tests).
CPU_NAME = "cpu"

Value = int | float | None


class TuningError(ValueError):
    """A setting, or the table of tuned settings, is not one the knobs allow; the message is one line."""


@dataclass(frozen=True)
class Knob:
    """One launch setting: the values a tuner may try (in the order it tries them) and the default.

    A default of None means Triton's autotuner picks among ``values`` at the first call of each shape,
    as it always did; a knob with a None default also accepts None in a setting.
    """

    name: str
    type: type
    values: tuple[int | float, ...]
    default: Value
    help: str

    def check(self, value: object, where: str) -> Value:
        """``value`` as this knob's type; TuningError when it is not one of the allowed values."""
        if value is None and self.default is None:
            return None
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and self.type is int and not isinstance(value, int):
            number = False  # 4.0 warps is a typo worth hearing about, not a value to round
        if not number or value not in self.values:
            allowed = ", ".join(str(v) for v in self.values) + (
                ", null (autotuned)" if self.default is None else ""
            )
            raise TuningError(
                f"{where}: {self.name} = {json.dumps(value, default=repr)} is not one of {allowed}"
            )
        return self.type(value)


# Warps and stages of the three autotuned kernels default to None, i.e. the autotuning they always had
# (the values are exactly its configurations); the scan was never autotuned and keeps its fixed launch.
KNOBS: tuple[Knob, ...] = (
    Knob("programs_per_sm", float, (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0), 1.5,
         "segment programs (sequence x head x segment) per multiprocessor; sets the segment length. Longer "
         "segments cost the output kernel depth, shorter ones cost the scan depth; 1.5 sat within 3% of the "
         "best swept length on an H100 (docs/benchmarks.md)"),
    Knob("min_segment_chunks", int, (1, 2, 4, 8, 16, 32), 8,
         "fewest chunks per segment: below it a segment's map costs more than the parallelism it buys "
         "(it binds on short sequences; at T=100k the segment length comes from programs_per_sm)"),
    Knob("wy_num_warps", int, (4, 8), None,
         "warps of the alpha + WY kernel (no stages knob: it has no loop over memory to pipeline)"),
    Knob("map_num_warps", int, (4, 8), None, "warps of the segment-map kernel"),
    Knob("map_num_stages", int, (1, 2, 3), None,
         "pipeline stages of the segment-map kernel's chunk loads (fp32 at K=128 fits 1 only)"),
    Knob("scan_num_warps", int, (2, 4, 8), 4, "warps of the scan over segments"),
    Knob("scan_num_stages", int, (1, 2, 3), 2, "pipeline stages of the scan's loads"),
    Knob("output_num_warps", int, (4, 8), None, "warps of the output kernel"),
    Knob("output_num_stages", int, (1, 2, 3), None,
         "pipeline stages of the output kernel's chunk loads (fp32 at K=128 fits 1 only)"),
)  # fmt: skip
KNOB_BY_NAME: dict[str, Knob] = {knob.name: knob for knob in KNOBS}


@dataclass(frozen=True)
class Settings:
    """One value per knob (same names as KNOBS): what the kernels launch with on one device."""

    programs_per_sm: float
    min_segment_chunks: int
    wy_num_warps: int | None
    map_num_warps: int | None
    map_num_stages: int | None
    scan_num_warps: int
    scan_num_stages: int
    output_num_warps: int | None
    output_num_stages: int | None

    def as_dict(self) -> dict[str, Value]:
        return asdict(self)


def check(entry: object, where: str = "settings") -> Settings:
    """A setting from ``{knob: value}`` (knobs left out keep their defaults); TuningError when it is not allowed."""
    if not isinstance(entry, Mapping):
        raise TuningError(f"{where}: must be an object of knob: value, got {type(entry).__name__}")
    unknown = sorted(str(name) for name in entry if name not in KNOB_BY_NAME)
    if unknown:
        raise TuningError(f"{where}: unknown knob {unknown[0]!r}; the knobs are {', '.join(KNOB_BY_NAME)}")
    return Settings(**{knob.name: knob.check(entry.get(knob.name, knob.default), where) for knob in KNOBS})


DEFAULTS = check({}, "defaults")


def read_table(path: Path) -> dict[str, Settings]:
    """The tuned settings by GPU name in ``path`` ({} when there is no such file); TuningError if malformed."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise TuningError(f"{path.name}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TuningError(f"{path.name}: must be an object of GPU name: settings, got {type(data).__name__}")
    return {name: check(entry, f"{path.name}: {name!r}") for name, entry in data.items()}


TABLE: dict[str, Settings] = read_table(Path(__file__).with_name(TABLE_FILE))


@cache
def _cuda_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def device_name(device: torch.device) -> str:
    """The name ``tuned.json`` files a device under: the CUDA device's name, else ``"cpu"``."""
    if device.type == "cuda":
        return _cuda_name(device.index if device.index is not None else torch.cuda.current_device())
    return CPU_NAME


def settings_for(device: torch.device) -> Settings:
    """What the kernels launch with on ``device``: its entry in the table, else the defaults."""
    return TABLE.get(device_name(device), DEFAULTS)


def choices(name: str, value: int | None) -> tuple[int, ...]:
    """The launch values of a warps or stages knob: the one set, or (None) every value, for the autotuner."""
    return (value,) if value is not None else tuple(int(v) for v in KNOB_BY_NAME[name].values)
