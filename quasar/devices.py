"""The one reading of DEVICE (and of the `--device` flags that stand for it): ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

`parse_device` checks the spelling and needs no torch, so a bad value is refused before anything
loads. What ``auto`` means is each role's call (the validator runs one worker per visible GPU, the
inference server and `quasar evaluate` take the first GPU when there is one); `resolve_auto` is the
common case, and `visible_gpu_count` what the rest decide from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DeviceKind = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class Device:
    """A device: ``kind`` cpu or cuda (``auto`` until resolved); ``index`` the GPU of ``cuda:N``, None
    where no GPU is pinned."""

    kind: DeviceKind
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(text: str, *, name: str = "DEVICE") -> Device:
    """``text`` as a `Device`; ValueError naming ``name`` (the setting or flag it came from) otherwise."""
    kind, colon, index = text.partition(":")
    if kind in ("auto", "cpu") and not colon:
        return Device(kind)  # type: ignore[arg-type]  # narrowed by the test above
    if kind == "cuda" and not colon:
        return Device("cuda")
    if kind == "cuda" and index.isdigit():
        return Device("cuda", int(index))
    raise ValueError(f"{name}={text!r}: use cpu, cuda, cuda:N or auto")


def visible_gpu_count() -> int:
    """How many CUDA devices this process sees (0 without torch's CUDA build or without a GPU)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_auto(device: Device) -> Device:
    """``auto`` as the GPU when one is visible (not pinned: CUDA's current device), else the CPU; any
    other device as it is."""
    if device.kind != "auto":
        return device
    return Device("cuda") if visible_gpu_count() > 0 else Device("cpu")
